"""The generated modules under agent/_proto/ are exactly what proto/generate.py makes now."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("proto_generate", ROOT / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_modules_are_fresh(tmp_path: Path) -> None:
    written = _generator().generate(tmp_path)
    assert written, "no .proto file under proto/"
    for path in written:
        rel = path.relative_to(tmp_path)
        committed = ROOT / "agent" / "_proto" / rel
        assert committed.exists(), f"{rel} is not committed: run .venv/bin/python proto/generate.py"
        assert committed.read_text() == path.read_text(), (
            f"agent/_proto/{rel} is stale: run .venv/bin/python proto/generate.py"
        )


def test_no_committed_module_without_a_proto(tmp_path: Path) -> None:
    fresh = {p.relative_to(tmp_path) for p in _generator().generate(tmp_path)}
    committed = {p.relative_to(ROOT / "agent" / "_proto") for p in (ROOT / "agent" / "_proto").rglob("*_pb2.py*")}
    assert committed == fresh


def test_write_request_round_trips() -> None:
    from agent._proto.prometheus import remote_pb2

    req = remote_pb2.WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="up")
    ts.samples.add(value=1.0, timestamp=1234)
    h = ts.histograms.add(count_int=3, schema=2)
    h.positive_spans.add(offset=-1, length=2)
    h.positive_deltas.extend([1, 1])
    back = remote_pb2.WriteRequest.FromString(req.SerializeToString())
    assert back == req
    assert back.timeseries[0].histograms[0].positive_spans[0].offset == -1


#: Jaeger's api_v2 messages (jaeger-idl proto/api_v2): field → (number, type). Wire
#: compatibility means exactly these, whatever else the .proto says.
_JAEGER_FIELDS = {
    "KeyValue": {"key": (1, "string"), "v_type": (2, "enum"), "v_str": (3, "string"), "v_bool": (4, "bool"),
                 "v_int64": (5, "int64"), "v_float64": (6, "double"), "v_binary": (7, "bytes")},
    "Log": {"timestamp": (1, "message"), "fields": (2, "message")},
    "SpanRef": {"trace_id": (1, "bytes"), "span_id": (2, "bytes"), "ref_type": (3, "enum")},
    "Process": {"service_name": (1, "string"), "tags": (2, "message")},
    "Span": {"trace_id": (1, "bytes"), "span_id": (2, "bytes"), "operation_name": (3, "string"),
             "references": (4, "message"), "flags": (5, "uint32"), "start_time": (6, "message"),
             "duration": (7, "message"), "tags": (8, "message"), "logs": (9, "message"),
             "process": (10, "message"), "process_id": (11, "string"), "warnings": (12, "string")},
    "Batch": {"spans": (1, "message"), "process": (2, "message")},
}


def test_jaeger_messages_have_jaegers_field_numbers_and_types() -> None:
    from google.protobuf.descriptor import FieldDescriptor

    from agent._proto.jaeger.api_v2 import collector_pb2, model_pb2

    names = {v: k[len("TYPE_"):].lower() for k, v in vars(FieldDescriptor).items() if k.startswith("TYPE_")}
    for message, fields in _JAEGER_FIELDS.items():
        descriptor = getattr(model_pb2, message).DESCRIPTOR
        assert descriptor.full_name == f"jaeger.api_v2.{message}"
        got = {f.name: (f.number, names[f.type]) for f in descriptor.fields}
        assert got == fields, message
    assert model_pb2.Span.DESCRIPTOR.fields_by_name["start_time"].message_type.full_name == "google.protobuf.Timestamp"
    assert model_pb2.Span.DESCRIPTOR.fields_by_name["duration"].message_type.full_name == "google.protobuf.Duration"
    assert [(v.name, v.number) for v in model_pb2.ValueType.DESCRIPTOR.values] == [
        ("STRING", 0), ("BOOL", 1), ("INT64", 2), ("FLOAT64", 3), ("BINARY", 4)]
    assert [(v.name, v.number) for v in model_pb2.SpanRefType.DESCRIPTOR.values] == [("CHILD_OF", 0), ("FOLLOWS_FROM", 1)]
    method = collector_pb2.DESCRIPTOR.services_by_name["CollectorService"].methods_by_name["PostSpans"]
    assert method.full_name == "jaeger.api_v2.CollectorService.PostSpans"
    assert method.input_type.fields_by_name["batch"].number == 1
    assert not method.output_type.fields


def test_post_spans_request_round_trips() -> None:
    from agent._proto.jaeger.api_v2 import collector_pb2, model_pb2

    req = collector_pb2.PostSpansRequest()
    req.batch.process.service_name = "ranker"
    span = req.batch.spans.add(trace_id=bytes(16), span_id=bytes(8), operation_name="predict")
    span.tags.add(key="n", v_type=model_pb2.INT64, v_int64=-5)
    span.references.add(span_id=b"\x01" * 8, ref_type=model_pb2.FOLLOWS_FROM)
    span.start_time.FromNanoseconds(1_700_000_000_123_456_789)
    back = collector_pb2.PostSpansRequest.FromString(req.SerializeToString())
    assert back == req and back.batch.spans[0].start_time.nanos == 123_456_789


def test_otlp_view_reads_the_otlp_wire_format() -> None:
    """Every field of the Jaeger exporter's OTLP view has the OTLP field's number and wire type."""
    from google.protobuf.descriptor import FieldDescriptor as F
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    from agent._proto.jaeger import otlp_view_pb2 as view

    length_delimited = {F.TYPE_BYTES, F.TYPE_STRING, F.TYPE_MESSAGE}
    varint = {F.TYPE_INT32, F.TYPE_ENUM, F.TYPE_UINT32}

    def wire(field: F) -> str:
        if field.type in length_delimited:
            return "len"
        return "varint" if field.type in varint else str(field.type)

    pairs = [(view.TracesRequestView, trace_service_pb2.ExportTraceServiceRequest),
             (view.ResourceSpansView, trace_pb2.ResourceSpans), (view.ScopeSpansView, trace_pb2.ScopeSpans),
             (view.SpanView, trace_pb2.Span), (view.EventView, trace_pb2.Span.Event)]
    for mine, theirs in pairs:
        otlp = {f.name: f for f in theirs.DESCRIPTOR.fields}
        for field in mine.DESCRIPTOR.fields:
            assert field.name in otlp, f"{mine.__name__}.{field.name}"
            want = otlp[field.name]
            assert (field.number, wire(field), field.is_repeated) == (want.number, wire(want), want.is_repeated), field.name
    # Every span field the translation needs is in the view.
    assert {f.name for f in view.SpanView.DESCRIPTOR.fields} == {f.name for f in trace_pb2.Span.DESCRIPTOR.fields}
