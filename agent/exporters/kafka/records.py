"""From one batch to the Kafka records that carry it: topics, keys, encodings, size limits.

`RecordBuilder.build(batch)` decides everything about the records before any is sent, so
that a retry re-sends the same records: the topic (`topic_from_metadata_key`,
`topic_from_attribute`, the signal's topic), the key (trace id, resource hash, metadata),
the encoded value and the headers. A record over `max_message_bytes` is split into smaller
ones (the slow path: the piece is parsed and encoded again); an item that alone is over
the limit is left out and counted by the caller.

Also here: the Collector's default key → partition mapping (Sarama's FNV-1a hash), so
Flowglass and Collector producers agree on where a trace id goes.
"""

from __future__ import annotations

import base64
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from agent.exporters.kafka import KafkaExporterConfig
from agent.model import Batch, Signal, otlp_json
from agent.model.group import group_by_resource, resource_attributes_hash, split_by_trace_id
from agent.model.split import split

Headers = list[tuple[str, bytes]]

_json = msgspec.json.Encoder()


@dataclass(slots=True)
class Record:
    """One Kafka record to produce, and what became of it so far."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers
    items: int
    #: Acknowledged by the broker: never sent again.
    delivered: bool = False
    #: Refused for good (too large for the broker, not authorized): never sent again.
    rejected: bool = False
    #: The send still in flight from an earlier attempt; awaited, not repeated.
    future: Any = None

    @property
    def size(self) -> int:
        return len(self.value) + (len(self.key) if self.key else 0) + sum(
            len(k) + len(v) for k, v in self.headers
        )


@dataclass
class Built:
    """The records of one batch, and the items left out because alone they are too large."""

    records: list[Record] = field(default_factory=list)
    too_large_items: int = 0


class RecordBuilder:
    """Builds the records of a batch as the exporter's config says (see the module doc)."""

    def __init__(self, config: KafkaExporterConfig) -> None:
        self._config = config
        self._limit = config.producer.max_message_bytes
        self._static_headers: Headers = [(k, v.encode()) for k, v in config.record_headers.items()]

    def build(self, batch: Batch) -> Built:
        signal = batch.signal
        sc = self._config.signal(signal)
        headers = self._headers(batch)
        out = Built()
        for topic, piece in self._by_topic(batch, sc.topic, sc.topic_from_metadata_key):
            for key, keyed in self._by_key(piece, sc.message_key_from_metadata_key):
                self._encode(keyed, topic, key, headers, sc.encoding, out)
        return out

    # ---- routing ---------------------------------------------------------------------------

    def _headers(self, batch: Batch) -> Headers:
        headers = list(self._static_headers)
        for name in self._config.include_metadata_keys:
            for value in batch.client.get(name):
                headers.append((name, value.encode()))
        return headers

    def _by_topic(self, batch: Batch, topic: str, metadata_key: str) -> list[tuple[str, Batch]]:
        if metadata_key:
            values = batch.client.get(metadata_key)
            if values and values[0]:
                return [(values[0], batch)]
        attribute = self._config.topic_from_attribute
        if not attribute:
            return [(topic, batch)]
        return [(name or topic, piece) for name, piece in group_by_resource(batch, _attribute_value(attribute))]

    def _by_key(self, batch: Batch, metadata_key: str) -> list[tuple[bytes | None, Batch]]:
        config, signal = self._config, batch.signal
        if metadata_key:
            values = batch.client.get(metadata_key)
            return [(values[0].encode() if values and values[0] else None, batch)]
        if (signal is Signal.TRACES and config.partition_traces_by_id) or (
            signal is Signal.LOGS and config.partition_logs_by_trace_id
        ):
            return [(trace_id.hex().encode() if trace_id else None, piece)
                    for trace_id, piece in split_by_trace_id(batch)]
        if (signal is Signal.METRICS and config.partition_metrics_by_resource_attributes) or (
            signal is Signal.LOGS and config.partition_logs_by_resource_attributes
        ):
            return [(key, piece) for key, piece in group_by_resource(batch, resource_attributes_hash)]
        return [(None, batch)]

    # ---- encoding and size ------------------------------------------------------------------

    def _encode(self, batch: Batch, topic: str, key: bytes | None, headers: Headers, encoding: str,
                out: Built) -> None:
        if encoding in ("raw", "json"):
            encode_record = _raw_value if encoding == "raw" else _json_value
            for record in _log_records(batch):
                value = encode_record(record)
                rec = Record(topic, key, value, headers, 1)
                if rec.size > self._limit:
                    out.too_large_items += 1
                else:
                    out.records.append(rec)
            return
        value = batch.serialize() if encoding == "otlp_proto" else otlp_json.encode(batch.message)
        rec = Record(topic, key, value, headers, batch.items)
        if rec.size <= self._limit:
            out.records.append(rec)
            return
        if batch.items <= 1:
            out.too_large_items += batch.items
            return
        # Enough pieces that each is likely to fit; a piece still over the limit splits again.
        pieces = math.ceil(rec.size / (self._limit * 0.9))
        per_piece = max(1, math.ceil(batch.items / max(2, pieces)))
        for part in split(batch, per_piece):
            self._encode(part, topic, key, headers, encoding, out)


def _attribute_value(name: str) -> Callable[[Resource], str]:
    def value(resource: Resource) -> str:
        for kv in resource.attributes:
            if kv.key == name:
                kind = kv.value.WhichOneof("value")
                return str(getattr(kv.value, kind)) if kind and kind not in ("array_value", "kvlist_value") else ""
        return ""

    return value


def _log_records(batch: Batch) -> list[LogRecord]:
    return [lr for rl in batch.message.resource_logs for sl in rl.scope_logs for lr in sl.log_records]


def any_value_to_python(v: AnyValue) -> Any:
    """A JSON-ready Python value of an AnyValue (bytes become base64 text)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value_to_python(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value_to_python(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, kind)


def _raw_value(record: LogRecord) -> bytes:
    """The Collector's `raw`: a bytes body as it is, anything else as JSON."""
    if record.body.WhichOneof("value") == "bytes_value":
        return bytes(record.body.bytes_value)
    return _json.encode(any_value_to_python(record.body))


def _json_value(record: LogRecord) -> bytes:
    """One JSON object: a map body's keys (else `body`), then time, severity and trace ids."""
    body = any_value_to_python(record.body)
    doc: dict[str, Any] = dict(body) if isinstance(body, dict) else {"body": body}
    timestamp = record.time_unix_nano or record.observed_time_unix_nano
    if timestamp and "timestamp" not in doc:
        doc["timestamp"] = format_timestamp(timestamp)
    if record.severity_text and "severity" not in doc:
        doc["severity"] = record.severity_text
    if record.trace_id and "trace_id" not in doc:
        doc["trace_id"] = record.trace_id.hex()
    if record.span_id and "span_id" not in doc:
        doc["span_id"] = record.span_id.hex()
    return _json.encode(doc)


def format_timestamp(unix_nano: int) -> str:
    """RFC 3339 UTC with nanoseconds: `2025-01-02T03:04:05.123456789Z`."""
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


# ---- partitioners -----------------------------------------------------------------------------

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def sarama_partition(key: bytes, partitions: int) -> int:
    """The partition Sarama's hash partitioner (the Collector's default) picks for `key`."""
    h = fnv1a_32(key)
    signed = h - (1 << 32) if h & 0x80000000 else h
    # Go's remainder truncates toward zero and Sarama then drops the sign.
    return abs(signed) % partitions


class SaramaPartitioner:
    """An aiokafka partitioner: keyed records as Sarama hashes them, unkeyed ones at random."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def __call__(self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
        ordered = sorted(all_partitions)
        if key is None:
            return self._rng.choice(sorted(available) if available else ordered)
        return ordered[sarama_partition(key, len(ordered))]
