"""OTLP spans → `jaeger.api_v2.PostSpansRequest` bytes, as the OpenTelemetry spec maps them.

One request per resource: its `Batch.process` has `service_name` from `service.name`
(else the SDK default, `unknown_service` or `unknown_service:<process.executable.name>`)
and the other resource attributes as typed tags. Each span carries:

- `trace_id` (16 bytes) and `span_id` (8 bytes) as bytes; the parent as the first reference
  (`CHILD_OF`), then one `FOLLOWS_FROM` reference per link (link attributes have no place);
- `start_time` and `duration` (end − start) as `google.protobuf.Timestamp`/`Duration` to the
  nanosecond, as the spec asks for the proto format. Jaeger stores microseconds and
  truncates (`t.UnixNano() / 1000`, `d.Nanoseconds() / 1000`), so what it shows is exact to
  the microsecond;
- `flags` 1 when the W3C sampled bit is set;
- tags: the attributes (string, bool, int64, float64 and binary typed; arrays and maps as
  JSON strings, bytes inside them base64), `span.kind` (`client`, `server`, `producer`,
  `consumer`, and `internal` as the Collector writes it — the spec says SHOULD NOT, but
  without it Jaeger cannot tell INTERNAL from UNSPECIFIED), `otel.status_code`
  (`OK`/`ERROR`, nothing for UNSET), `otel.status_description`, `error=true` for ERROR
  (replacing an `error` attribute), `otel.scope.name`/`otel.scope.version`,
  `w3c.tracestate`, and `otel.dropped_{attributes,events,links}_count` when not zero;
- logs: one per event, `timestamp` and fields `event` (the name, unless the event has an
  `event` attribute, which wins), the attributes, `otel.dropped_attributes_count`.

Speed: the request is parsed as `flowglass.jaeger.TracesRequestView` (`proto/jaeger/
otlp_view.proto`), the OTLP wire format with attributes, events, links and statuses left
as their encodings, and the Jaeger bytes are written by hand (`encode`): going through the
OTLP messages field by field costs more than the 10 µs a span the 100k spans/s target
allows. Encoded tags, and the fields of a log (an event's encoding less its time), are
cached by their OTLP encoding in two generations (what is used stays, what is seen once
ages out); names, kinds with statuses, and seconds in caches emptied when full. A string or
double attribute value not seen before after a known key is its cached head plus the value's
bytes (`encode.value_head`); times take their varints from tables. Repeated fields are read
as slices (lists), quicker than iterating upb's containers. Resources and scopes (a few per
request) are decoded with the OTLP messages.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agent._proto.jaeger.otlp_view_pb2 import EventView, TracesRequestView
from agent.exporters.jaeger.encode import (
    FIELD,
    LOG,
    LOW14,
    NANOS_HIGH,
    NANOS_LOW,
    SHORT_DURATION,
    SPAN_TAG,
    SPANS,
    duration,
    key_value,
    length,
    tag,
    transcode,
    uvarint,
    value_head,
)
from agent.model.attrs import as_string
from agent.model.protowire import LENGTHS, SHORT, varint

#: Encoded values kept per cache (tens of bytes each); a cache is emptied when full.
CACHE_LIMIT = 50_000

_KV_SER = KeyValue.SerializeToString
_U64 = struct.Struct("<Q").unpack_from
#: How an encoded Jaeger `KeyValue` named `error` or `event` begins (after its field key and length).
_ERROR_KEY = b"\x0a\x05error"
_EVENT_KEY = b"\x0a\x05event"
#: How a `Batch.spans` field of a body shorter than 16 KiB begins: its key and length.
_SPAN_FIELDS = tuple(SPANS + size for size in LENGTHS)

_KIND_TAGS = {kind: tag(SPAN_TAG, "span.kind", name) for kind, name in
              {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}.items()}
_STATUS_NAMES = {Status.STATUS_CODE_OK: "OK", Status.STATUS_CODE_ERROR: "ERROR"}


class MalformedError(ValueError):
    """The OTLP encoding could not be read."""


def service_name(resource: Resource) -> str:
    """`service.name` (as text), else — missing or empty — the SDK default:
    `unknown_service:<process.executable.name>`, or `unknown_service`."""
    name = executable = ""
    for kv in resource.attributes:
        if kv.key == "service.name":
            name = as_string(kv.value)
        elif kv.key == "process.executable.name":
            executable = as_string(kv.value)
    if name:
        return name
    return f"unknown_service:{executable}" if executable else "unknown_service"


class Translator:
    """Writes PostSpansRequest bytes; keeps caches of encoded pieces between calls."""

    def __init__(self, cache_limit: int = CACHE_LIMIT) -> None:
        self._limit = cache_limit
        self._tags = _Generations(cache_limit, SPAN_TAG)  # OTLP KeyValue encoding → Span.tags field
        self._fields = _Generations(cache_limit, FIELD)  # OTLP KeyValue encoding → Log.fields field
        self._logs = _Generations(cache_limit, b"")  # OTLP event encoding less its time → Log.fields
        self._names: dict[bytes, bytes] = {}  # span name → Span.operation_name field
        self._seconds: dict[int, bytes] = {}  # Unix second → Timestamp.seconds field
        #: Unix second → `Span.start_time` (and `Log.timestamp`) key, length and seconds field,
        #: for the usual 5-byte nanos.
        self._starts: dict[int, bytes] = {}
        self._log_times: dict[int, bytes] = {}
        #: (kind, OTLP Status encoding) → (the `span.kind` and status tags, whether ERROR)
        self._suffixes: dict[tuple[int, bytes], tuple[bytes, bool]] = {}
        self._event_names: dict[bytes, bytes] = {}  # event name → its `event` field
        #: Whether a `Log.fields` field with the key `event` was ever encoded.
        self._event_key_seen = False
        #: Whether a `Span.tags` field with the key `error` was ever encoded.
        self._error_key_seen = False

    def requests(self, data: bytes) -> list[tuple[bytes, int]]:
        """(PostSpansRequest bytes, spans) for every resource of an encoded
        `ExportTraceServiceRequest` that holds spans, in order. Raises `MalformedError`."""
        try:
            request = TracesRequestView.FromString(data)
            out = []
            for rs in request.resource_spans:
                parts: list[bytes] = []  # two a span: its field key and length, its body
                for ss in rs.scope_spans:
                    if ss.spans:
                        parts += self.spans(ss.spans[:], self._scope_tags(InstrumentationScope.FromString(ss.scope)))
                if parts:
                    count = len(parts) // 2
                    process = self.process(Resource.FromString(rs.resource))
                    parts += (FIELD, length(len(process)), process)
                    parts[:0] = (b"\x0a", length(sum(map(len, parts))))  # PostSpansRequest.batch
                    out.append((b"".join(parts), count))
            return out
        except DecodeError as exc:
            raise MalformedError(f"the traces request cannot be read: {exc}") from None

    def process(self, resource: Resource) -> bytes:
        """A `Process` body: the service name and the other resource attributes as tags."""
        name = service_name(resource).encode()
        parts = [b"\x0a", length(len(name)), name]
        parts += [self._field(kv) for kv in resource.attributes if kv.key != "service.name"]
        return b"".join(parts)

    def _scope_tags(self, scope: InstrumentationScope) -> bytes:
        out = tag(SPAN_TAG, "otel.scope.name", scope.name) if scope.name else b""
        return out + tag(SPAN_TAG, "otel.scope.version", scope.version) if scope.version else out

    def _field(self, kv: KeyValue) -> bytes:
        raw = _KV_SER(kv)
        return self._fields.young.get(raw) or self._miss(self._fields, raw)

    def spans(self, spans: Iterable[Any], scope_tags: bytes) -> list[bytes]:
        """Each `SpanView` as a `Batch.spans` field: two items a span, its key and length,
        then the `Span` body.

        One long loop on purpose: this is the hot path, and a function call per part of a
        span costs time the 10 µs budget does not have.
        """
        tags_cache, names, suffixes, seconds = self._tags, self._names, self._suffixes, self._seconds
        tags_get, logs_get, miss, small = tags_cache.young.get, self._logs.young.get, self._miss, LENGTHS
        low14, nanos_low, nanos_high, short_duration = LOW14, NANOS_LOW, NANOS_HIGH, SHORT_DURATION
        starts, log_times, span_fields = self._starts, self._log_times, _SPAN_FIELDS
        heads_get, young, half = tags_cache.heads.get, tags_cache.young, tags_cache.half
        out: list[bytes] = []
        for span in spans:
            trace_id, span_id, parent, name = span.trace_id, span.span_id, span.parent_span_id, span.name
            if len(trace_id) == 16 and len(span_id) == 8:
                parts = [b"\x0a\x10", trace_id, b"\x12\x08", span_id, names.get(name) or self._name(name)]
                if len(parent) == 8:
                    parts += (b"\x22\x1c\x0a\x10", trace_id, b"\x12\x08", parent)  # CHILD_OF
                elif parent:
                    parts.append(_reference(trace_id, parent, b""))
            else:
                parts = [b"\x0a", length(len(trace_id)), trace_id, b"\x12", length(len(span_id)), span_id,
                         names.get(name) or self._name(name)]
                if parent:
                    parts.append(_reference(trace_id, parent, b""))
            for link in span.links[:]:  # a slice: a list, quicker than iterating upb's container
                if link[:2] == b"\x0a\x10" and link[18:20] == b"\x12\x08":  # the ids, written first
                    parts += (b"\x22\x1e", link[:28], b"\x18\x01")
                else:
                    decoded = Span.Link.FromString(link)
                    parts.append(_reference(decoded.trace_id, decoded.span_id, b"\x18\x01"))
            if span.flags & 1:
                parts.append(b"\x28\x01")
            start = span.start_time_unix_nano
            second, nanos = divmod(start, 1_000_000_000)
            if nanos >= 0x10000000:  # most nanos: 5 varint bytes, from tables
                parts += (starts.get(second) or self._start(second), nanos_low[nanos & 0x3FFF], nanos_high[nanos >> 14])
            else:
                ts = seconds.get(second) or self._second(second)
                if nanos:
                    ts += b"\x10" + uvarint(nanos)
                parts += (b"\x32", small[len(ts)], ts)
            elapsed = span.end_time_unix_nano - start
            if 0x4000 <= elapsed < 0x10000000:  # 16 µs to 268 ms: 3 or 4 varint bytes, from tables
                high = elapsed >> 14
                parts += (short_duration[high], low14[elapsed & 0x3FFF], small[high])
            else:
                if 0 <= elapsed < 1_000_000_000:
                    ts = b"\x10" + uvarint(elapsed) if elapsed else b""
                else:
                    ts = duration(elapsed)
                parts += (b"\x3a", small[len(ts)], ts)
            attrs = span.attributes[:]
            tags: list[Any] = list(map(tags_get, attrs))  # bytes once the misses are filled in
            at = -1
            for _ in range(tags.count(None)):
                at = tags.index(None, at + 1)
                raw = attrs[at]
                # A new string or double after a known key (`_miss`, inline): head + value.
                head = heads_get(raw[:raw[1] + 6]) if len(raw) > 5 else None
                if head is not None and len(raw) == head[2]:
                    if len(young) >= half:  # a new generation
                        tags_cache.old = young
                        young = tags_cache.young = {}
                    young[raw] = tags[at] = head[0] + raw[head[1]:]
                else:
                    tags[at] = miss(tags_cache, raw)
                    young = tags_cache.young
            key = (span.kind, span.status)
            suffix, error = suffixes.get(key) or self._suffix(key)
            if error and self._error_key_seen:  # `error=true` replaces an `error` attribute
                tags = [t for t in tags if not _is_error_tag(t)]
            parts += tags
            parts += (suffix, scope_tags)
            if span.trace_state:
                parts.append(tag(SPAN_TAG, "w3c.tracestate", span.trace_state.decode(errors="replace")))
            if span.dropped_attributes_count:
                parts.append(tag(SPAN_TAG, "otel.dropped_attributes_count", span.dropped_attributes_count))
            if span.dropped_events_count:
                parts.append(tag(SPAN_TAG, "otel.dropped_events_count", span.dropped_events_count))
            if span.dropped_links_count:
                parts.append(tag(SPAN_TAG, "otel.dropped_links_count", span.dropped_links_count))
            for event in span.events[:]:
                # Written in order, an event is its time, then what becomes the log's fields.
                if event[:1] == b"\x09":
                    time, rest = _U64(event, 1)[0], event[9:]
                else:
                    time, rest = _split_event(event)
                second, nanos = divmod(time, 1_000_000_000)
                fields = logs_get(rest) or self._log_fields(rest)
                if nanos >= 0x10000000:
                    log_time = log_times.get(second) or self._log_time(second)
                    size = len(log_time) + 6 + len(fields)
                    parts += (LOG, small[size] if size < SHORT else varint(size), log_time,
                              nanos_low[nanos & 0x3FFF], nanos_high[nanos >> 14], fields)
                else:
                    ts = seconds.get(second) or self._second(second)
                    if nanos:
                        ts += b"\x10" + uvarint(nanos)
                    log = b"\x0a" + small[len(ts)] + ts + fields
                    size = len(log)
                    parts += (LOG, small[size] if size < SHORT else varint(size), log)
            body = b"".join(parts)
            size = len(body)
            out += (span_fields[size] if size < SHORT else SPANS + varint(size), body)
        return out

    # The slow paths: encode once, then cache.

    def _log_fields(self, rest: bytes) -> bytes:
        """The `Log.fields` of an event encoded without its time (cached by that encoding)."""
        event = EventView.FromString(rest)
        fields, fields_get = self._fields, self._fields.young.get
        encoded = [fields_get(r) or self._miss(fields, r) for r in event.attributes]
        name = event.name
        # An `event` attribute wins over the name; look for one only once one was seen.
        if name and not (self._event_key_seen and any(map(_is_event_field, encoded))):
            encoded.insert(0, self._event_names.get(name) or self._event_name(name))
        if event.dropped_attributes_count:
            encoded.append(tag(FIELD, "otel.dropped_attributes_count", event.dropped_attributes_count))
        return self._store(self._logs, rest, b"".join(encoded))

    def _miss(self, cache: _Generations, raw: bytes) -> bytes:
        """The encoding of an attribute not in `cache.young` (the callers looked).

        A value not seen before (an id, a latency) is mostly a string or a double after a
        key seen before: its encoding is then the cached head of that key and value shape
        plus the value's bytes.
        """
        encoded = cache.old.get(raw)
        if encoded is None:
            head = cache.heads.get(raw[:raw[1] + 6]) if len(raw) > 5 else None
            if head is not None and len(raw) == head[2]:
                encoded = head[0] + raw[head[1]:]
            else:
                encoded = self._transcode(cache, raw)
        if cache is self._fields and not self._event_key_seen:
            self._event_key_seen = _is_event_field(encoded)
        elif cache is self._tags and not self._error_key_seen:
            self._error_key_seen = _is_error_tag(encoded)
        young = cache.young
        if len(young) >= cache.half:  # a new generation
            cache.old, cache.young = young, {}
            young = cache.young
        young[raw] = encoded
        return encoded

    def _transcode(self, cache: _Generations, raw: bytes) -> bytes:
        """The encoding of an attribute, and the head for the values shaped like it."""
        field = cache.field
        encoded = transcode(raw, field)
        if encoded is None:
            kv = KeyValue.FromString(raw)
            body = key_value(kv.key, kv.value)
            return field + length(len(body)) + body
        found = value_head(raw, field)
        if found is not None:
            heads = cache.heads
            if len(heads) >= self._limit:
                heads.clear()
            prefix, head, cut, size = found
            heads[prefix] = (head, cut, size)
        return encoded

    @staticmethod
    def _store(cache: _Generations, key: bytes, encoded: bytes) -> bytes:
        young = cache.young
        if len(young) >= cache.half:  # a new generation
            cache.old, cache.young = young, {}
            young = cache.young
        young[key] = encoded
        return encoded

    def _second(self, second: int) -> bytes:
        return self._remember(self._seconds, second, b"\x08" + varint(second) if second else b"")

    def _start(self, second: int) -> bytes:
        """`Span.start_time` up to its 5-byte nanos: key, length and the seconds field."""
        ts = self._seconds.get(second) or self._second(second)
        return self._remember(self._starts, second, b"\x32" + LENGTHS[len(ts) + 6] + ts)

    def _log_time(self, second: int) -> bytes:
        """`Log.timestamp` up to its 5-byte nanos: key, length and the seconds field."""
        ts = self._seconds.get(second) or self._second(second)
        return self._remember(self._log_times, second, b"\x0a" + LENGTHS[len(ts) + 6] + ts)

    def _event_name(self, name: bytes) -> bytes:
        return self._remember(self._event_names, name, tag(FIELD, "event", name.decode(errors="replace")))

    def _name(self, name: bytes) -> bytes:
        return self._remember(self._names, name, b"\x1a" + length(len(name)) + name if name else b"")

    def _suffix(self, key: tuple[int, bytes]) -> tuple[bytes, bool]:
        """The `span.kind` and status tags of a (kind, OTLP Status encoding), and whether ERROR."""
        kind, raw = key
        tags = _KIND_TAGS.get(kind, b"")
        status = Status.FromString(raw)
        if status.code != Status.STATUS_CODE_UNSET:
            tags += tag(SPAN_TAG, "otel.status_code", _STATUS_NAMES.get(status.code, str(status.code)))
            if status.code == Status.STATUS_CODE_ERROR:
                tags += tag(SPAN_TAG, "error", True)
            if status.message:
                tags += tag(SPAN_TAG, "otel.status_description", status.message)
        if len(self._suffixes) >= self._limit:
            self._suffixes.clear()
        entry = self._suffixes[key] = (tags, status.code == Status.STATUS_CODE_ERROR)
        return entry

    def _remember(self, cache: dict[Any, bytes], key: Any, encoded: bytes) -> bytes:
        if len(cache) >= self._limit:
            cache.clear()
        cache[key] = encoded
        return encoded


class _Generations:
    """A bounded cache that keeps what is used: entries go into `young`; when it holds half
    the limit it becomes `old` (the previous `old` is dropped), and an entry found in `old`
    is put back into `young` (by `Translator._miss`). Values seen once (ids, latencies) age
    out; frequent ones stay.

    `heads` (for attribute caches) maps what begins an attribute encoding to the
    head of its encoding, see `encode.value_head`; `field` is the key of the fields written.
    """

    __slots__ = ("field", "half", "heads", "old", "young")

    def __init__(self, limit: int, field: bytes) -> None:
        self.half = max(1, limit // 2)
        self.field = field
        self.young: dict[bytes, bytes] = {}
        self.old: dict[bytes, bytes] = {}
        self.heads: dict[bytes, tuple[bytes, int, int]] = {}


def _split_event(raw: bytes) -> tuple[int, bytes]:
    """(time, the encoding of the rest) of an event whose time is not written first."""
    event = EventView.FromString(raw)
    time = event.time_unix_nano
    event.ClearField("time_unix_nano")
    return time, event.SerializeToString()


def _reference(trace_id: bytes, span_id: bytes, ref_type: bytes) -> bytes:
    """A `Span.references` field (`ref_type` b"" for CHILD_OF, b"\\x18\\x01" for FOLLOWS_FROM)."""
    if len(trace_id) == 16 and len(span_id) == 8:
        head = b"\x22\x1e\x0a\x10" if ref_type else b"\x22\x1c\x0a\x10"
        return head + trace_id + b"\x12\x08" + span_id + ref_type
    body = b"\x0a" + length(len(trace_id)) + trace_id + b"\x12" + length(len(span_id)) + span_id + ref_type
    return b"\x22" + length(len(body)) + body


def _is_error_tag(encoded: bytes) -> bool:
    """Whether an encoded `Span.tags` field (key, length, body) has the key `error`."""
    return encoded[2:9] == _ERROR_KEY if encoded[1] < 0x80 else encoded[3:10] == _ERROR_KEY


def _is_event_field(encoded: bytes) -> bool:
    """Whether an encoded `Log.fields` field (key, length, body) has the key `event`."""
    return encoded[2:9] == _EVENT_KEY if encoded[1] < 0x80 else encoded[3:10] == _EVENT_KEY
