"""The `attributes` processor: config checks, every action, from_context, include/exclude."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import msgspec
import pytest

from agent.component import Kind, Settings
from agent.config.types import dec_hook
from agent.model import Batch, ClientInfo, Signal
from agent.processors.attributes import FACTORY, ActionConfig, Actions, AttributesConfig, AttributesProcessor
from agent.testing import Sink, attrs_dict, key_values, make_logs, make_metrics, make_traces, spans_of


def convert(raw: dict[str, Any]) -> AttributesConfig:
    return msgspec.convert(raw, AttributesConfig, dec_hook=dec_hook)


def make(sink: Sink, signal: Signal = Signal.TRACES, **raw: Any) -> AttributesProcessor:
    assert FACTORY.create is not None
    proc = FACTORY.create(Settings.for_test("attributes/t", Kind.PROCESSOR, signal.value), convert(raw), signal, sink)
    assert isinstance(proc, AttributesProcessor)
    return proc


async def run_span(actions: list[dict[str, Any]], client: ClientInfo | None = None, **span_attrs: Any) -> dict[str, Any]:
    """Apply `actions` to one span carrying exactly `span_attrs`; its attributes afterwards."""
    batch = make_traces(1)
    span = spans_of([batch])[0]
    del span.attributes[:]
    span.attributes.extend(key_values(span_attrs))
    if client is not None:
        batch.client = client
    sink = Sink()
    await make(sink, actions=actions).consume(batch)
    return attrs_dict(spans_of(sink.batches)[0].attributes)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- config ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ({"action": "insert", "value": 1}, "needs a key"),
        ({"action": "insert", "key": "a"}, "needs one of value, from_attribute, from_context or default_value"),
        ({"action": "upsert", "key": "a", "value": 1, "from_attribute": "b"}, "only one of"),
        ({"action": "update", "key": "a", "value": 1, "pattern": "x"}, "does not use pattern"),
        ({"action": "insert", "key": "a", "from_context": "auth.subject"}, "server authenticator"),
        ({"action": "delete"}, "needs a key, a pattern or both"),
        ({"action": "hash", "key": "a", "value": 1}, "does not use value"),
        ({"action": "delete", "pattern": "("}, "not a valid regular expression"),
        ({"action": "extract", "key": "a"}, "needs a pattern"),
        ({"action": "extract", "key": "a", "pattern": "abc"}, "no named groups"),
        ({"action": "extract", "key": "a", "pattern": "(?P<x>a)(b)"}, "must be named"),
        ({"action": "convert", "key": "a"}, "needs converted_type"),
        ({"action": "convert", "key": "a", "converted_type": "bool"}, "is not one of int, double, string"),
        ({"action": "rename", "key": "a"}, "unknown action"),
        ({"action": "insert", "key": "a", "value": 2**64}, "64-bit"),
    ],
)
def test_action_validation(action: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        convert({"actions": [action]})


def test_actions_are_required_and_non_empty() -> None:
    with pytest.raises(msgspec.ValidationError, match="actions"):
        convert({})
    with pytest.raises(msgspec.ValidationError, match="at least one action"):
        convert({"actions": []})


def test_action_names_are_case_insensitive() -> None:
    config = convert({"actions": [{"key": "a", "value": 1, "action": "UPSERT"}]})
    assert config.actions[0].action == "upsert"


def test_include_for_another_signal_fails_at_creation() -> None:
    config = convert({"actions": [{"key": "a", "action": "delete"}],
                      "include": {"match_type": "strict", "span_names": ["x"]}})
    assert FACTORY.create is not None
    with pytest.raises(ValueError, match="span_names cannot be used to match metrics"):
        FACTORY.create(Settings.for_test("attributes", Kind.PROCESSOR, "metrics"), config, Signal.METRICS, Sink())


# -- insert, update, upsert --------------------------------------------------------------


async def test_insert_update_upsert_with_values() -> None:
    out = await run_span(
        [
            {"key": "a", "value": "new", "action": "insert"},
            {"key": "b", "value": "new", "action": "insert"},
            {"key": "a", "value": 2, "action": "update"},
            {"key": "c", "value": 3, "action": "update"},
            {"key": "d", "value": 1.5, "action": "upsert"},
            {"key": "b", "value": True, "action": "upsert"},
            {"key": "e", "value": {"x": [1, 2]}, "action": "upsert"},
        ],
        a="old",
    )
    assert out == {"a": 2, "b": True, "d": 1.5, "e": {"x": [1, 2]}}


async def test_from_attribute_and_default_value() -> None:
    out = await run_span(
        [
            {"key": "copy", "from_attribute": "src", "action": "insert"},
            {"key": "region", "from_attribute": "cloud.region", "default_value": "us-east-1", "action": "insert"},
            {"key": "nothing", "from_attribute": "missing", "action": "upsert"},
            {"key": "src", "from_attribute": "src", "action": "upsert"},
        ],
        src=[1, "two"],
    )
    assert out == {"src": [1, "two"], "copy": [1, "two"], "region": "us-east-1"}


async def test_from_context_metadata_client_address_and_default() -> None:
    client = ClientInfo(address="10.0.0.7", metadata={"x-tenant": ("acme", "beta"), "x-team": ("ml",)})
    out = await run_span(
        [
            {"key": "tenant", "from_context": "metadata.x-tenant", "action": "insert"},
            {"key": "team", "from_context": "X-Team", "action": "insert"},  # bare name: metadata
            {"key": "peer", "from_context": "client.address", "action": "upsert"},
            {"key": "missing", "from_context": "metadata.x-nope", "action": "insert"},
            {"key": "fallback", "from_context": "metadata.x-nope", "default_value": "none", "action": "insert"},
            {"key": "existing", "from_context": "metadata.x-team", "action": "insert"},
        ],
        client,
        existing="kept",
    )
    assert out == {"existing": "kept", "tenant": "acme;beta", "team": "ml", "peer": "10.0.0.7", "fallback": "none"}


async def test_from_context_reads_each_batch_client() -> None:
    sink = Sink()
    proc = make(sink, actions=[{"key": "t", "from_context": "metadata.t", "action": "upsert"}])
    for tenant in ("a", "b"):
        batch = make_traces(1)
        batch.client = ClientInfo(metadata={"t": (tenant,)})
        await proc.consume(batch)
    assert [attrs_dict(s.attributes)["t"] for s in spans_of(sink.batches)] == ["a", "b"]


# -- delete, hash ------------------------------------------------------------------------


async def test_delete_by_key_and_pattern() -> None:
    out = await run_span(
        [{"key": "user", "pattern": "^http\\.request\\.header\\.", "action": "delete"}],
        user="u", keep=1, **{"http.request.header.authorization": "x", "http.request.header.cookie": "y"},
    )
    assert out == {"keep": 1}


async def test_hash_is_sha256_of_the_collector_bytes() -> None:
    out = await run_span(
        [{"key": "s", "pattern": "^n_", "action": "hash"}],
        s="alice@example.com", n_int=42, n_double=1.5, n_bool=True, n_false=False, n_empty="", other="x",
        n_list=[1],
    )
    assert out["s"] == sha256(b"alice@example.com")
    assert out["n_int"] == sha256(struct.pack("<q", 42))
    assert out["n_double"] == sha256(struct.pack("<d", 1.5))
    assert out["n_bool"] == sha256(b"\x01")
    assert out["n_false"] == sha256(b"\x00")
    assert out["n_empty"] == ""
    assert out["n_list"] == ""
    assert out["other"] == "x"


# -- extract, convert --------------------------------------------------------------------


async def test_extract_named_groups() -> None:
    action = {"key": "url.path", "pattern": "^/v1/models/(?P<model>[^/:]+)(?::(?P<verb>\\w+))?(?P<rest>/x)?",
              "action": "extract"}
    out = await run_span([action], **{"url.path": "/v1/models/resnet:predict", "model": "old"})
    assert out == {"url.path": "/v1/models/resnet:predict", "model": "resnet", "verb": "predict", "rest": ""}
    assert await run_span([action], **{"url.path": "/healthz"}) == {"url.path": "/healthz"}
    assert await run_span([action], **{"url.path": 5}) == {"url.path": 5}


@pytest.mark.parametrize(
    ("to", "value", "expected"),
    [
        ("int", "42", 42),
        ("int", "-7", -7),
        ("int", "4.2", "4.2"),
        ("int", " 4", " 4"),
        ("int", 3.9, 3),
        ("int", True, 1),
        ("int", [1], [1]),
        ("double", "2.5", 2.5),
        ("double", "1e3", 1000.0),
        ("double", "abc", "abc"),
        ("double", 2, 2.0),
        ("double", False, 0.0),
        ("string", 200, "200"),
        ("string", 1.5, "1.5"),
        ("string", True, "true"),
        ("string", {"a": 1}, '{"a":1}'),
    ],
)
async def test_convert(to: str, value: Any, expected: Any) -> None:
    out = await run_span([{"key": "v", "action": "convert", "converted_type": to}], v=value)
    assert out == {"v": expected}
    assert type(out["v"]) is type(expected)


# -- the processor -----------------------------------------------------------------------


async def test_actions_run_in_order_and_bytes_follow() -> None:
    sink = Sink()
    proc = make(sink, actions=[
        {"key": "a", "value": "1", "action": "insert"},
        {"key": "a", "action": "convert", "converted_type": "int"},
        {"key": "b", "from_attribute": "a", "action": "insert"},
    ])
    assert proc.mutates_data is True
    batch = Batch.parse(Signal.TRACES, make_traces(5).serialize())
    await proc.consume(batch)
    assert sink.batches[0].items == 5
    again = Batch.parse(Signal.TRACES, sink.batches[0].serialize())
    for span in spans_of([again]):
        attrs = attrs_dict(span.attributes)
        assert attrs["a"] == 1 and attrs["b"] == 1


async def test_include_exclude_on_spans() -> None:
    sink = Sink()
    proc = make(
        sink,
        actions=[{"key": "tagged", "value": True, "action": "insert"}],
        include={"match_type": "strict", "services": ["model-server"]},
        exclude={"match_type": "regexp", "span_names": ["^health"]},
    )
    await proc.consume(make_traces(2, name="predict"))
    await proc.consume(make_traces(2, name="healthz"))
    await proc.consume(make_traces(2, service="other"))
    tagged = ["tagged" in attrs_dict(s.attributes) for s in spans_of(sink.batches)]
    assert tagged == [True, True, False, False, False, False]


async def test_logs_with_include() -> None:
    sink = Sink()
    proc = make(sink, Signal.LOGS,
                actions=[{"key": "request.id", "action": "hash"}],
                include={"match_type": "regexp", "log_bodies": ["done 1$"]})
    await proc.consume(make_logs(3))
    records = list(sink.batches[0].message.resource_logs[0].scope_logs[0].log_records)  # type: ignore[union-attr]
    ids = [attrs_dict(r.attributes)["request.id"] for r in records]
    assert ids[0] == "req-0-0" and ids[2] == "req-0-2"
    assert ids[1] == sha256(b"req-0-1")


async def test_metrics_apply_to_every_point_of_selected_metrics() -> None:
    sink = Sink()
    proc = make(sink, Signal.METRICS,
                actions=[{"key": "model", "value": "bert", "action": "update"}],
                exclude={"match_type": "regexp", "metric_names": ["gauge"]})
    await proc.consume(make_metrics(6))
    metrics = sink.batches[0].message.resource_metrics[0].scope_metrics[0].metrics  # type: ignore[union-attr]
    for m in metrics:
        point = getattr(m, m.WhichOneof("data")).data_points[0]
        want = "resnet" if "gauge" in m.name else "bert"
        assert attrs_dict(point.attributes)["model"] == want


def test_generated_code_treats_keys_and_values_as_data() -> None:
    tricky = '") or __import__("os").system("false") or ("'
    actions = Actions([msgspec.convert({"key": tricky, "value": tricky, "action": "upsert"}, ActionConfig)])
    assert tricky not in actions.source
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    span = Span()
    actions.apply(span.attributes)
    assert attrs_dict(span.attributes) == {tricky: tricky}


async def test_error_from_next_consumer_propagates() -> None:
    sink = Sink()
    sink.fail_with = RuntimeError("down")
    proc = make(sink, actions=[{"key": "a", "action": "delete"}])
    with pytest.raises(RuntimeError, match="down"):
        await proc.consume(make_traces(1))


async def test_span_events_are_changed_only_when_asked() -> None:
    from agent.component import Kind, Settings
    from agent.config.types import dec_hook
    from agent.model import Signal
    from agent.processors.attributes import FACTORY, AttributesConfig
    from agent.testing import Sink, attrs_dict, key_values, make_traces, spans_of

    def run_config(span_events: bool) -> AttributesConfig:
        return msgspec.convert(
            {"actions": [{"key": "user.email", "action": "delete"}], "span_events": span_events},
            AttributesConfig, dec_hook=dec_hook)

    for span_events in (False, True):
        batch = make_traces(3, span_attrs={"user.email": "a@b.c"})
        for span in spans_of([batch]):
            span.events[0].attributes.extend(key_values({"user.email": "a@b.c"}))
        sink = Sink()
        assert FACTORY.create is not None
        proc = FACTORY.create(Settings.for_test("attributes", Kind.PROCESSOR, "traces"),
                              run_config(span_events), Signal.TRACES, sink)
        await proc.consume(batch)
        for span in spans_of(sink.batches):
            assert "user.email" not in attrs_dict(span.attributes)
            assert ("user.email" in attrs_dict(span.events[0].attributes)) is (not span_events)


_CHAINS = [
    # Inserted attributes read, changed and removed by later actions of the same list.
    [{"key": "a", "value": "x", "action": "insert"}, {"key": "a", "value": "y", "action": "upsert"},
     {"key": "b", "from_context": "metadata.t", "default_value": "d", "action": "insert"},
     {"key": "b", "action": "hash"}, {"key": "c", "from_attribute": "a", "action": "insert"},
     {"key": "a", "action": "delete"}, {"key": "e", "value": 5, "action": "insert"},
     {"key": "e", "action": "convert", "converted_type": "string"}],
    [{"key": "u", "value": "/v1/m/resnet", "action": "upsert"},
     {"key": "u", "pattern": "^/v1/m/(?P<model>[^/]+)", "action": "extract"},
     {"key": "model", "value": {"k": [1, 2]}, "action": "update"}, {"key": "n", "value": 1.5, "action": "insert"},
     {"pattern": "^[nm]", "action": "hash"}, {"key": "z", "from_context": "client.address", "action": "upsert"},
     {"key": "z", "value": False, "action": "update"}, {"pattern": "^x", "action": "delete"}],
]


@pytest.mark.parametrize("actions", _CHAINS)
@pytest.mark.parametrize("start", [{}, {"a": "old", "x1": 1, "e": 7, "u": "/v1/m/bert/x", "z": "?"}])
def test_merging_inserted_attributes_gives_what_appending_gives(actions: list[dict[str, Any]],
                                                                start: dict[str, Any]) -> None:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    from agent.processors.attributes import attributes_tag

    compiled = Actions(convert({"actions": actions}).actions)
    compiled.prepare(ClientInfo(address="10.0.0.1", metadata={"t": ("T",)}))
    appended, merged = Span(name="s"), Span(name="s")
    appended.attributes.extend(key_values(start))
    merged.attributes.extend(key_values(start))
    compiled.apply(appended.attributes)
    compiled.apply_merge(merged.attributes, merged.MergeFromString, attributes_tag(Span))
    assert merged.SerializeToString() == appended.SerializeToString()
    assert len(attrs_dict(merged.attributes)) >= 3


async def test_inserted_attributes_land_in_the_attributes_of_every_item_type() -> None:
    # Inserts are merged as wire bytes with each item type's own `attributes` field number:
    # every other field must come out untouched.
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    traces = ExportTraceServiceRequest()
    span = traces.resource_spans.add().scope_spans.add().spans.add(name="s", kind=2, start_time_unix_nano=5)
    span.events.add(name="e", time_unix_nano=6, dropped_attributes_count=1)
    logs = ExportLogsServiceRequest()
    logs.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=7, severity_number=9,
                                                              dropped_attributes_count=2)
    metrics = ExportMetricsServiceRequest()
    sm = metrics.resource_metrics.add().scope_metrics.add()
    sm.metrics.add(name="g").gauge.data_points.add(time_unix_nano=8, as_double=1.5, flags=1)
    sm.metrics.add(name="c").sum.data_points.add(time_unix_nano=8, as_int=3)
    sm.metrics.add(name="h").histogram.data_points.add(count=3, sum=2.0, bucket_counts=[1, 2], explicit_bounds=[1.0])
    sm.metrics.add(name="x").exponential_histogram.data_points.add(count=1, scale=3, zero_count=1)
    sm.metrics.add(name="q").summary.data_points.add(count=2, sum=1.0)
    for signal, request in ((Signal.TRACES, traces), (Signal.LOGS, logs), (Signal.METRICS, metrics)):
        expected = type(request).FromString(request.SerializeToString())
        items: list[Any] = []
        for container in (expected.resource_spans if signal is Signal.TRACES else []):
            for s in container.scope_spans[0].spans:
                items += [s, *s.events]
        for container in (expected.resource_logs if signal is Signal.LOGS else []):
            items += list(container.scope_logs[0].log_records)
        for container in (expected.resource_metrics if signal is Signal.METRICS else []):
            items += [getattr(m, m.WhichOneof("data")).data_points[0] for m in container.scope_metrics[0].metrics]
        for item in items:
            item.attributes.extend(key_values({"a": "x", "b": 2}))
        sink = Sink()
        await make(sink, signal, span_events=True,
                   actions=[{"key": "a", "value": "x", "action": "insert"},
                            {"key": "b", "value": 2, "action": "upsert"}]).consume(Batch(signal, message=request))
        assert sink.batches[0].message == expected
