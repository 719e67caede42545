"""Frames → records: severity mapping, trimming, UTF-8, on_error, static attributes, auto."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from agent.receivers.syslog import wire
from agent.receivers.syslog.record import RecordEncoder
from agent.testing import attrs_dict
from tests.unit.receivers.syslog.kit import OBSERVED, attrs, config_of, record, records

# PRI severity → (OTLP severity number, text), as the Collector maps them.
COLLECTOR_SEVERITIES = [(21, "emerg"), (19, "alert"), (18, "crit"), (17, "err"), (13, "warning"),
                        (10, "notice"), (9, "info"), (5, "debug")]
FACILITY_TEXT = ["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
                 "authpriv", "ftp", "ntp", "security", "console", "cron2", "local0", "local1", "local2",
                 "local3", "local4", "local5", "local6", "local7"]


@pytest.mark.parametrize("severity", range(8))
@pytest.mark.parametrize("protocol", ["rfc5424", "rfc3164"])
def test_severity_from_pri(severity: int, protocol: str) -> None:
    frame = b"<%d>1 - - - - - - m" % (16 * 8 + severity) if protocol == "rfc5424" else b"<%d>m" % (16 * 8 + severity)
    lr = record(frame, protocol=protocol)
    assert (lr.severity_number, lr.severity_text) == COLLECTOR_SEVERITIES[severity]


@pytest.mark.parametrize("facility", range(24))
def test_facility_and_its_keyword(facility: int) -> None:
    a = attrs(b"<%d>1 - - - - - -" % (facility * 8 + 3))
    assert a["facility"] == facility and a["priority"] == facility * 8 + 3
    assert a["facility_text"] == FACILITY_TEXT[facility]


def test_whitespace_is_trimmed_unless_preserved() -> None:
    frame = b"  <13>1 - - - - - - msg \r\n\0"
    assert record(frame).body.string_value == "<13>1 - - - - - - msg"
    config = config_of(protocol="rfc3164")
    encoder = RecordEncoder(config, preserve_trailing=True)
    out = encoder.encode([b"  <13>msg  "], encoder.tail(OBSERVED))
    request = ExportLogsServiceRequest()
    request.ParseFromString(encoder.request(out.records))
    assert request.resource_logs[0].scope_logs[0].log_records[0].body.string_value == "<13>msg  "


def test_empty_frames_give_no_record() -> None:
    assert records([b"", b"  \n", b"\0"]) == []


def test_invalid_utf8_is_replaced_not_dropped() -> None:
    frame = b"<13>1 - h\xff app - - - bad \xc3\x28 bytes"
    lr = record(frame)
    assert lr.body.string_value == "<13>1 - h\ufffd app - - - bad \ufffd( bytes"
    a = attrs_dict(lr.attributes)
    assert a["hostname"] == "h\ufffd" and a["message"] == "bad \ufffd( bytes"


def test_on_error_drop_counts_instead_of_sending() -> None:
    config = config_of(on_error="drop")
    encoder = RecordEncoder(config)
    out = encoder.encode([b"not syslog", b"<13>1 - - - - - - fine"], encoder.tail(OBSERVED))
    assert (len(out.records), out.dropped, out.unparsed) == (1, 1, 0)
    sent = RecordEncoder(config_of())
    out = sent.encode([b"not syslog", b"<13>1 - - - - - - fine"], sent.tail(OBSERVED))
    assert (len(out.records), out.dropped, out.unparsed) == (2, 0, 1)


def test_static_attributes_and_resource() -> None:
    config = config_of(attributes={"env": "prod", "port": 514}, resource={"service.name": "edge"})
    encoder = RecordEncoder(config)
    out = encoder.encode([b"<13>1 - - - - - - a", b"junk"], encoder.tail(OBSERVED))
    request = ExportLogsServiceRequest()
    request.ParseFromString(encoder.request(out.records))
    [rl] = request.resource_logs
    assert attrs_dict(rl.resource.attributes) == {"service.name": "edge"}
    for lr in rl.scope_logs[0].log_records:
        assert attrs_dict(lr.attributes)["env"] == "prod" and attrs_dict(lr.attributes)["port"] == "514"
        assert lr.observed_time_unix_nano == OBSERVED


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (b"<13>1 2003-10-11T22:14:15Z host app 1 ID - five", {"version": 1, "msg_id": "ID", "message": "five"}),
        (b"<13>Oct 11 22:14:15 host app[1]: three", {"proc_id": "1", "message": "three"}),
        (b"<13>2003-10-11T22:14:15Z host app[1]: iso three", {"proc_id": "1", "message": "iso three"}),
        (b"<13>1 this is not rfc5424 at all", {"message": "1 this is not rfc5424 at all"}),
        (b"<13>hello", {"message": "hello"}),
    ],
)
def test_auto_decides_per_message(frame: bytes, expected: dict[str, object]) -> None:
    found = attrs(frame, protocol="auto")
    for key, value in expected.items():
        assert found[key] == value
    if "version" not in expected:
        assert "version" not in found


def test_large_frames_use_multi_byte_lengths() -> None:
    message = "x" * 70000
    frame = b"<13>1 - - - - - - " + message.encode()
    lr = record(frame, tcp={"listen_address": "127.0.0.1:0", "max_log_size": "1MiB"})
    assert attrs_dict(lr.attributes)["message"] == message and lr.body.string_value == frame.decode()


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 16383, 16384, 2**21, 2**63 - 1, -1, -(2**63)])
def test_wire_int_values_round_trip(n: int) -> None:
    value = AnyValue()
    value.ParseFromString(wire.int_value(n))
    assert value.int_value == n


@pytest.mark.parametrize("n", [0, 1, 127, 128, 16383, 16384, 100000])
def test_wire_strings_and_bodies_round_trip(n: int) -> None:
    text = b"y" * n
    value = AnyValue()
    value.ParseFromString(wire.string_value(text))
    assert value.string_value == text.decode()
    assert wire.BODY_PREFIXES[n] + text == wire.body(text)
