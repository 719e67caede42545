"""`agent.model.attrs`: map-like edits of OTLP attribute lists, values, walking requests."""

from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent.model import Signal
from agent.model import attrs as a
from agent.testing import any_value, attrs_dict, key_values, make_logs, make_metrics, make_traces


def span_with(**values: object) -> Span:
    span = Span()
    span.attributes.extend(key_values(dict(values)))
    return span


def test_get_and_index() -> None:
    span = span_with(a=1, b="x")
    assert a.index(span.attributes, "b") == 1
    assert a.index(span.attributes, "zz") == -1
    value = a.get(span.attributes, "a")
    assert value is not None and value.int_value == 1
    assert a.get(span.attributes, "zz") is None


def test_get_returns_a_live_reference() -> None:
    span = span_with(a=1)
    value = a.get(span.attributes, "a")
    assert value is not None
    value.string_value = "changed"
    assert attrs_dict(span.attributes) == {"a": "changed"}


def test_insert_update_upsert() -> None:
    span = span_with(a=1)
    keys = ["a"]
    assert a.insert(span.attributes, "a", 2, keys) is False
    assert a.insert(span.attributes, "b", "new", keys) is True
    assert keys == ["a", "b"]
    assert a.update(span.attributes, "a", 3.5) is True
    assert a.update(span.attributes, "missing", 1) is False
    a.upsert(span.attributes, "b", True)
    a.upsert(span.attributes, "c", [1, "x"], keys)
    assert attrs_dict(span.attributes) == {"a": 3.5, "b": True, "c": [1, "x"]}
    assert keys == ["a", "b", "c"]


def test_delete_removes_every_copy_and_keeps_keys_in_step() -> None:
    span = span_with(a=1, b=2)
    span.attributes.extend(key_values({"a": 3}))
    keys = [kv.key for kv in span.attributes]
    assert a.delete(span.attributes, "a", keys) is True
    assert attrs_dict(span.attributes) == {"b": 2}
    assert keys == ["b"]
    assert a.delete(span.attributes, "a") is False


def test_delete_where() -> None:
    span = span_with(**{"http.method": "GET", "http.url": "/", "user": "u"})
    assert a.delete_where(span.attributes, lambda k: k.startswith("http.")) == 2
    assert attrs_dict(span.attributes) == {"user": "u"}


@pytest.mark.parametrize(
    "value", ["s", True, False, 0, -7, 2.5, b"\x00\x01", [1, "a", [2]], {"k": {"n": 1}}]
)
def test_assign_and_to_python_round_trip(value: object) -> None:
    v = AnyValue()
    a.assign(v, value)
    assert a.to_python(v) == value


def test_assign_replaces_a_composite_and_none_clears() -> None:
    v = any_value([1, 2, 3])
    a.assign(v, {"x": 1})
    assert a.to_python(v) == {"x": 1}
    a.assign(v, None)
    assert v.WhichOneof("value") is None
    with pytest.raises(TypeError):
        a.assign(v, object())


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("s", "s"),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (1.5, "1.5"),
        (3.0, "3"),
        (1e21, "1000000000000000000000"),
        (b"\x01\x02", "AQI="),
        ([1, "a"], '[1,"a"]'),
        ({"k": True}, '{"k":true}'),
    ],
)
def test_as_string_follows_the_collector(value: object, text: str) -> None:
    assert a.as_string(any_value(value)) == text


def test_as_string_of_empty_value_is_empty() -> None:
    assert a.as_string(AnyValue()) == ""


def test_walkers_visit_every_item_with_its_context() -> None:
    traces = make_traces(3, resources=2)
    found = list(a.spans(traces.message))
    assert len(found) == 6
    resource, scope, span = found[0]
    assert attrs_dict(resource.attributes)["service.name"] == "model-server"
    assert scope.name == "flowglass.test"
    assert span.name == "predict"
    assert len(list(a.span_events(traces.message))) == 6
    assert len(list(a.log_records(make_logs(4).message))) == 4
    metrics = make_metrics(6)
    assert len(list(a.metrics(metrics.message))) == 6
    assert len(list(a.data_points(metrics.message))) == 6
    assert len(list(a.resources(Signal.TRACES, traces.message))) == 2


def test_key_value_builder() -> None:
    kv = a.key_value("k", 3)
    assert kv.key == "k" and kv.value.int_value == 3
