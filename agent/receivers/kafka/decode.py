"""Record value → batch, per encoding; a value that does not decode raises `UndecodableError`.

`otlp_proto` keeps the record's bytes in the batch, so an OTLP or Kafka exporter forwards
them as they came. `raw`, `text` and `json` make one log record per Kafka record, observed
at the Kafka record's timestamp. `json` takes the time and severity from common fields:
`timestamp`, `time`, `@timestamp`, `ts` (RFC 3339 text or a number of seconds, milli-,
micro- or nanoseconds since the epoch) and `severity`, `level`, `severity_text`,
`log.level` (a name such as `warn`, or a number 1–24).
"""

from __future__ import annotations

import codecs
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from agent.model import Batch, ClientInfo, Signal, new_request, otlp_json

Decoder = Callable[[bytes, int, ClientInfo], Batch]

_json = msgspec.json.Decoder()
_TIME_KEYS = ("timestamp", "time", "@timestamp", "ts")
_SEVERITY_KEYS = ("severity", "level", "severity_text", "log.level")
#: Severity names → OTLP severity numbers (the first of each range).
_SEVERITIES = {
    "trace": 1, "debug": 5, "info": 9, "information": 9, "notice": 10, "warn": 13, "warning": 13,
    "error": 17, "err": 17, "critical": 21, "crit": 21, "fatal": 21, "emergency": 21, "alert": 21,
}
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", re.IGNORECASE)


class UndecodableError(ValueError):
    """The record's value is not valid in its topic's encoding; the message says why."""


def decoder(signal: Signal, encoding: str) -> Decoder:
    """The decoder of `signal`'s records in `encoding` (validated by the Config)."""
    if encoding == "otlp_proto":
        return lambda value, ts_ms, client: _otlp_proto(signal, value, client)
    if encoding == "otlp_json":
        return lambda value, ts_ms, client: _otlp_json(signal, value, client)
    if encoding == "raw":
        return _raw
    if encoding == "json":
        return _json_log
    codec = "utf-8" if encoding == "text" else encoding[len("text_"):]
    codecs.lookup(codec)
    return lambda value, ts_ms, client: _text(value, ts_ms, client, codec)


def _otlp_proto(signal: Signal, value: bytes, client: ClientInfo) -> Batch:
    try:
        return Batch.parse(signal, value, client)
    except DecodeError as exc:
        raise UndecodableError(f"not a protobuf {signal.value} export request: {exc}") from None


def _otlp_json(signal: Signal, value: bytes, client: ClientInfo) -> Batch:
    try:
        return Batch(signal, otlp_json.decode(signal, value), client=client)
    except otlp_json.OTLPJSONError as exc:
        raise UndecodableError(f"not an OTLP/JSON {signal.value} export request: {exc}") from None


def _single_log(ts_ms: int, client: ClientInfo) -> tuple[Batch, LogRecord]:
    request = new_request(Signal.LOGS)
    record: LogRecord = request.resource_logs.add().scope_logs.add().log_records.add()
    record.observed_time_unix_nano = ts_ms * 1_000_000 if ts_ms > 0 else time.time_ns()
    return Batch(Signal.LOGS, request, items=1, client=client), record


def _raw(value: bytes, ts_ms: int, client: ClientInfo) -> Batch:
    batch, record = _single_log(ts_ms, client)
    record.body.bytes_value = value
    return batch


def _text(value: bytes, ts_ms: int, client: ClientInfo, codec: str) -> Batch:
    try:
        text = value.decode(codec)
    except UnicodeDecodeError as exc:
        raise UndecodableError(f"not {codec} text: {exc}") from None
    batch, record = _single_log(ts_ms, client)
    record.body.string_value = text
    return batch


def _json_log(value: bytes, ts_ms: int, client: ClientInfo) -> Batch:
    try:
        doc = _json.decode(value)
    except msgspec.DecodeError as exc:
        raise UndecodableError(f"not JSON: {exc}") from None
    batch, record = _single_log(ts_ms, client)
    _set_value(record.body, doc)
    if isinstance(doc, dict):
        record.time_unix_nano = _timestamp(doc)
        _severity(doc, record)
    return batch


def _set_value(target: AnyValue, value: Any) -> None:
    """Fill an AnyValue from a decoded JSON value; `null` leaves it empty."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        if -(2**63) <= value < 2**63:
            target.int_value = value
        else:
            target.double_value = float(value)
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, list):
        target.array_value.SetInParent()
        values = target.array_value.values
        for item in value:
            _set_value(values.add(), item)
    elif isinstance(value, dict):
        target.kvlist_value.SetInParent()
        pairs = target.kvlist_value.values
        for key, item in value.items():
            kv = pairs.add()
            kv.key = str(key)
            _set_value(kv.value, item)


def _timestamp(doc: dict[str, Any]) -> int:
    for key in _TIME_KEYS:
        value = doc.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            return _epoch_nanos(value)
        if isinstance(value, str):
            parsed = parse_rfc3339(value)
            if parsed is not None:
                return parsed
    return 0


def _epoch_nanos(number: float) -> int:
    """A number since the epoch in s, ms, µs or ns, told apart by its size (integers exactly)."""
    magnitude = abs(number)
    scale = 10**9 if magnitude < 1e11 else 10**6 if magnitude < 1e14 else 10**3 if magnitude < 1e17 else 1
    if isinstance(number, int):
        return max(0, number * scale)
    return max(0, round(number * scale))


def parse_rfc3339(text: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 time (any fraction length), or None."""
    m = _RFC3339.match(text.strip())
    if m is None:
        return None
    zone = m.group(3) or "Z"
    try:
        base = datetime.fromisoformat(m.group(1) + ("+00:00" if zone.upper() == "Z" else zone))
    except ValueError:
        return None
    fraction = (m.group(2) or "")[:9].ljust(9, "0")
    return max(0, int(base.timestamp()) * 1_000_000_000 + int(fraction))


def _severity(doc: dict[str, Any], record: LogRecord) -> None:
    for key in _SEVERITY_KEYS:
        value = doc.get(key)
        if isinstance(value, str) and value:
            record.severity_text = value
            number = _SEVERITIES.get(value.lower())
            if number is not None:
                record.severity_number = number  # type: ignore[assignment]
            return
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 24:
            record.severity_number = value  # type: ignore[assignment]
            return


def client_info(record: Any) -> ClientInfo:
    """The record's coordinates and headers as request metadata (like the Collector's)."""
    metadata: dict[str, tuple[str, ...]] = {
        "kafka.topic": (record.topic,),
        "kafka.partition": (str(record.partition),),
        "kafka.offset": (str(record.offset),),
    }
    for name, value in record.headers or ():
        key = name.lower()
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        metadata[key] = (*metadata.get(key, ()), text)
    return ClientInfo(metadata=metadata)


def extract_headers(batch: Batch, headers: Any, names: list[str]) -> None:
    """Add `kafka.header.<name>` to every resource for each named header the record has."""
    found: dict[str, str] = {}
    for name, value in headers or ():
        if name in names and name not in found:
            found[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if not found:
        return
    message = batch.mutable()
    field = {Signal.TRACES: "resource_spans", Signal.METRICS: "resource_metrics", Signal.LOGS: "resource_logs"}
    for res in getattr(message, field[batch.signal]):
        for name, text in found.items():
            kv = res.resource.attributes.add()
            kv.key = f"kafka.header.{name}"
            kv.value.string_value = text
