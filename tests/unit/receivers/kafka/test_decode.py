"""Record values → batches per encoding; undecodable values raise UndecodableError with a reason."""

from __future__ import annotations

import pytest

from agent.model import ClientInfo, Signal, otlp_json
from agent.receivers.kafka.decode import UndecodableError, decoder, parse_rfc3339
from agent.testing import from_any_value, make_logs, make_metrics, make_traces

CLIENT = ClientInfo(metadata={"kafka.topic": ("t",)})


def _record(batch: object) -> object:
    return batch.message.resource_logs[0].scope_logs[0].log_records[0]  # type: ignore[attr-defined]


def test_otlp_proto_keeps_the_records_bytes() -> None:
    data = make_traces(4).serialize()
    batch = decoder(Signal.TRACES, "otlp_proto")(data, 0, CLIENT)
    assert batch.serialize() is data and batch.items == 4 and batch.client is CLIENT


def test_otlp_json_decodes_requests() -> None:
    metrics = make_metrics(5)
    batch = decoder(Signal.METRICS, "otlp_json")(otlp_json.encode(metrics.message), 0, CLIENT)
    assert batch.message == metrics.message


@pytest.mark.parametrize(("signal", "encoding", "value", "reason"), [
    (Signal.TRACES, "otlp_proto", b"\xff\xff\xff", "not a protobuf traces export request"),
    (Signal.LOGS, "otlp_json", b"{not json", "not an OTLP/JSON logs export request"),
    (Signal.LOGS, "json", b"[1, 2", "not JSON"),
    (Signal.LOGS, "text", b"\xff\xfe", "not utf-8 text"),
])
def test_undecodable_values_say_why(signal: Signal, encoding: str, value: bytes, reason: str) -> None:
    with pytest.raises(UndecodableError, match=reason):
        decoder(signal, encoding)(value, 0, CLIENT)


def test_raw_and_text_make_one_log_record_observed_at_the_records_time() -> None:
    raw = _record(decoder(Signal.LOGS, "raw")(b"\x00bytes", 1_700_000_000_000, CLIENT))
    assert raw.body.bytes_value == b"\x00bytes"  # type: ignore[attr-defined]
    assert raw.observed_time_unix_nano == 1_700_000_000_000 * 1_000_000  # type: ignore[attr-defined]
    text = _record(decoder(Signal.LOGS, "text_shift_jis")("モデル".encode("shift_jis"), 0, CLIENT))
    assert text.body.string_value == "モデル"  # type: ignore[attr-defined]
    assert text.observed_time_unix_nano > 0  # type: ignore[attr-defined]


def test_a_json_object_becomes_a_map_body_with_time_and_severity() -> None:
    value = b'{"msg": "loaded", "level": "ERROR", "ts": 1700000000.5, "n": 3, "ok": true, "x": null, "l": [1, "a"]}'
    record = _record(decoder(Signal.LOGS, "json")(value, 0, CLIENT))
    body = from_any_value(record.body)  # type: ignore[attr-defined]
    assert body == {"msg": "loaded", "level": "ERROR", "ts": 1700000000.5, "n": 3, "ok": True, "x": None, "l": [1, "a"]}
    assert record.time_unix_nano == 1_700_000_000_500_000_000  # type: ignore[attr-defined]
    assert (record.severity_text, record.severity_number) == ("ERROR", 17)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("doc", "nanos"), [
    (b'{"timestamp": "2025-03-04T05:06:07Z"}', 1741064767_000000000),
    (b'{"time": "2025-03-04T07:06:07.5+02:00"}', 1741064767_500000000),
    (b'{"@timestamp": 1741064767123}', 1741064767_123000000),
    (b'{"ts": 1741064767123456789}', 1741064767_123456789),
    (b'{"timestamp": "yesterday"}', 0),
])
def test_json_times_are_read_in_the_usual_forms(doc: bytes, nanos: int) -> None:
    assert _record(decoder(Signal.LOGS, "json")(doc, 0, CLIENT)).time_unix_nano == nanos  # type: ignore[attr-defined]


def test_numeric_severity_and_non_object_documents() -> None:
    record = _record(decoder(Signal.LOGS, "json")(b'{"severity": 21}', 0, CLIENT))
    assert record.severity_number == 21  # type: ignore[attr-defined]
    record = _record(decoder(Signal.LOGS, "json")(b'"just a string"', 0, CLIENT))
    assert record.body.string_value == "just a string"  # type: ignore[attr-defined]


def test_rfc3339_keeps_nanoseconds() -> None:
    assert parse_rfc3339("2025-03-04T05:06:07.123456789Z") == 1741064767_123456789
    assert parse_rfc3339("not a time") is None


def test_logs_otlp_proto_round_trips() -> None:
    logs = make_logs(3)
    assert decoder(Signal.LOGS, "otlp_proto")(logs.serialize(), 0, CLIENT).message == logs.message
