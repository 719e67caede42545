"""split_by_trace_id and group_by_resource: pieces keep the request's shape and every item once."""

from __future__ import annotations

import pytest
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from agent.model import Batch, Signal
from agent.model.group import group_by_resource, resource_attributes_hash, split_by_trace_id
from agent.testing import key_values, make_logs, make_metrics, make_traces, spans_of


def test_spans_are_grouped_by_trace_id_with_their_resource_and_scope() -> None:
    batch = make_traces(12, resources=2, traces=3, seed=1)
    before = batch.serialize()
    pieces = split_by_trace_id(batch)
    assert len(pieces) == 3
    assert batch.serialize() == before  # the input is not changed
    seen = []
    for trace_id, piece in pieces:
        spans = spans_of([piece])
        assert {s.trace_id for s in spans} == {trace_id}
        assert piece.items == len(spans)
        # Both resources hold spans of every trace: each piece has both, with their attributes.
        assert len(piece.message.resource_spans) == 2
        for rs, original in zip(piece.message.resource_spans, batch.message.resource_spans, strict=True):
            assert rs.resource == original.resource
            assert rs.scope_spans[0].scope == original.scope_spans[0].scope
        seen += spans
    assert sorted(s.SerializeToString() for s in seen) == sorted(s.SerializeToString() for s in spans_of([batch]))


def test_order_of_spans_is_kept_within_a_trace() -> None:
    batch = make_traces(9, traces=3, seed=2)
    for trace_id, piece in split_by_trace_id(batch):
        want = [s.span_id for s in spans_of([batch]) if s.trace_id == trace_id]
        assert [s.span_id for s in spans_of([piece])] == want


def test_a_batch_of_one_trace_comes_back_as_it_is() -> None:
    data = make_traces(5, traces=1).serialize()
    batch = Batch(Signal.TRACES, data=data)
    [(trace_id, piece)] = split_by_trace_id(batch)
    assert piece is batch and piece.serialize() is data
    assert len(trace_id) == 16


def test_an_empty_batch_gives_no_pieces() -> None:
    assert split_by_trace_id(Batch(Signal.TRACES, data=b"")) == []


def test_log_records_are_grouped_by_trace_id_and_those_without_share_one_piece() -> None:
    batch = make_logs(4)
    message = batch.mutable()
    records = message.resource_logs[0].scope_logs[0].log_records
    records[1].trace_id = records[0].trace_id
    records[2].trace_id = b""
    records[3].trace_id = b""
    pieces = dict(split_by_trace_id(batch))
    assert set(pieces) == {records[0].trace_id, b""}
    assert pieces[records[0].trace_id].items == 2 and pieces[b""].items == 2


def test_metrics_have_no_trace_id() -> None:
    with pytest.raises(ValueError, match="no trace id"):
        split_by_trace_id(make_metrics(3))


def _service(resource: Resource) -> str:
    return next((kv.value.string_value for kv in resource.attributes if kv.key == "service.name"), "")


@pytest.mark.parametrize("signal", list(Signal))
def test_group_by_resource_keeps_resources_with_equal_keys_together(signal: Signal) -> None:
    makers = {Signal.TRACES: make_traces, Signal.METRICS: make_metrics, Signal.LOGS: make_logs}
    a, b = makers[signal](3, resources=2, service="a"), makers[signal](3, resources=1, service="b")
    batch = Batch.merge([a, b, makers[signal](3, resources=1, service="a")])
    pieces = group_by_resource(batch, _service)
    assert [k for k, _ in pieces] == ["a", "b"]
    assert [p.items for _, p in pieces] == [9, 3]


def test_group_by_resource_returns_a_batch_of_one_key_whole() -> None:
    batch = make_traces(4, resources=3)
    [(key, piece)] = group_by_resource(batch, _service)
    assert key == "model-server" and piece is batch


def test_resource_hash_ignores_attribute_order() -> None:
    one = Resource(attributes=key_values({"a": 1, "b": "x"}))
    two = Resource(attributes=key_values({"b": "x", "a": 1}))
    other = Resource(attributes=key_values({"a": 1, "b": "y"}))
    assert resource_attributes_hash(one) == resource_attributes_hash(two)
    assert resource_attributes_hash(one) != resource_attributes_hash(other)
    assert len(resource_attributes_hash(one)) == 16
