"""The document of each mapping mode, built from OTLP log records and spans.

Document shapes (the Collector's, field for field where it documents them):

- `otel` (default): `@timestamp`, `observed_timestamp`, `data_stream.{type,dataset,namespace}`
  at the root, `severity_text`, `severity_number`, `trace_id`, `span_id` (hex), `event_name`,
  `attributes`, `dropped_attributes_count`, `resource.{attributes,dropped_attributes_count,
  schema_url}`, `scope.{name,version,attributes}`, and `body.text` (a string body) or
  `body.structured` (a map or a list). Spans: `name`, `kind` (`Server`, ...), `parent_span_id`,
  `trace_state`, `duration` (ns), `status.{code,message}`, `links`, the dropped counts; each
  span event is a document of its own (`event_name`, the event's attributes, data stream
  type `logs`). `data_stream.*` attributes move to the root; the dataset ends in `.otel`.
- `ecs`: Elastic Common Schema names at the root: `message`, `log.level`, `event.severity`,
  `trace.id`, `span.id`, `span.name`, `parent.id`, `event.duration`, `event.outcome`, the
  resource attributes under their ECS names (`service.name`, `host.hostname`,
  `kubernetes.pod.name`, ...) and the record's attributes as they are.
- `none`: the OTLP structure with capitalised names: `Body`, `SeverityText`,
  `SeverityNumber`, `TraceId`, `SpanId`, `Attributes`, `Resource`, `Scope`; spans `Name`,
  `Kind` (`SPAN_KIND_SERVER`), `EndTimestamp`, `Duration` (µs), `TraceStatus`,
  `TraceStatusDescription`, `Link`, `Events`.
- `raw`: as `none`, with attributes (and span events) at the root instead of under
  `Attributes` (`Events`).
- `bodymap`: logs only; the body, which must be a map, is the document.

Each function takes the record, its converted attributes and the `Context` of its resource
and scope (converted and encoded once); `encode.py` routes, encodes and frames them.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from typing import Any

import msgspec
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent.exporters.elasticsearch import routing
from agent.model.attrs import as_string

_KINDS_OTEL = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
_KINDS_NONE = tuple(Span.SpanKind.Name(i) for i in range(6))
_STATUS_OTEL = ("Unset", "Ok", "Error")
_ECS_OUTCOME = ("unknown", "success", "failure")
_DATA_STREAM_KEYS = (routing.TYPE, routing.DATASET, routing.NAMESPACE)

#: Resource attributes renamed in `ecs` mode (OpenTelemetry semantic conventions → ECS).
ECS_RESOURCE_NAMES: dict[str, str] = {
    "service.instance.id": "service.node.name",
    "deployment.environment": "service.environment",
    "deployment.environment.name": "service.environment",
    "telemetry.sdk.name": "agent.name",
    "telemetry.sdk.version": "agent.version",
    "telemetry.sdk.language": "service.language.name",
    "cloud.platform": "cloud.service.name",
    "container.image.tags": "container.image.tag",
    "host.name": "host.hostname",
    "host.arch": "host.architecture",
    "process.executable.path": "process.executable",
    "process.runtime.name": "service.runtime.name",
    "process.runtime.version": "service.runtime.version",
    "os.name": "host.os.name",
    "os.type": "host.os.platform",
    "os.description": "host.os.full",
    "os.version": "host.os.version",
    "k8s.deployment.name": "kubernetes.deployment.name",
    "k8s.namespace.name": "kubernetes.namespace",
    "k8s.node.name": "kubernetes.node.name",
    "k8s.pod.name": "kubernetes.pod.name",
    "k8s.pod.uid": "kubernetes.pod.uid",
    "k8s.container.name": "kubernetes.container.name",
}
_JSON = msgspec.json.Encoder()


class _OtelLog(msgspec.Struct, omit_defaults=True):
    """A log record in `otel` mode (a Struct: built and encoded faster than a dict)."""

    timestamp: str = msgspec.field(name="@timestamp")
    observed_timestamp: str | None = None
    data_stream: dict[str, str] | None = None
    severity_text: str = ""
    severity_number: int = 0
    trace_id: str = ""
    span_id: str = ""
    event_name: str = ""
    attributes: dict[str, Any] | None = None
    dropped_attributes_count: int = 0
    resource: msgspec.Raw | None = None
    scope: msgspec.Raw | None = None
    body: dict[str, Any] | None = None


# -- values -------------------------------------------------------------------------------


def value(v: AnyValue) -> Any:
    """The JSON-ready value of an AnyValue (bytes as base64, as the Collector writes them)."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind is None:
        return None
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    return getattr(v, kind)


_SCALARS = frozenset({"string_value", "int_value", "double_value", "bool_value"})


def attributes(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        v = kv.value
        kind = v.WhichOneof("value")
        out[kv.key] = getattr(v, kind) if kind in _SCALARS else value(v)
    return out


class Timestamps:
    """Nanoseconds → `2024-05-01T12:00:00.123456789Z`, with the seconds part cached."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, ns: int) -> str:
        second, frac = divmod(ns, 1_000_000_000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{frac:09d}Z"


class Context:
    """What every record of one resource and scope shares."""

    __slots__ = ("chosen", "ecs", "index", "raw_resource", "raw_scope", "resource", "scope", "stream")

    resource: dict[str, Any]
    scope: dict[str, Any]
    raw_resource: msgspec.Raw
    raw_scope: msgspec.Raw
    ecs: dict[str, Any]
    stream: routing.DataStream
    chosen: bool
    index: str


# -- logs ---------------------------------------------------------------------------------


def otel_log(fmt: Timestamps, ctx: Context, r: LogRecord, attrs: dict[str, Any], stream: routing.DataStream,
             ts: int) -> _OtelLog:
    stamp = fmt(ts)
    observed = r.observed_time_unix_nano
    kind = r.body.WhichOneof("value")
    if kind == "string_value":
        body: dict[str, Any] | None = {"text": r.body.string_value}
    elif kind in ("kvlist_value", "array_value"):
        body = {"structured": value(r.body)}
    elif kind is not None:
        body = {"text": as_string(r.body)}
    else:
        body = None
    return _OtelLog(
        stamp,
        (stamp if observed == ts else fmt(observed)) if observed else None,
        stream.fields,
        r.severity_text,
        r.severity_number,
        r.trace_id.hex(),
        r.span_id.hex(),
        r.event_name,
        without_data_stream(attrs) if attrs else None,
        r.dropped_attributes_count,
        ctx.raw_resource,
        ctx.raw_scope,
        body,
    )


def ecs_log(fmt: Timestamps, ctx: Context, r: LogRecord, attrs: dict[str, Any], ts: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"@timestamp": fmt(ts)}
    doc.update(ctx.ecs)
    doc.update(attrs)
    kind = r.body.WhichOneof("value")
    if kind == "string_value":
        doc["message"] = r.body.string_value
    elif kind is not None:
        doc["message"] = as_string(r.body)
    if r.severity_text:
        doc["log.level"] = r.severity_text
    if r.severity_number:
        doc["event.severity"] = r.severity_number
    if r.trace_id:
        doc["trace.id"] = r.trace_id.hex()
    if r.span_id:
        doc["span.id"] = r.span_id.hex()
    return doc


def none_log(fmt: Timestamps, ctx: Context, r: LogRecord, attrs: dict[str, Any], ts: int, *, raw: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"@timestamp": fmt(ts)}
    if raw:
        doc.update(attrs)
    if r.body.WhichOneof("value") is not None:
        doc["Body"] = value(r.body)
    doc["SeverityNumber"] = r.severity_number
    if r.severity_text:
        doc["SeverityText"] = r.severity_text
    doc["TraceFlags"] = r.flags
    if r.trace_id:
        doc["TraceId"] = r.trace_id.hex()
    if r.span_id:
        doc["SpanId"] = r.span_id.hex()
    if attrs and not raw:
        doc["Attributes"] = attrs
    doc["Resource"] = ctx.raw_resource
    doc["Scope"] = ctx.raw_scope
    return doc


# -- spans --------------------------------------------------------------------------------


def otel_span(fmt: Timestamps, ctx: Context, s: Span, attrs: dict[str, Any], stream: routing.DataStream) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@timestamp": fmt(s.start_time_unix_nano),
        "data_stream": stream.fields,
        "trace_id": s.trace_id.hex(),
        "span_id": s.span_id.hex(),
    }
    if s.parent_span_id:
        doc["parent_span_id"] = s.parent_span_id.hex()
    if s.trace_state:
        doc["trace_state"] = s.trace_state
    doc["name"] = s.name
    doc["kind"] = _KINDS_OTEL[s.kind] if 0 <= s.kind < len(_KINDS_OTEL) else str(s.kind)
    doc["duration"] = max(0, s.end_time_unix_nano - s.start_time_unix_nano)
    if attrs:
        doc["attributes"] = without_data_stream(attrs)
    if s.dropped_attributes_count:
        doc["dropped_attributes_count"] = s.dropped_attributes_count
    if s.dropped_events_count:
        doc["dropped_events_count"] = s.dropped_events_count
    if s.links:
        doc["links"] = [_otel_link(link) for link in s.links]
    if s.dropped_links_count:
        doc["dropped_links_count"] = s.dropped_links_count
    status: dict[str, Any] = {"code": _STATUS_OTEL[s.status.code] if 0 <= s.status.code < 3 else "Unset"}
    if s.status.message:
        status["message"] = s.status.message
    doc["status"] = status
    doc["resource"] = ctx.raw_resource
    doc["scope"] = ctx.raw_scope
    return doc


def otel_event(fmt: Timestamps, ctx: Context, s: Span, event: Span.Event, attrs: dict[str, Any],
               stream: routing.DataStream) -> dict[str, Any]:
    """A span event as a document of its own (`otel` mode)."""
    doc: dict[str, Any] = {
        "@timestamp": fmt(event.time_unix_nano),
        "data_stream": stream.fields,
        "trace_id": s.trace_id.hex(),
        "span_id": s.span_id.hex(),
        "event_name": event.name,
        "attributes": {**without_data_stream(attrs), "event.name": event.name},
    }
    if event.dropped_attributes_count:
        doc["dropped_attributes_count"] = event.dropped_attributes_count
    doc["resource"] = ctx.raw_resource
    doc["scope"] = ctx.raw_scope
    return doc


def ecs_span(fmt: Timestamps, ctx: Context, s: Span, attrs: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"@timestamp": fmt(s.start_time_unix_nano)}
    doc.update(ctx.ecs)
    doc.update(attrs)
    doc["trace.id"] = s.trace_id.hex()
    doc["span.id"] = s.span_id.hex()
    if s.parent_span_id:
        doc["parent.id"] = s.parent_span_id.hex()
    doc["span.name"] = s.name
    doc["span.kind"] = _KINDS_OTEL[s.kind].lower() if 0 <= s.kind < len(_KINDS_OTEL) else str(s.kind)
    doc["event.duration"] = max(0, s.end_time_unix_nano - s.start_time_unix_nano)
    doc["event.outcome"] = _ECS_OUTCOME[s.status.code] if 0 <= s.status.code < 3 else "unknown"
    if s.status.message:
        doc["span.status.message"] = s.status.message
    return doc


def none_span(fmt: Timestamps, ctx: Context, s: Span, attrs: dict[str, Any], *, raw: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"@timestamp": fmt(s.start_time_unix_nano)}
    if raw:
        doc.update(attrs)
    doc["EndTimestamp"] = fmt(s.end_time_unix_nano)
    doc["TraceId"] = s.trace_id.hex()
    doc["SpanId"] = s.span_id.hex()
    if s.parent_span_id:
        doc["ParentSpanId"] = s.parent_span_id.hex()
    doc["Name"] = s.name
    doc["Kind"] = _KINDS_NONE[s.kind] if 0 <= s.kind < len(_KINDS_NONE) else str(s.kind)
    doc["TraceStatus"] = s.status.code
    if s.status.message:
        doc["TraceStatusDescription"] = s.status.message
    if s.links:
        doc["Link"] = _JSON.encode([_none_link(link) for link in s.links]).decode()
    doc["Duration"] = max(0, s.end_time_unix_nano - s.start_time_unix_nano) // 1000
    if attrs and not raw:
        doc["Attributes"] = attrs
    events = {ev.name: {"time": fmt(ev.time_unix_nano), **attributes(ev.attributes)} for ev in s.events}
    if events:
        if raw:
            doc.update(events)
        else:
            doc["Events"] = events
    doc["Resource"] = ctx.raw_resource
    doc["Scope"] = ctx.raw_scope
    return doc


def without_data_stream(attrs: dict[str, Any]) -> dict[str, Any]:
    if routing.DATASET in attrs or routing.NAMESPACE in attrs or routing.TYPE in attrs:
        return {k: v for k, v in attrs.items() if k not in _DATA_STREAM_KEYS}
    return attrs


def scope_dict(scope: InstrumentationScope, attrs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if scope.name:
        out["name"] = scope.name
    if scope.version:
        out["version"] = scope.version
    if attrs:
        out["attributes"] = attrs
    return out


def _otel_link(link: Span.Link) -> dict[str, Any]:
    out: dict[str, Any] = {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()}
    if link.trace_state:
        out["trace_state"] = link.trace_state
    if link.attributes:
        out["attributes"] = attributes(link.attributes)
    if link.dropped_attributes_count:
        out["dropped_attributes_count"] = link.dropped_attributes_count
    return out


def _none_link(link: Span.Link) -> dict[str, Any]:
    out: dict[str, Any] = {"traceId": link.trace_id.hex(), "spanId": link.span_id.hex()}
    if link.trace_state:
        out["traceState"] = link.trace_state
    if link.attributes:
        out["attributes"] = attributes(link.attributes)
    return out

