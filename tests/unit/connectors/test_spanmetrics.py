"""`spanmetrics` behaviour: what is emitted for which spans, bounds, temporality, lifecycle."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agent.component import Kind, Settings
from agent.config.types import dec_hook
from agent.connectors.spanmetrics import FACTORY, SpanMetricsConfig
from agent.connectors.spanmetrics.aggregation import OVERFLOW_ATTRIBUTE
from agent.connectors.spanmetrics.connector import SpanMetricsConnector
from agent.errors import RetryableError, ShuttingDownError
from agent.model import Batch, Signal, new_request
from agent.testing import Sink, attrs_dict, key_values, make_traces, random_span_id, random_trace_id

MS = 1_000_000
T0 = 1_700_000_000 * 10**9


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1e9)


@dataclass
class S:
    """One span to generate: duration in ms and the fields that make its series."""

    ms: float = 10.0
    name: str = "predict"
    kind: int = Span.SPAN_KIND_SERVER
    status: int = Status.STATUS_CODE_UNSET
    attrs: dict[str, Any] = field(default_factory=dict)


def traces(*groups: tuple[dict[str, Any], list[S]]) -> Batch:
    """A traces batch: one resource per (resource attributes, spans) group."""
    req = new_request(Signal.TRACES)
    for resource, spans in groups:
        rs = req.resource_spans.add()  # type: ignore[union-attr]
        rs.resource.attributes.extend(key_values(resource))
        ss = rs.scope_spans.add()
        for s in spans:
            sp = ss.spans.add()
            sp.trace_id = random_trace_id()
            sp.span_id = random_span_id()
            sp.name = s.name
            sp.kind = s.kind  # type: ignore[assignment]
            sp.status.code = s.status  # type: ignore[assignment]
            sp.start_time_unix_nano = T0
            sp.end_time_unix_nano = T0 + int(s.ms * MS)
            sp.attributes.extend(key_values(s.attrs))
    return Batch(Signal.TRACES, req)


SVC = {"service.name": "model-server", "service.instance.id": "i-1"}


def make(sink: Sink | None = None, clock: Clock | None = None, **raw: Any) -> tuple[SpanMetricsConnector, Sink, Settings]:
    sink = sink or Sink()
    settings = Settings.for_test("spanmetrics", Kind.CONNECTOR)
    config = msgspec.convert(raw, SpanMetricsConfig, dec_hook=dec_hook)
    conn = SpanMetricsConnector(settings, config, sink, clock=clock or Clock())
    return conn, sink, settings


def metric(req: ExportMetricsServiceRequest, name: str, resource: int = 0) -> Metric:
    for m in req.resource_metrics[resource].scope_metrics[0].metrics:
        if m.name == name:
            return m
    raise AssertionError(f"no metric {name}")


def points(m: Metric) -> dict[tuple[tuple[str, Any], ...], Any]:
    kind = m.WhichOneof("data")
    assert kind is not None
    return {tuple(sorted(attrs_dict(dp.attributes).items())): dp for dp in getattr(m, kind).data_points}


def last(sink: Sink) -> ExportMetricsServiceRequest:
    message = sink.batches[-1].message
    assert isinstance(message, ExportMetricsServiceRequest)
    return message


def sample(s: Settings, name: str, **labels: str) -> float:
    value = s.metrics.registry.get_sample_value(name, {"component": "spanmetrics", **labels})
    return 0.0 if value is None else value


async def test_calls_and_duration_per_series_with_collector_names() -> None:
    conn, sink, _ = make()
    await conn.start()
    await conn.consume(traces((SVC, [
        S(1), S(2), S(3), S(20_000),  # ≤2ms twice (bounds are upper-inclusive), 4ms, +Inf
        S(500, status=Status.STATUS_CODE_ERROR),
        S(7, name="load", kind=Span.SPAN_KIND_INTERNAL, status=Status.STATUS_CODE_OK),
    ])))
    assert await conn.flush()
    req = last(sink)
    assert len(req.resource_metrics) == 1
    assert attrs_dict(req.resource_metrics[0].resource.attributes) == SVC
    assert req.resource_metrics[0].scope_metrics[0].scope.name == "spanmetricsconnector"
    calls = metric(req, "traces.span.metrics.calls")
    assert calls.sum.is_monotonic
    assert calls.sum.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    by = points(calls)
    ok = (("service.name", "model-server"), ("span.kind", "SPAN_KIND_SERVER"), ("span.name", "predict"),
          ("status.code", "STATUS_CODE_UNSET"))
    err = (("service.name", "model-server"), ("span.kind", "SPAN_KIND_SERVER"), ("span.name", "predict"),
           ("status.code", "STATUS_CODE_ERROR"))
    internal = (("service.name", "model-server"), ("span.kind", "SPAN_KIND_INTERNAL"), ("span.name", "load"),
                ("status.code", "STATUS_CODE_OK"))
    assert {k: dp.as_int for k, dp in by.items()} == {ok: 4, err: 1, internal: 1}
    # Attribute order on the wire is the Collector's: service, name, kind, status.
    first = calls.sum.data_points[0]
    assert [kv.key for kv in first.attributes] == ["service.name", "span.name", "span.kind", "status.code"]

    duration = metric(req, "traces.span.metrics.duration")
    assert duration.unit == "ms"
    d = points(duration)[ok]
    assert list(d.explicit_bounds) == [2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10000, 15000]
    assert d.count == 4 and d.sum == pytest.approx(1 + 2 + 3 + 20_000)
    assert list(d.bucket_counts) == [2, 1] + [0] * 14 + [1]
    assert sum(points(duration)[err].bucket_counts) == 1
    assert points(duration)[err].bucket_counts[9] == 1  # (400, 800]
    await conn.shutdown()


async def test_seconds_unit_and_no_namespace() -> None:
    conn, sink, _ = make(namespace="", histogram={"unit": "s", "explicit": {"buckets": ["100ms", "1s"]}})
    await conn.consume(traces((SVC, [S(50), S(100), S(999), S(5000)])))
    await conn.flush()
    req = last(sink)
    calls = metric(req, "calls")
    assert calls.sum.data_points[0].as_int == 4
    duration = metric(req, "duration")
    assert duration.unit == "s"
    dp = duration.histogram.data_points[0]
    assert list(dp.explicit_bounds) == pytest.approx([0.1, 1.0])
    assert list(dp.bucket_counts) == [2, 1, 1]
    assert dp.sum == pytest.approx(6.149)


async def test_dimensions_from_span_then_resource_then_default() -> None:
    conn, sink, _ = make(dimensions=[
        {"name": "ml.model.name"},
        {"name": "ml.model.version", "default": "unknown"},
        {"name": "region"},
    ])
    resource = {**SVC, "ml.model.name": "from-resource", "region": "eu"}
    await conn.consume(traces((resource, [
        S(attrs={"ml.model.name": "resnet", "ml.model.version": "v2"}),
        S(attrs={"ml.model.name": "resnet", "ml.model.version": "v2"}),
        S(attrs={"ml.model.name": "resnet", "ml.model.version": 3}),
        S(attrs={}),
    ]), (SVC, [S()])))
    await conn.flush()
    req = last(sink)
    got = {k: dp.as_int for k, dp in points(metric(req, "traces.span.metrics.calls")).items()}
    base = {"service.name": "model-server", "span.kind": "SPAN_KIND_SERVER", "span.name": "predict",
            "status.code": "STATUS_CODE_UNSET"}

    def key(**extra: Any) -> tuple[tuple[str, Any], ...]:
        return tuple(sorted({**base, **extra}.items()))

    assert got == {
        key(**{"ml.model.name": "resnet", "ml.model.version": "v2", "region": "eu"}): 2,
        # The attribute keeps its type (an int here), as in the Collector.
        key(**{"ml.model.name": "resnet", "ml.model.version": 3, "region": "eu"}): 1,
        key(**{"ml.model.name": "from-resource", "ml.model.version": "unknown", "region": "eu"}): 1,
    }
    # The second resource has no ml.model.name and no region: those dimensions are omitted.
    other = {k: dp.as_int for k, dp in points(metric(req, "traces.span.metrics.calls", resource=1)).items()}
    assert other == {key(**{"ml.model.version": "unknown"}): 1}


async def test_canary_and_stable_are_separate_series() -> None:
    conn, sink, _ = make(dimensions=[{"name": "ml.model.name"}, {"name": "ml.model.version"}])
    stable = [S(10, attrs={"ml.model.name": "ranker", "ml.model.version": "1.4"}) for _ in range(9)]
    canary = [S(900, status=Status.STATUS_CODE_ERROR, attrs={"ml.model.name": "ranker", "ml.model.version": "1.5"})]
    await conn.consume(traces((SVC, stable + canary)))
    await conn.flush()
    dur = metric(last(sink), "traces.span.metrics.duration")
    by_version = {attrs_dict(dp.attributes)["ml.model.version"]: dp for dp in dur.histogram.data_points}
    assert by_version["1.4"].count == 9 and by_version["1.5"].count == 1
    assert attrs_dict(by_version["1.5"].attributes)["status.code"] == "STATUS_CODE_ERROR"


async def test_exclude_dimensions_merges_series() -> None:
    conn, sink, _ = make(exclude_dimensions=["status.code", "service.name"])
    await conn.consume(traces((SVC, [S(status=Status.STATUS_CODE_ERROR), S(status=Status.STATUS_CODE_OK), S()])))
    await conn.flush()
    calls = metric(last(sink), "traces.span.metrics.calls")
    assert len(calls.sum.data_points) == 1
    assert attrs_dict(calls.sum.data_points[0].attributes) == {"span.name": "predict", "span.kind": "SPAN_KIND_SERVER"}
    assert calls.sum.data_points[0].as_int == 3


async def test_cumulative_keeps_totals_and_start_time() -> None:
    clock = Clock()
    conn, sink, _ = make(clock=clock)
    await conn.consume(traces((SVC, [S(), S()])))
    clock.advance(15)
    await conn.flush()
    clock.advance(15)
    await conn.consume(traces((SVC, [S()])))
    clock.advance(15)
    await conn.flush()
    first, second = (b.message.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0]  # type: ignore[union-attr]
                     for b in sink.batches)
    assert (first.as_int, second.as_int) == (2, 3)
    assert first.start_time_unix_nano == second.start_time_unix_nano == T0
    assert first.time_unix_nano == T0 + 15 * 10**9 and second.time_unix_nano == T0 + 45 * 10**9
    # With no new spans, the totals are sent again.
    await conn.flush()
    assert last(sink).resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0].as_int == 3


async def test_delta_sends_each_interval_once() -> None:
    clock = Clock()
    conn, sink, _ = make(clock=clock, aggregation_temporality="AGGREGATION_TEMPORALITY_DELTA")
    await conn.start()
    await conn.consume(traces((SVC, [S(), S()])))
    clock.advance(10)
    await conn.flush()
    await conn.consume(traces((SVC, [S(3000)])))
    clock.advance(10)
    await conn.flush()
    first, second = (b.message for b in sink.batches)
    c1 = metric(first, "traces.span.metrics.calls")  # type: ignore[arg-type]
    c2 = metric(second, "traces.span.metrics.calls")  # type: ignore[arg-type]
    assert c1.sum.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    assert (c1.sum.data_points[0].as_int, c2.sum.data_points[0].as_int) == (2, 1)
    # Intervals are contiguous: each starts where the previous one ended.
    assert c1.sum.data_points[0].start_time_unix_nano == T0
    assert c2.sum.data_points[0].start_time_unix_nano == c1.sum.data_points[0].time_unix_nano
    d2 = metric(second, "traces.span.metrics.duration").histogram.data_points[0]  # type: ignore[arg-type]
    assert d2.count == 1 and d2.sum == pytest.approx(3000)
    # Nothing new: nothing is sent.
    await conn.flush()
    assert len(sink.batches) == 2
    await conn.shutdown()


async def test_series_limit_overflows_into_one_series_per_resource() -> None:
    conn, sink, settings = make(aggregation_cardinality_limit=2)
    spans = [S(name=f"op-{i}") for i in range(10)] * 3
    await conn.consume(traces((SVC, spans)))
    await conn.consume(traces((SVC, [S(name="op-0"), S(name="op-9")])))
    assert conn.aggregator.series == 3  # two series and the overflow series
    await conn.flush()
    calls = metric(last(sink), "traces.span.metrics.calls")
    got = {tuple(sorted(attrs_dict(dp.attributes).items())): dp.as_int for dp in calls.sum.data_points}
    overflow = ((OVERFLOW_ATTRIBUTE, True),)
    assert got[overflow] == 8 * 3 + 1
    assert sum(got.values()) == 32  # totals stay right
    assert len(got) == 3
    assert sample(settings, "flowglass_connector_spanmetrics_overflow_spans_total") == 25
    assert sample(settings, "flowglass_connector_spanmetrics_series") == 3
    # The overflow attribute is a boolean, as the SDKs write it.
    dp = next(dp for dp in calls.sum.data_points if dp.attributes[0].key == OVERFLOW_ATTRIBUTE)
    assert dp.attributes[0].value.WhichOneof("value") == "bool_value"
    dur = metric(last(sink), "traces.span.metrics.duration")
    assert sum(d.count for d in dur.histogram.data_points) == 32


async def test_dimensions_cache_size_bounds_series_when_no_cardinality_limit() -> None:
    conn, _, _ = make(dimensions_cache_size=5)
    for round_ in range(20):
        await conn.consume(traces((SVC, [S(name=f"op-{round_}-{i}") for i in range(50)])))
    assert conn.aggregator.series == 6


async def test_resource_limit_overflows_into_an_empty_resource() -> None:
    conn, sink, _ = make(resource_metrics_cache_size=1)
    other = {"service.name": "other", "service.instance.id": "x"}
    third = {"service.name": "third"}
    await conn.consume(traces((SVC, [S()]), (other, [S(), S()]), (third, [S()])))
    assert conn.aggregator.resources == 1
    await conn.flush()
    req = last(sink)
    assert len(req.resource_metrics) == 2
    assert attrs_dict(req.resource_metrics[0].resource.attributes) == SVC
    assert list(req.resource_metrics[1].resource.attributes) == []
    overflow = metric(req, "traces.span.metrics.calls", resource=1).sum.data_points
    assert len(overflow) == 1 and overflow[0].as_int == 3
    assert attrs_dict(overflow[0].attributes) == {OVERFLOW_ATTRIBUTE: True}


async def test_resource_key_attributes_merge_resources() -> None:
    conn, sink, _ = make(resource_metrics_key_attributes=["service.name"])
    await conn.consume(traces(({**SVC, "process.pid": 1}, [S()]), ({**SVC, "process.pid": 2}, [S()])))
    await conn.flush()
    req = last(sink)
    assert len(req.resource_metrics) == 1
    assert metric(req, "traces.span.metrics.calls").sum.data_points[0].as_int == 2
    # The first resource seen names the metrics.
    assert attrs_dict(req.resource_metrics[0].resource.attributes)["process.pid"] == 1


async def test_spans_without_service_name_are_skipped_and_counted() -> None:
    conn, sink, settings = make()
    await conn.consume(traces(({"host.name": "n"}, [S(), S()]), (SVC, [S()])))
    await conn.flush()
    req = last(sink)
    assert len(req.resource_metrics) == 1
    assert sample(settings, "flowglass_connector_spanmetrics_skipped_spans_total", reason="no_service_name") == 2


async def test_exemplars_carry_trace_and_span_ids_and_are_cleared_after_a_flush() -> None:
    conn, sink, _ = make(exemplars={"enabled": True, "max_per_data_point": 2})
    batch = traces((SVC, [S(5), S(6), S(7)]))
    spans = list(batch.message.resource_spans[0].scope_spans[0].spans)  # type: ignore[union-attr]
    await conn.consume(batch)
    await conn.flush()
    dur = metric(last(sink), "traces.span.metrics.duration").histogram.data_points[0]
    assert [(e.trace_id, e.span_id) for e in dur.exemplars] == [(s.trace_id, s.span_id) for s in spans[:2]]
    assert [e.as_double for e in dur.exemplars] == pytest.approx([5, 6])
    assert len(metric(last(sink), "traces.span.metrics.calls").sum.data_points[0].exemplars) == 2
    await conn.flush()
    assert not metric(last(sink), "traces.span.metrics.duration").histogram.data_points[0].exemplars


async def test_no_exemplars_by_default() -> None:
    conn, sink, _ = make()
    await conn.consume(traces((SVC, [S(5)])))
    await conn.flush()
    assert not metric(last(sink), "traces.span.metrics.duration").histogram.data_points[0].exemplars


async def test_expired_series_are_dropped_and_restart_from_zero() -> None:
    clock = Clock()
    conn, sink, settings = make(clock=clock, metrics_expiration="60s")
    await conn.consume(traces((SVC, [S(name="old"), S(name="kept")])))
    clock.advance(50)
    await conn.consume(traces((SVC, [S(name="kept")])))
    clock.advance(20)
    await conn.flush()  # "old" was last seen 70s ago: sent once more, then dropped
    assert {attrs_dict(dp.attributes)["span.name"] for dp in
            metric(last(sink), "traces.span.metrics.calls").sum.data_points} == {"old", "kept"}
    assert sample(settings, "flowglass_connector_spanmetrics_expired_series_total") == 1
    await conn.consume(traces((SVC, [S(name="old")])))
    await conn.flush()
    calls = {attrs_dict(dp.attributes)["span.name"]: dp for dp in
             metric(last(sink), "traces.span.metrics.calls").sum.data_points}
    assert calls["old"].as_int == 1 and calls["old"].start_time_unix_nano == clock.now
    assert calls["kept"].as_int == 2
    clock.advance(120)
    await conn.flush()
    await conn.flush()
    assert conn.aggregator.series == 0 and conn.aggregator.resources == 0


async def test_histogram_disable_sends_calls_only() -> None:
    conn, sink, _ = make(histogram={"disable": True})
    await conn.consume(traces((SVC, [S()])))
    await conn.flush()
    names = [m.name for m in last(sink).resource_metrics[0].scope_metrics[0].metrics]
    assert names == ["traces.span.metrics.calls"]


def _expo_bounds(scale: int, index: int) -> tuple[float, float]:
    base = 2.0 ** (2.0 ** -scale)
    return base**index, base ** (index + 1)


async def test_exponential_histogram_keeps_values_in_their_buckets_within_max_size() -> None:
    conn, sink, _ = make(histogram={"exponential": {"max_size": 20}})
    values = [0.0, 0.5, 1.0, 3.0, 10.0, 100.0, 999.0, 12_345.0]
    await conn.consume(traces((SVC, [S(v) for v in values])))
    await conn.flush()
    dur = metric(last(sink), "traces.span.metrics.duration")
    assert dur.WhichOneof("data") == "exponential_histogram"
    dp = dur.exponential_histogram.data_points[0]
    assert dp.count == len(values) and dp.sum == pytest.approx(sum(values))
    assert dp.zero_count == 1
    counts = list(dp.positive.bucket_counts)
    assert len(counts) <= 20 and sum(counts) == len(values) - 1
    # Each value lies in the bucket it was counted in: (base**i, base**(i+1)].
    expected: dict[int, int] = {}
    for v in values[1:]:
        i = next(i for i in range(dp.positive.offset, dp.positive.offset + len(counts))
                 if _expo_bounds(dp.scale, i)[0] < v <= _expo_bounds(dp.scale, i)[1] * (1 + 1e-12))
        expected[i - dp.positive.offset] = expected.get(i - dp.positive.offset, 0) + 1
    assert {i: c for i, c in enumerate(counts) if c} == expected
    assert dp.scale < 20  # it had to shrink to fit 12345/0.5 within 20 buckets


async def test_exponential_histogram_stays_fine_grained_for_close_values() -> None:
    conn, sink, _ = make(histogram={"exponential": {}})
    await conn.consume(traces((SVC, [S(100 + i / 10) for i in range(50)])))
    await conn.flush()
    dp = metric(last(sink), "traces.span.metrics.duration").exponential_histogram.data_points[0]
    assert len(dp.positive.bucket_counts) <= 160
    lo, hi = _expo_bounds(dp.scale, dp.positive.offset)
    assert lo < 100 <= hi * (1 + 1e-12)
    assert hi / lo - 1 < 0.001  # a bucket's relative width is tiny at this scale
    assert math.isclose(dp.sum, sum(100 + i / 10 for i in range(50)))


async def test_the_input_batch_is_not_changed() -> None:
    conn, _, _ = make(dimensions=[{"name": "ml.model.name"}], exemplars={"enabled": True})
    batch = make_traces(50, error_every=3)
    before = batch.message.SerializeToString()
    await conn.consume(batch)
    await conn.flush()
    assert batch.message.SerializeToString() == before
    assert conn.mutates_data is False


async def test_timer_flushes_and_shutdown_flushes_what_is_held() -> None:
    sink = Sink()
    settings = Settings.for_test("spanmetrics", Kind.CONNECTOR)
    config = msgspec.convert({"metrics_flush_interval": "20ms"}, SpanMetricsConfig, dec_hook=dec_hook)
    assert FACTORY.create is not None
    conn = FACTORY.create(settings, config, Signal.TRACES, {Signal.METRICS: sink})
    await conn.start()
    await conn.consume(traces((SVC, [S()])))
    await sink.wait_for_items(2)  # calls + duration data points, from the timer
    assert sample(settings, "flowglass_connector_spanmetrics_flushes_total", outcome="ok") >= 1
    await conn.consume(traces((SVC, [S(), S()])))
    await conn.shutdown()
    assert last(sink).resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0].as_int == 3
    n = len(sink.batches)
    await conn.shutdown()
    assert len(sink.batches) == n
    with pytest.raises(ShuttingDownError):
        await conn.consume(traces((SVC, [S()])))


async def test_shutdown_without_spans_sends_nothing() -> None:
    conn, sink, settings = make()
    await conn.start()
    await conn.shutdown()
    assert sink.batches == []
    assert sample(settings, "flowglass_connector_spanmetrics_flushes_total", outcome="empty") == 1


async def test_a_failed_cumulative_flush_is_carried_by_the_next() -> None:
    conn, sink, settings = make()
    await conn.consume(traces((SVC, [S(), S()])))
    sink.fail_with, sink.fail_times = RetryableError("down"), 1
    assert not await conn.flush()
    assert await conn.flush()
    assert metric(last(sink), "traces.span.metrics.calls").sum.data_points[0].as_int == 2
    assert sample(settings, "flowglass_connector_spanmetrics_flushes_total", outcome="failed") == 1


async def test_a_failed_delta_flush_is_counted_and_the_next_interval_is_clean(caplog: pytest.LogCaptureFixture) -> None:
    conn, sink, settings = make(aggregation_temporality="AGGREGATION_TEMPORALITY_DELTA")
    await conn.consume(traces((SVC, [S(), S()])))
    sink.fail_with, sink.fail_times = RetryableError("down"), 1
    assert not await conn.flush()
    assert any("lost" in r.getMessage() for r in caplog.records)
    await conn.consume(traces((SVC, [S()])))
    assert await conn.flush()
    assert metric(last(sink), "traces.span.metrics.calls").sum.data_points[0].as_int == 1
    assert sample(settings, "flowglass_connector_spanmetrics_flushes_total", outcome="failed") == 1


@pytest.mark.parametrize("temporality", ["AGGREGATION_TEMPORALITY_CUMULATIVE", "AGGREGATION_TEMPORALITY_DELTA"])
async def test_a_slow_metrics_pipeline_does_not_block_traces(temporality: str) -> None:
    conn, sink, _ = make(aggregation_temporality=temporality)
    await conn.consume(traces((SVC, [S()])))
    sink.block()
    flushing = asyncio.ensure_future(conn.flush())
    await asyncio.sleep(0)
    # Spans arriving while a flush waits on the metrics pipeline are aggregated at once...
    await asyncio.wait_for(conn.consume(traces((SVC, [S()]))), 1.0)
    sink.unblock()
    assert await flushing
    await conn.flush()
    counts = [metric(b.message, "traces.span.metrics.calls").sum.data_points[0].as_int  # type: ignore[arg-type]
              for b in sink.batches]
    # ...and belong to the next emission: counted once either way.
    assert counts == ([1, 2] if temporality.endswith("CUMULATIVE") else [1, 1])


async def test_through_the_graph_from_a_traces_pipeline_to_a_metrics_pipeline(tmp_path: Any) -> None:
    from agent.testing import running_agent

    out = tmp_path / "metrics.jsonl"
    yaml = f"""
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
exporters:
  file:
    path: {out}
connectors:
  spanmetrics:
    metrics_flush_interval: 1h
    dimensions:
      - name: ml.model.version
service:
  telemetry:
    metrics:
      address: ""
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [spanmetrics]
    metrics:
      receivers: [spanmetrics]
      exporters: [file]
"""
    async with running_agent(yaml) as service:
        entry = service.graph.entry("traces")
        await entry.consume(traces((SVC, [S(attrs={"ml.model.version": "v1"}), S(attrs={"ml.model.version": "v2"})])))
    # Shutdown flushed the connector into the metrics pipeline, then the exporter wrote it.
    text = out.read_text()
    assert "traces.span.metrics.calls" in text and '"v2"' in text
    incoming = service.metrics.registry.get_sample_value(
        "flowglass_connector_incoming_items_total", {"component": "spanmetrics", "signal": "traces"})
    outgoing = service.metrics.registry.get_sample_value(
        "flowglass_connector_outgoing_items_total", {"component": "spanmetrics", "signal": "metrics"})
    assert incoming == 2 and outgoing == 4
