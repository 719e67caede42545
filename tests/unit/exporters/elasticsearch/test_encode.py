"""Documents per mapping mode, action lines, ids, and the bulk helpers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agent.exporters.elasticsearch import routing
from agent.exporters.elasticsearch.bulk import BulkRequest, BulkResponseError, halves, ndjson, outcomes, split
from agent.exporters.elasticsearch.documents import Timestamps
from agent.exporters.elasticsearch.encode import Doc, DocumentEncoder
from agent.model import Batch, Signal, new_request
from agent.testing import key_values

T0 = 1_714_571_110_123_456_789  # 2024-05-01T13:45:10.123456789Z
TS = "2024-05-01T13:45:10.123456789Z"
TRACE = bytes(range(16))
SPAN = bytes(range(8))


def encoder(mode: str = "otel", **overrides: Any) -> DocumentEncoder:
    options: dict[str, Any] = dict(
        mode=mode, logs_index="logs-generic-default", traces_index="traces-generic-default",
        logs_dynamic_index=False, traces_dynamic_index=False, logstash=None, pipeline="",
        logs_dynamic_id=False, hash_ids=False)
    options.update(overrides)
    return DocumentEncoder(**options)


def log_batch(body: Any = "hello", attrs: dict[str, Any] | None = None) -> Batch:
    req = new_request(Signal.LOGS)
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(key_values({"service.name": "svc", "host.name": "n1",
                                              "data_stream.dataset": "app"}))
    sl = rl.scope_logs.add()
    sl.scope.name = "lib"
    sl.scope.version = "2.0"
    r = sl.log_records.add()
    r.time_unix_nano = T0
    r.observed_time_unix_nano = T0
    r.severity_number = 17  # type: ignore[assignment]
    r.severity_text = "ERROR"
    r.trace_id = TRACE
    r.span_id = SPAN
    if isinstance(body, dict):
        r.body.kvlist_value.values.extend(key_values(body))
    else:
        r.body.string_value = body
    r.attributes.extend(key_values(attrs if attrs is not None else {"k": 1}))
    return Batch(Signal.LOGS, req)


def span_batch() -> Batch:
    req = new_request(Signal.TRACES)
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(key_values({"service.name": "svc"}))
    ss = rs.scope_spans.add()
    ss.scope.name = "lib"
    s = ss.spans.add()
    s.trace_id = TRACE
    s.span_id = SPAN
    s.parent_span_id = bytes(8)[:7] + b"\x01"
    s.name = "predict"
    s.kind = Span.SPAN_KIND_CLIENT
    s.start_time_unix_nano = T0
    s.end_time_unix_nano = T0 + 2_500_000
    s.status.code = Status.STATUS_CODE_ERROR
    s.status.message = "boom"
    s.attributes.extend(key_values({"a": "b"}))
    ev = s.events.add()
    ev.name = "retry"
    ev.time_unix_nano = T0 + 1000
    ev.attributes.extend(key_values({"n": 2}))
    link = s.links.add()
    link.trace_id = TRACE
    link.span_id = b"\x09" * 8
    return Batch(Signal.TRACES, req)


def body_of(doc: Doc) -> dict[str, Any]:
    return dict(json.loads(doc.body))


def test_timestamps_keep_nanoseconds() -> None:
    ts = Timestamps()
    assert ts(T0) == TS
    assert ts(T0 - 123_456_789) == "2024-05-01T13:45:10.000000000Z"
    assert ts(0) == "1970-01-01T00:00:00.000000000Z"


def test_otel_log_document() -> None:
    docs, failures = encoder().encode(log_batch())
    assert failures == []
    assert body_of(docs[0]) == {
        "@timestamp": TS,
        "observed_timestamp": TS,
        "data_stream": {"type": "logs", "dataset": "app.otel", "namespace": "default"},
        "severity_text": "ERROR",
        "severity_number": 17,
        "trace_id": TRACE.hex(),
        "span_id": SPAN.hex(),
        "attributes": {"k": 1},
        "resource": {"attributes": {"service.name": "svc", "host.name": "n1"}},
        "scope": {"name": "lib", "version": "2.0"},
        "body": {"text": "hello"},
    }
    assert docs[0].action == b'{"create":{"_index":"logs-generic-default"}}\n'


def test_otel_structured_body_and_bytes_values() -> None:
    docs, _ = encoder().encode(log_batch(body={"user": "ada", "n": [1, 2]}, attrs={"raw": b"\x01\x02"}))
    doc = body_of(docs[0])
    assert doc["body"] == {"structured": {"user": "ada", "n": [1, 2]}}
    assert doc["attributes"] == {"raw": "AQI="}


def test_ecs_log_document() -> None:
    docs, _ = encoder("ecs").encode(log_batch())
    doc = body_of(docs[0])
    assert doc["message"] == "hello" and doc["log.level"] == "ERROR" and doc["event.severity"] == 17
    assert doc["service.name"] == "svc" and doc["host.hostname"] == "n1"
    assert doc["trace.id"] == TRACE.hex() and doc["span.id"] == SPAN.hex() and doc["k"] == 1


@pytest.mark.parametrize("mode", ["none", "raw"])
def test_none_and_raw_log_documents(mode: str) -> None:
    docs, _ = encoder(mode).encode(log_batch())
    doc = body_of(docs[0])
    assert doc["Body"] == "hello" and doc["SeverityText"] == "ERROR" and doc["SeverityNumber"] == 17
    assert doc["TraceId"] == TRACE.hex() and doc["SpanId"] == SPAN.hex()
    assert doc["Resource"]["service.name"] == "svc"
    assert doc["Scope"] == {"name": "lib", "version": "2.0"}
    if mode == "none":
        assert doc["Attributes"] == {"k": 1} and "k" not in doc
    else:
        assert doc["k"] == 1 and "Attributes" not in doc


def test_bodymap_takes_the_body_and_refuses_other_bodies() -> None:
    docs, failures = encoder("bodymap").encode(log_batch(body={"a": {"b": 1}}))
    assert [body_of(d) for d in docs] == [{"a": {"b": 1}}] and failures == []
    docs, failures = encoder("bodymap").encode(log_batch(body="text"))
    assert docs == [] and len(failures) == 1 and "not a map" in failures[0].reason
    with pytest.raises(ValueError, match="logs only"):
        encoder("bodymap").encode(span_batch())


def test_otel_span_and_its_event_as_a_separate_document() -> None:
    docs, _ = encoder(traces_dynamic_index=True).encode(span_batch())
    span, event = (body_of(d) for d in docs)
    assert docs[0].index == "traces-generic.otel-default"
    assert docs[1].index == "logs-generic.otel-default"  # events route as logs
    assert span["name"] == "predict" and span["kind"] == "Client" and span["duration"] == 2_500_000
    assert span["status"] == {"code": "Error", "message": "boom"}
    assert span["parent_span_id"] == "0000000000000001"
    assert span["links"] == [{"trace_id": TRACE.hex(), "span_id": "09" * 8}]
    assert span["attributes"] == {"a": "b"} and span["resource"] == {"attributes": {"service.name": "svc"}}
    assert event["event_name"] == "retry" and event["attributes"] == {"n": 2, "event.name": "retry"}
    assert event["trace_id"] == TRACE.hex() and event["span_id"] == SPAN.hex()
    assert event["data_stream"]["type"] == "logs"


def test_ecs_none_and_raw_spans() -> None:
    [ecs] = encoder("ecs").encode(span_batch())[0]
    doc = body_of(ecs)
    assert doc["span.name"] == "predict" and doc["event.outcome"] == "failure"
    assert doc["event.duration"] == 2_500_000 and doc["parent.id"] == "0000000000000001"
    [none] = encoder("none").encode(span_batch())[0]
    doc = body_of(none)
    assert doc["Kind"] == "SPAN_KIND_CLIENT" and doc["Duration"] == 2500 and doc["TraceStatus"] == 2
    assert doc["TraceStatusDescription"] == "boom" and doc["Events"]["retry"]["n"] == 2
    assert json.loads(doc["Link"]) == [{"traceId": TRACE.hex(), "spanId": "09" * 8}]
    [raw] = encoder("raw").encode(span_batch())[0]
    doc = body_of(raw)
    assert doc["a"] == "b" and doc["retry"]["n"] == 2 and "Events" not in doc


def test_dynamic_id_pipeline_and_hash_ids() -> None:
    batch = log_batch(attrs={"elasticsearch.document_id": "abc", "k": 1})
    [doc] = encoder(logs_dynamic_id=True, pipeline="p1").encode(batch)[0]
    assert doc.id == "abc"
    assert json.loads(doc.action) == {"create": {"_index": "logs-generic-default", "_id": "abc", "pipeline": "p1"}}
    assert "elasticsearch.document_id" not in body_of(doc)["attributes"]

    first = encoder(hash_ids=True).encode(log_batch())[0][0]
    again = encoder(hash_ids=True).encode(log_batch())[0][0]
    other = encoder(hash_ids=True).encode(log_batch("bye"))[0][0]
    assert first.id is not None and len(first.id) == 32
    assert first.id == again.id != other.id
    assert json.loads(first.action)["create"]["_id"] == first.id


def test_identical_records_in_one_batch_get_different_hash_ids() -> None:
    batch = log_batch()
    rl = batch.message.resource_logs[0]
    sl = rl.scope_logs[0]
    sl.log_records.add().CopyFrom(sl.log_records[0])  # the same line twice, read together
    sl.log_records.add().CopyFrom(sl.log_records[0])
    enc = encoder(hash_ids=True)
    docs = enc.encode(batch)[0]
    assert len({d.body for d in docs}) == 1
    ids = [d.id for d in docs]
    assert len(set(ids)) == 3, "each repeat is a record of its own and must be stored"
    assert [d.id for d in enc.encode(batch)[0]] == ids  # a resend of the batch: same ids
    assert [d.id for d in encoder(hash_ids=True).encode(batch)[0]] == ids  # after a restart too
    assert ids[0] == encoder(hash_ids=True).encode(log_batch())[0][0].id


def test_data_stream_attributes_move_to_the_root_in_otel_mode() -> None:
    [doc] = encoder().encode(log_batch(attrs={routing.NAMESPACE: "prod", "k": 1}))[0]
    body = body_of(doc)
    assert body["data_stream"] == {"type": "logs", "dataset": "app.otel", "namespace": "prod"}
    assert body["attributes"] == {"k": 1}


def test_metrics_are_refused() -> None:
    from agent.testing import make_metrics

    with pytest.raises(ValueError, match="logs and traces"):
        encoder().encode(make_metrics(3))


# -- bulk ---------------------------------------------------------------------------------


def _doc(i: int, size: int = 10) -> Doc:
    return Doc("i", str(i), b'{"create":{}}\n', b"x" * size)


def test_ndjson_and_split() -> None:
    docs = [_doc(1, 2), _doc(2, 3)]
    assert ndjson(docs) == b'{"create":{}}\nxx\n{"create":{}}\nxxx\n'
    parts = split([_doc(i) for i in range(5)], 2 * _doc(0).nbytes)
    assert [len(p) for p in parts] == [2, 2, 1]
    assert [len(p) for p in split([_doc(0, 1000), _doc(1)], 10)] == [1, 1]  # an oversized doc goes alone
    assert split([], 10) == []


def test_halves_cut_at_half_the_bytes() -> None:
    def ids(parts: tuple[list[Doc], list[Doc]]) -> tuple[list[str | None], list[str | None]]:
        return [d.id for d in parts[0]], [d.id for d in parts[1]]

    assert ids(halves([_doc(i) for i in range(4)])) == (["0", "1"], ["2", "3"])
    assert ids(halves([_doc(i) for i in range(5)])) == (["0", "1", "2"], ["3", "4"])
    assert ids(halves([_doc(0), _doc(1)])) == (["0"], ["1"])
    # A large document is cut off from the small ones at once, wherever it is.
    assert ids(halves([_doc(0, 1000), _doc(1), _doc(2)])) == (["0"], ["1", "2"])
    assert ids(halves([_doc(0), _doc(1), _doc(2, 1000)])) == (["0", "1"], ["2"])
    assert ids(halves([_doc(0), _doc(1, 1000), _doc(2)])) == (["0", "1"], ["2"])


def test_bulk_request_is_a_batch_the_queue_can_bound() -> None:
    docs = [_doc(i) for i in range(3)]
    req = BulkRequest(Signal.LOGS, docs)
    assert req.items == 3 and req.nbytes == sum(d.nbytes for d in docs)
    assert req.serialize() == ndjson(docs)
    req.pending = docs[:1]
    assert req.items == 3  # the count the sender reports stays the request's
    with pytest.raises(TypeError):
        req.message  # noqa: B018


def test_outcomes_reads_every_item() -> None:
    assert outcomes(b'{"took":1,"errors":false,"items":[{"create":{"status":201}}]}', 1) is None
    body = json.dumps({"errors": True, "items": [
        {"create": {"status": 201}},
        {"create": {"status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "exists"}}},
        {"create": {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "bad",
                                             "caused_by": {"type": "illegal_argument_exception", "reason": "x"}}}},
        {"index": {"status": 429, "error": "too many"}},
    ]}).encode()
    results = outcomes(body, 4)
    assert results is not None
    assert [r.status for r in results] == [201, 409, 400, 429]
    assert results[2].error_type == "mapper_parsing_exception"
    assert results[2].reason == "bad (caused by illegal_argument_exception: x)"
    assert results[3].reason == "too many"
    with pytest.raises(BulkResponseError, match="2 items for 3"):
        outcomes(b'{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":201}}]}', 3)
    with pytest.raises(BulkResponseError, match="not valid"):
        outcomes(b"<html>", 1)
