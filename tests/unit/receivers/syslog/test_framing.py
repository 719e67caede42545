"""TCP framing: octet counting, LF/NUL/CRLF trailers, auto-detection, bad input."""

from __future__ import annotations

import pytest

from agent.receivers.syslog.framing import Auto, Framer, OctetCounting, Trailer, Whole
from tests.unit.receivers.syslog.kit import octet

MESSAGES = [b"<13>1 - - - - - - first", b"<14>1 - - - - - - second one", b"<15>third \xc3\xa9"]


def feed_bytewise(framer: Framer, data: bytes) -> list[bytes]:
    out: list[bytes] = []
    for i in range(len(data)):
        out += framer.feed(data[i:i + 1])
    return out + framer.finish()


def test_octet_counting_in_one_read_and_byte_by_byte() -> None:
    data = octet(*MESSAGES)
    assert OctetCounting(8192).feed(data) == MESSAGES
    assert feed_bytewise(OctetCounting(8192), data) == MESSAGES


def test_a_count_that_includes_a_trailing_lf_keeps_the_lf_for_trimming() -> None:
    # rsyslog and syslog-ng count the LF they end each message with; trimming removes it.
    data = octet(b"<13>1 - - - - - - a\n", b"<13>1 - - - - - - b\n")
    assert OctetCounting(8192).feed(data) == [b"<13>1 - - - - - - a\n", b"<13>1 - - - - - - b\n"]


def test_separators_between_frames_are_skipped() -> None:
    data = b"3 abc\n\r\n3 def\x00 3 ghi"
    assert OctetCounting(100).feed(data) == [b"abc", b"def", b"ghi"]


def test_a_frame_over_max_octets_is_skipped_without_buffering_and_the_stream_resyncs() -> None:
    framer = OctetCounting(10)
    frames = framer.feed(b"5 hello100 ")
    assert frames == [b"hello"]
    assert framer.errors == {"too_large": 1}
    assert framer.feed(b"x" * 60) == []
    assert framer.feed(b"y" * 40 + b"2 ok") == [b"ok"]
    assert not framer.fatal
    assert framer._buf == b""  # nothing of the large frame was kept


def test_a_count_that_is_not_a_number_ends_the_stream() -> None:
    framer = OctetCounting(8192)
    assert framer.feed(b"3 abcxyz garbage") == [b"abc"]
    assert framer.fatal and framer.errors == {"framing": 1}
    assert framer.feed(b"3 abc") == []


@pytest.mark.parametrize("data", [b"0 ", b"012 abc", b"12345678901 x", b"99999999999"])
def test_bad_counts(data: bytes) -> None:
    framer = OctetCounting(8192)
    framer.feed(data)
    assert framer.fatal and framer.errors["framing"] == 1


def test_a_truncated_frame_is_counted_at_the_end() -> None:
    framer = OctetCounting(8192)
    assert framer.feed(b"10 abc") == []
    assert framer.finish() == []
    assert framer.errors == {"truncated": 1}
    clean = OctetCounting(8192)
    clean.feed(b"3 abc\n")
    clean.finish()
    assert not clean.errors


@pytest.mark.parametrize(("trailer", "sep"), [(b"\n", b"\n"), (b"\n", b"\r\n"), (b"\0", b"\0")])
def test_trailer_framing(trailer: bytes, sep: bytes) -> None:
    data = b"".join(m + sep for m in MESSAGES)
    expected = [m + sep[:-1] for m in MESSAGES]  # a CR stays, trimming removes it
    assert Trailer(trailer, 1024).feed(data) == expected
    assert feed_bytewise(Trailer(trailer, 1024), data) == expected


def test_the_unterminated_rest_of_a_trailer_stream_is_a_last_message() -> None:
    framer = Trailer(b"\n", 1024)
    assert framer.feed(b"a\nb") == [b"a"]
    assert framer.finish() == [b"b"]


def test_a_never_ending_line_is_dropped_and_the_stream_resyncs() -> None:
    framer = Trailer(b"\n", 100)
    assert framer.feed(b"x" * 150) == []
    assert framer.errors == {"too_large": 1}
    assert framer.feed(b"y" * 500) == []
    assert framer._buf == b""
    assert framer.feed(b"zz\nok\n") == [b"ok"]
    assert framer.errors == {"too_large": 1}


def test_a_long_complete_line_is_dropped_alone() -> None:
    framer = Trailer(b"\n", 10)
    assert framer.feed(b"short\n" + b"l" * 20 + b"\nafter\n") == [b"short", b"after"]
    assert framer.errors == {"too_large": 1}


@pytest.mark.parametrize(
    ("data", "expected", "kind"),
    [
        (octet(*MESSAGES), MESSAGES, OctetCounting),
        (b"\n" + octet(*MESSAGES), MESSAGES, OctetCounting),
        (b"".join(m + b"\n" for m in MESSAGES), MESSAGES, Trailer),
        (b"".join(m + b"\r\n" for m in MESSAGES), [m + b"\r" for m in MESSAGES], Trailer),
        (b"".join(m + b"\0" for m in MESSAGES), MESSAGES, Trailer),
    ],
)
def test_auto_detection(data: bytes, expected: list[bytes], kind: type) -> None:
    framer = Auto(8192, 1024)
    assert framer.feed(data) == expected
    assert isinstance(framer._inner, kind)
    assert feed_bytewise(Auto(8192, 1024), data) == expected


def test_auto_nul_wins_when_both_trailers_are_in_the_first_read() -> None:
    framer = Auto(8192, 1024)
    assert framer.feed(b"<13>line one\nline two\0<13>next\0") == [b"<13>line one\nline two", b"<13>next"]


def test_auto_waits_for_a_trailer_but_not_forever() -> None:
    framer = Auto(8192, 100)
    assert framer.feed(b"<13>no trailer yet") == []
    assert framer.finish() == [b"<13>no trailer yet"]
    bounded = Auto(8192, 100)
    assert bounded.feed(b"<" + b"x" * 200) == []
    assert bounded.errors == {"too_large": 1}


def test_whole_stream_is_one_frame_up_to_the_limit() -> None:
    framer = Whole(10)
    assert framer.feed(b"hello ") == [] and framer.feed(b"world and more") == []
    assert framer.finish() == [b"hello worl"]
