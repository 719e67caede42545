"""What the OpenTelemetry spec's Jaeger mapping says a span becomes, checked field by field.

Written from the spec, independently of `agent.exporters.jaeger.translate`: tags and log
fields are compared as {key: (type, value)} maps, and a key may appear only once.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent._proto.jaeger.api_v2 import model_pb2

KINDS = {Span.SPAN_KIND_INTERNAL: "internal", Span.SPAN_KIND_SERVER: "server", Span.SPAN_KIND_CLIENT: "client",
         Span.SPAN_KIND_PRODUCER: "producer", Span.SPAN_KIND_CONSUMER: "consumer"}
TYPES = {model_pb2.STRING: "STRING", model_pb2.BOOL: "BOOL", model_pb2.INT64: "INT64",
         model_pb2.FLOAT64: "FLOAT64", model_pb2.BINARY: "BINARY"}


def jaeger_value(kv: model_pb2.KeyValue) -> tuple[str, Any]:
    name = TYPES[kv.v_type]
    field = {"STRING": "v_str", "BOOL": "v_bool", "INT64": "v_int64", "FLOAT64": "v_float64",
             "BINARY": "v_binary"}[name]
    return name, getattr(kv, field)


def tag_map(kvs: Any) -> dict[str, tuple[str, Any]]:
    keys = [kv.key for kv in kvs]
    assert len(keys) == len(set(keys)), f"a tag key appears twice: {keys}"
    return {kv.key: jaeger_value(kv) for kv in kvs}


def _plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None if kind is None else getattr(value, kind)


def otel_value(value: AnyValue) -> tuple[str, Any]:
    """The typed tag the spec asks for: primitives typed, arrays and maps as JSON strings."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return "STRING", value.string_value
    if kind == "bool_value":
        return "BOOL", value.bool_value
    if kind == "int_value":
        return "INT64", value.int_value
    if kind == "double_value":
        return "FLOAT64", value.double_value
    if kind == "bytes_value":
        return "BINARY", value.bytes_value
    if kind is None:
        return "STRING", ""
    return "STRING", json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False)


def expected_service(resource: Resource) -> str:
    attrs = {kv.key: kv.value for kv in resource.attributes}
    if "service.name" in attrs and attrs["service.name"].string_value:
        return attrs["service.name"].string_value
    exe = attrs.get("process.executable.name")
    return f"unknown_service:{exe.string_value}" if exe is not None else "unknown_service"


def check_process(resource: Resource, process: model_pb2.Process) -> None:
    assert process.service_name == expected_service(resource)
    assert tag_map(process.tags) == {
        kv.key: otel_value(kv.value) for kv in resource.attributes if kv.key != "service.name"
    }


def expected_tags(scope: InstrumentationScope, span: Span) -> dict[str, tuple[str, Any]]:
    tags = {kv.key: otel_value(kv.value) for kv in span.attributes}
    if span.kind in KINDS:
        tags["span.kind"] = ("STRING", KINDS[span.kind])
    if span.status.code == span.status.STATUS_CODE_OK:
        tags["otel.status_code"] = ("STRING", "OK")
    elif span.status.code == span.status.STATUS_CODE_ERROR:
        tags["otel.status_code"] = ("STRING", "ERROR")
        tags["error"] = ("BOOL", True)
    if span.status.code and span.status.message:
        tags["otel.status_description"] = ("STRING", span.status.message)
    if scope.name:
        tags["otel.scope.name"] = ("STRING", scope.name)
    if scope.version:
        tags["otel.scope.version"] = ("STRING", scope.version)
    if span.trace_state:
        tags["w3c.tracestate"] = ("STRING", span.trace_state)
    for name in ("attributes", "events", "links"):
        count = getattr(span, f"dropped_{name}_count")
        if count:
            tags[f"otel.dropped_{name}_count"] = ("INT64", count)
    return tags


def expected_log_fields(event: Span.Event) -> dict[str, tuple[str, Any]]:
    fields = {kv.key: otel_value(kv.value) for kv in event.attributes}
    if event.name and "event" not in fields:
        fields["event"] = ("STRING", event.name)
    if event.dropped_attributes_count:
        fields["otel.dropped_attributes_count"] = ("INT64", event.dropped_attributes_count)
    return fields


def check_span(scope: InstrumentationScope, span: Span, got: model_pb2.Span) -> None:
    """Every field of the Jaeger span is what the OTLP span says it must be."""
    assert got.trace_id == span.trace_id and got.span_id == span.span_id
    assert got.operation_name == span.name
    refs = [(r.trace_id, r.span_id, r.ref_type) for r in got.references]
    expected_refs = [(span.trace_id, span.parent_span_id, model_pb2.CHILD_OF)] if span.parent_span_id else []
    expected_refs += [(link.trace_id, link.span_id, model_pb2.FOLLOWS_FROM) for link in span.links]
    assert refs == expected_refs
    assert got.flags == (1 if span.flags & 1 else 0)
    # Nanosecond exact on the wire; Jaeger stores microseconds, truncating.
    assert got.start_time.ToNanoseconds() == span.start_time_unix_nano
    assert got.duration.ToNanoseconds() == span.end_time_unix_nano - span.start_time_unix_nano
    assert got.start_time.ToNanoseconds() // 1000 == span.start_time_unix_nano // 1000
    assert tag_map(got.tags) == expected_tags(scope, span)
    assert len(got.logs) == len(span.events)
    for log, event in zip(got.logs, span.events, strict=True):
        assert log.timestamp.ToNanoseconds() == event.time_unix_nano
        assert tag_map(log.fields) == expected_log_fields(event)
    assert not got.HasField("process") and not got.process_id and not got.warnings


def check_request(otlp: Any, batches: list[model_pb2.Batch]) -> None:
    """One Jaeger batch per OTLP resource that holds spans, in order, every span checked."""
    groups = [rs for rs in otlp.resource_spans if any(ss.spans for ss in rs.scope_spans)]
    assert len(batches) == len(groups)
    for rs, batch in zip(groups, batches, strict=True):
        check_process(rs.resource, batch.process)
        pairs = [(ss.scope, span) for ss in rs.scope_spans for span in ss.spans]
        assert len(batch.spans) == len(pairs)
        for (scope, span), got in zip(pairs, batch.spans, strict=True):
            check_span(scope, span, got)
