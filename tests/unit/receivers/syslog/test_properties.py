"""Property-based tests over the framers and both parsers: no exception escapes, memory
stays bounded, chunking never changes the result, and what is encoded is read back."""

from __future__ import annotations

import calendar
import itertools
import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.receivers.syslog.framing import Auto, Framer, OctetCounting, Trailer, Whole
from agent.receivers.syslog.record import RecordEncoder
from agent.testing import attrs_dict
from tests.unit.receivers.syslog.kit import OBSERVED, config_of, decode, octet

SETTINGS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
MAX = 64


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def run(framer: Framer, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out += framer.feed(chunk)
        # Bounded memory: a framer never holds more than a frame and a count.
        held = len(getattr(framer, "_buf", b"")) + len(getattr(getattr(framer, "_inner", None), "_buf", b""))
        assert held <= MAX + 16 + len(chunk)
    return out + framer.finish()


@SETTINGS
@given(st.lists(st.binary(min_size=1, max_size=MAX)), st.lists(st.integers(0, 10_000), max_size=20))
def test_octet_counting_is_independent_of_chunking(messages: list[bytes], cuts: list[int]) -> None:
    framer = OctetCounting(MAX)
    assert run(framer, chunked(octet(*messages), cuts)) == messages
    assert not framer.errors


@SETTINGS
@given(st.lists(st.binary(min_size=1, max_size=MAX).filter(lambda m: b"\n" not in m)),
       st.lists(st.integers(0, 10_000), max_size=20))
def test_lf_framing_is_independent_of_chunking(messages: list[bytes], cuts: list[int]) -> None:
    data = b"".join(m + b"\n" for m in messages)
    assert [f for f in run(Trailer(b"\n", MAX), chunked(data, cuts)) if f] == messages


@SETTINGS
@given(st.binary(max_size=2000), st.lists(st.integers(0, 10_000), max_size=30))
def test_no_framer_raises_or_grows_on_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    for framer in (OctetCounting(MAX), Trailer(b"\n", MAX), Trailer(b"\0", MAX), Auto(MAX, MAX), Whole(MAX)):
        frames = run(framer, chunked(data, cuts))
        assert all(len(f) <= max(MAX, 2 * MAX) for f in frames)


_syslogish = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda pri, rest: b"<%d>" % pri + rest, st.integers(0, 300), st.binary(max_size=200)),
    st.builds(lambda pri, rest: b"<%d>1 " % pri + rest, st.integers(0, 191),
              st.text(max_size=200).map(str.encode)),
    st.builds(lambda sd: b"<13>1 - - - - - " + sd, st.binary(max_size=100).map(lambda b: b"[" + b)),
)


@SETTINGS
@given(st.lists(_syslogish, max_size=20), st.sampled_from(["rfc5424", "rfc3164", "auto"]), st.booleans())
def test_encoding_never_raises_and_always_reads_back(frames: list[bytes], protocol: str, skip_pri: bool) -> None:
    encoder = RecordEncoder(config_of(protocol=protocol, allow_skip_pri_header=skip_pri))
    out = encoder.encode(frames, encoder.tail(OBSERVED))
    records = decode(encoder.request(out.records)) if out.records else []
    assert len(records) == len([f for f in frames if f.strip(b" \t\n\r\x0b\x0c\0")])
    for lr in records:
        assert lr.body.string_value  # valid UTF-8 (protobuf checks it) and never empty
        assert lr.observed_time_unix_nano == OBSERVED


_name = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=' ="]'), min_size=1, max_size=32)
_header = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=32).filter(lambda s: s != "-")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


@SETTINGS
@given(
    pri=st.integers(0, 191),
    seconds=st.integers(0, 4_000_000_000),
    micros=st.integers(0, 999_999),
    host=_header, app=_header, proc=_header, msgid=_header,
    sd=st.dictionaries(_name, st.dictionaries(_name, st.text(max_size=20).filter(lambda v: "\0" not in v), max_size=3),
                       max_size=3),
    message=st.text(max_size=80).map(lambda m: m.strip(" \t\n\r\x0b\x0c\0")),
)
def test_rfc5424_fields_read_back(pri: int, seconds: int, micros: int, host: str, app: str, proc: str,
                                  msgid: str, sd: dict[str, dict[str, str]], message: str) -> None:
    y, mo, d, hh, mi, ss = __import__("time").gmtime(seconds)[:6]
    stamp = f"{y:04d}-{mo:02d}-{d:02d}T{hh:02d}:{mi:02d}:{ss:02d}.{micros:06d}Z"
    elements = "".join(f"[{k}" + "".join(f' {n}="{_escape(v)}"' for n, v in ps.items()) + "]" for k, ps in sd.items())
    frame = f"<{pri}>1 {stamp} {host} {app} {proc} {msgid} {elements or '-'}" + (f" {message}" if message else "")
    encoder = RecordEncoder(config_of())
    [lr] = decode(encoder.request(encoder.encode([frame.encode()], encoder.tail(OBSERVED)).records))
    a = attrs_dict(lr.attributes)
    assert lr.time_unix_nano == calendar.timegm((y, mo, d, hh, mi, ss)) * 10**9 + micros * 1000
    assert a["priority"] == pri and a["facility"] == pri // 8
    assert (a["hostname"], a["appname"], a["proc_id"], a["msg_id"]) == (host, app, proc, msgid)
    assert a.get("structured_data", {}) == sd
    assert a.get("message", "") == message.removeprefix("\ufeff")


_sd_chars = st.sampled_from(list(b'ab =]["x\\'))
_REF_ELEMENT = re.compile(rb'\[([^ \]"=]+)((?: [^ \]"=]+="(?:[^"\\]|\\.)*")*)\]', re.DOTALL)
_REF_PARAM = re.compile(rb' ([^ \]"=]+)="((?:[^"\\]|\\.)*)"', re.DOTALL)


def reference_structured_data(raw: bytes) -> dict[bytes, dict[bytes, bytes]]:
    """A slow, obvious reading of RFC 5424 structured data, to check the fast one against."""
    out: dict[bytes, dict[bytes, bytes]] = {}
    for sd_id, body in _REF_ELEMENT.findall(raw):
        params = out.setdefault(sd_id, {})
        for name, value in _REF_PARAM.findall(body):
            params[name] = re.sub(rb'\\(["\\\]])', rb"\1", value)
    return out


@SETTINGS
@given(st.lists(st.binary(max_size=30).map(lambda b: b"[" + b), min_size=1, max_size=4).map(b"".join)
       | st.lists(_sd_chars, max_size=40).map(lambda cs: b"[" + bytes(cs)))
@example(b'[a b="x" a="]"][b][a x=""] msg')
@example(b'[a b="x" b="y"][c d=" ]["] [e]')
@example(b'[a b="x\\"]" c="\\\\"] rest')
@example(b'[a b="x"c="y"]')
def test_structured_data_agrees_with_an_obvious_reading(rest: bytes) -> None:
    from agent.receivers.syslog.rfc5424 import _SD, _StructuredData, structured_data

    cache = _StructuredData()
    for _ in range(2):  # a miss, then a hit
        found = cache.find(rest)
        m = _SD.match(rest)
        assert (found is None) == (m is None)
        if found is not None and m is not None:
            assert found[1] == m.end()
            region = rest[:m.end()]
            assert dict(structured_data(region)) == reference_structured_data(region)
