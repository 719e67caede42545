"""RFC 5424 messages → log records with the Collector's fields."""

from __future__ import annotations

from typing import Any

import pytest

from agent.receivers.syslog.rfc5424 import parse_structured_data
from tests.unit.receivers.syslog.kit import OBSERVED, attrs, record, records

COLLECTOR_EXAMPLE = (
    b'<86>1 2015-08-05T21:58:59.693Z 192.168.2.132 SecureAuth0 23108 ID52020 [SecureAuth@27389 '
    b'UserHostAddress="192.168.2.132" Realm="SecureAuth0" UserID="Tester2" PEN="27389"] '
    b"Found the user for retrieving user's profile"
)


def test_the_collectors_example_gives_the_collectors_record() -> None:
    lr = record(COLLECTOR_EXAMPLE)
    assert lr.time_unix_nano == 1438811939_693_000_000
    assert lr.observed_time_unix_nano == OBSERVED
    assert lr.severity_number == 9 and lr.severity_text == "info"
    assert lr.body.string_value == COLLECTOR_EXAMPLE.decode()
    assert attrs(COLLECTOR_EXAMPLE) == {
        "appname": "SecureAuth0",
        "facility": 10,
        "facility_text": "authpriv",
        "hostname": "192.168.2.132",
        "message": "Found the user for retrieving user's profile",
        "msg_id": "ID52020",
        "priority": 86,
        "proc_id": "23108",
        "structured_data": {"SecureAuth@27389": {
            "PEN": "27389", "Realm": "SecureAuth0", "UserHostAddress": "192.168.2.132", "UserID": "Tester2"}},
        "version": 1,
    }


def test_attribute_value_types() -> None:
    lr = record(COLLECTOR_EXAMPLE)
    kinds = {kv.key: kv.value.WhichOneof("value") for kv in lr.attributes}
    assert kinds == {
        "priority": "int_value", "facility": "int_value", "version": "int_value",
        "facility_text": "string_value", "hostname": "string_value", "appname": "string_value",
        "proc_id": "string_value", "msg_id": "string_value", "message": "string_value",
        "structured_data": "kvlist_value",
    }


@pytest.mark.parametrize(
    ("stamp", "nanos"),
    [
        (b"2003-10-11T22:14:15.003Z", 1065910455_003_000_000),
        (b"1985-04-12T23:20:50.52Z", 482196050_520_000_000),
        (b"1985-04-12T19:20:50.52-04:00", 482196050_520_000_000),
        (b"2003-08-24T05:14:15.000003-07:00", 1061727255_000_003_000),
        (b"2003-08-24T05:14:15.123456789+02:30", 1061693055_123_456_789),
        (b"2024-02-29T00:00:00Z", 1709164800_000_000_000),
        (b"2024-02-29t00:00:00z", 1709164800_000_000_000),
    ],
)
def test_rfc3339_timestamps_with_fractions_and_offsets(stamp: bytes, nanos: int) -> None:
    assert record(b"<14>1 " + stamp + b" h a p m - x").time_unix_nano == nanos


@pytest.mark.parametrize(
    "stamp",
    [b"2003-10-11T22:14:15", b"2003-13-11T22:14:15Z", b"2003-10-11 22:14:15Z", b"2023-02-29T00:00:00Z",
     b"2003-10-11T22:14:15.Z", b"2003-10-11T22:14:15.1234567890Z", b"2003-10-11T22:14:15+25:00",
     b"Oct 11 22:14:15"],
)
def test_bad_timestamps_do_not_parse(stamp: bytes) -> None:
    frame = b"<14>1 " + stamp + b" h a p m - x"
    lr = record(frame)
    assert lr.body.string_value == frame.decode()
    assert list(lr.attributes) == [] and lr.severity_number == 0


def test_nilvalue_everywhere() -> None:
    lr = record(b"<13>1 - - - - - -")
    assert lr.time_unix_nano == 0
    assert attrs(b"<13>1 - - - - - -") == {"priority": 13, "facility": 1, "facility_text": "user", "version": 1}


def test_message_without_structured_data_and_with_spaces() -> None:
    assert attrs(b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 -  two  spaces")[
        "message"] == " two  spaces"


@pytest.mark.parametrize(
    ("sd", "expected"),
    [
        (b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]',
         {"exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"}}),
        (b'[exampleSDID@32473 iut="3"][examplePriority@32473 class="high"]',
         {"exampleSDID@32473": {"iut": "3"}, "examplePriority@32473": {"class": "high"}}),
        (b'[id q="say \\"hi\\"" b="a\\\\b" c="x\\]y" d="keep\\n" e=""]',
         {"id": {"q": 'say "hi"', "b": "a\\b", "c": "x]y", "d": "keep\\n", "e": ""}}),
        (b"[meta]", {"meta": {}}),
        (b'[a x="1"][a y="2"]', {"a": {"x": "1", "y": "2"}}),
        (b'[id v="caf\xc3\xa9 ]"]', {"id": {"v": "café ]"}}),
        (b'[id v="]["][next]', {"id": {"v": "]["}, "next": {}}),
    ],
)
def test_structured_data(sd: bytes, expected: dict[str, Any]) -> None:
    found = attrs(b"<13>1 2003-10-11T22:14:15Z h a p m " + sd + b" the message")
    assert found["structured_data"] == expected
    assert found["message"] == "the message"
    assert parse_structured_data(sd) == expected


def test_structured_data_without_a_message() -> None:
    found = attrs(b'<13>1 2003-10-11T22:14:15Z h a p m [x y="z"]')
    assert found["structured_data"] == {"x": {"y": "z"}} and "message" not in found


@pytest.mark.parametrize(
    "frame",
    [
        b'<13>1 2003-10-11T22:14:15Z h a p m [x y="z"]trailing',
        b'<13>1 2003-10-11T22:14:15Z h a p m [x y="unterminated] msg',
        b'<13>1 2003-10-11T22:14:15Z h a p m [x y=z] msg',
        b'<13>1 2003-10-11T22:14:15Z h a p m [x y="1"][unterminated',
        b'<13>1 2003-10-11T22:14:15Z h a p m [x y="1"][',
        b"<13>1 2003-10-11T22:14:15Z h a p m x msg",
        b"<13>1 2003-10-11T22:14:15Z h a p m",
        b"<13>1 2003-10-11T22:14:15Z  a p m - msg",
        b"<192>1 - - - - - -",
        b"<13>0 - - - - - -",
        b"<13>1000 - - - - - -",
        b"<1a>1 - - - - - -",
        b"13>1 - - - - - -",
        b"<13>1 - " + b"h" * 256 + b" - - - -",
        b"<13>1 - - " + b"a" * 49 + b" - - -",
        b"<13>1 - - - " + b"p" * 129 + b" - -",
        b"<13>1 - - - - " + b"m" * 33 + b" -",
    ],
)
def test_malformed_messages_are_sent_raw(frame: bytes) -> None:
    lr = record(frame)
    assert lr.body.string_value == frame.decode()
    assert list(lr.attributes) == []
    assert lr.severity_number == 0 and lr.severity_text == "" and lr.time_unix_nano == 0


def test_longest_allowed_header_fields_parse() -> None:
    frame = b"<13>1 - " + b"h" * 255 + b" " + b"a" * 48 + b" " + b"p" * 128 + b" " + b"m" * 32 + b" -"
    found = attrs(frame)
    assert len(found["hostname"]) == 255 and len(found["msg_id"]) == 32


def test_utf8_bom_is_not_part_of_the_message() -> None:
    frame = b"<13>1 2003-10-11T22:14:15Z h a - - - \xef\xbb\xbfgr\xc3\xbc\xc3\x9fe"
    assert attrs(frame)["message"] == "grüße"
    assert record(frame).body.string_value == frame.decode()


def test_skip_pri_header() -> None:
    frame = b"1 2015-08-05T21:58:59.693Z host app 1 ID - no pri"
    lr = record(frame, allow_skip_pri_header=True)
    assert lr.severity_number == 0 and lr.severity_text == ""
    assert attrs(frame, allow_skip_pri_header=True) == {
        "version": 1, "hostname": "host", "appname": "app", "proc_id": "1", "msg_id": "ID", "message": "no pri"}
    with_pri = attrs(b"<123>" + frame, allow_skip_pri_header=True)
    assert with_pri["priority"] == 123 and with_pri["facility_text"] == "cron2"
    assert list(record(frame).attributes) == []  # without the option it does not parse


def test_many_messages_share_cached_pieces_correctly() -> None:
    frames = [b"<%d>1 2003-10-11T22:14:%02dZ host-%d app %d - [m i=\"%d\"] msg %d" % (8 + i % 16, i % 60, i % 3, i % 5, i % 7, i)
              for i in range(300)]
    found = records(frames)
    assert len(found) == 300
    for i, lr in enumerate(found):
        from agent.testing import attrs_dict

        a = attrs_dict(lr.attributes)
        assert a["priority"] == 8 + i % 16 and a["hostname"] == f"host-{i % 3}" and a["proc_id"] == str(i % 5)
        assert a["structured_data"] == {"m": {"i": str(i % 7)}} and a["message"] == f"msg {i}"
        assert lr.time_unix_nano == (1065910440 + i % 60) * 10**9
