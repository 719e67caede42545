"""OTLP metrics → Prometheus series: every metric type, resource labels, delta → cumulative."""

from __future__ import annotations

import math
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

from agent.model.prometheus import TranslationOptions, Translator
from agent.model.prometheus_cumulative import Cumulator, ExpState
from agent.model.prometheus_series import STALE_NAN, MetricType, is_stale
from agent.testing import key_values

T0 = 1_700_000_000_000_000_000  # ns
MS0 = T0 // 1_000_000
DELTA, CUMULATIVE = 1, 2


def request(*metrics: Metric, resource: dict[str, Any] | None = None) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(key_values(
        resource if resource is not None else {"service.name": "model", "service.instance.id": "pod-1"}))
    rm.scope_metrics.add().metrics.extend(metrics)
    return req


def sum_metric(name: str, values: list[float], *, monotonic: bool = True, temporality: int = CUMULATIVE,
               attrs: dict[str, Any] | None = None, unit: str = "", step_ns: int = 10**9) -> Metric:
    m = Metric(name=name, unit=unit, description="how many")
    m.sum.is_monotonic = monotonic
    m.sum.aggregation_temporality = temporality  # type: ignore[assignment]
    for i, v in enumerate(values):
        dp = m.sum.data_points.add(time_unix_nano=T0 + i * step_ns, start_time_unix_nano=T0 - 10**9)
        dp.as_double = v
        dp.attributes.extend(key_values(attrs or {"route": "/predict"}))
    return m


def histogram_metric(name: str, bounds: list[float], counts: list[list[int]], sums: list[float],
                     temporality: int = CUMULATIVE) -> Metric:
    m = Metric(name=name, unit="s")
    m.histogram.aggregation_temporality = temporality  # type: ignore[assignment]
    for i, (c, s) in enumerate(zip(counts, sums, strict=True)):
        dp = m.histogram.data_points.add(time_unix_nano=T0 + i * 10**9, count=sum(c), sum=s)
        dp.explicit_bounds.extend(bounds)
        dp.bucket_counts.extend(c)
    return m


def samples(req: ExportMetricsServiceRequest, translator: Translator | None = None,
            **options: Any) -> dict[tuple[tuple[str, str], ...], list[tuple[float, int]]]:
    tr = (translator or Translator(TranslationOptions(**options))).translate(req, T0)
    out: dict[tuple[tuple[str, str], ...], list[tuple[float, int]]] = {}
    for _, labels, value, ts in tr.samples:
        out.setdefault(labels, []).append((value, ts))
    return out


def by_name(series: dict[tuple[tuple[str, str], ...], Any]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for labels in series:
        d = dict(labels)
        out.setdefault(d["__name__"], []).append(d)
    return out


def test_monotonic_sum_is_a_counter_with_total_and_job_instance() -> None:
    s = samples(request(sum_metric("http.requests", [3, 5])))
    key = (("__name__", "http_requests_total"), ("instance", "pod-1"), ("job", "model"), ("route", "/predict"))
    assert s[key] == [(3.0, MS0), (5.0, MS0 + 1000)]


def test_gauge_and_non_monotonic_sum_are_gauges() -> None:
    g = Metric(name="gpu.utilization", unit="1")
    g.gauge.data_points.add(time_unix_nano=T0, as_double=0.75)
    tr = Translator(TranslationOptions()).translate(
        request(g, sum_metric("queue.size", [4], monotonic=False)), T0)
    got = {dict(labels)["__name__"]: (fam.type, value) for fam, labels, value, _ in tr.samples}
    assert got == {"gpu_utilization_ratio": (MetricType.GAUGE, 0.75), "queue_size": (MetricType.GAUGE, 4.0)}


def test_int_values_are_floats() -> None:
    m = Metric(name="n")
    m.gauge.data_points.add(time_unix_nano=T0, as_int=7)
    assert list(samples(request(m)).values()) == [[(7.0, MS0)]]


def test_explicit_histogram_buckets_are_cumulative_with_inf_sum_and_count() -> None:
    s = samples(request(histogram_metric("latency", [0.1, 0.5, 1.0], [[2, 3, 4, 1]], [4.2])))
    base = {"instance": "pod-1", "job": "model"}
    flat = {tuple(sorted(d.items())): v for d, v in ((dict(k), v) for k, v in s.items())}

    def get(name: str, **extra: str) -> float:
        return flat[tuple(sorted({**base, "__name__": name, **extra}.items()))][0][0]

    assert get("latency_seconds_bucket", le="0.1") == 2
    assert get("latency_seconds_bucket", le="0.5") == 5
    assert get("latency_seconds_bucket", le="1") == 9
    assert get("latency_seconds_bucket", le="+Inf") == 10
    assert get("latency_seconds_sum") == 4.2
    assert get("latency_seconds_count") == 10


def test_summary_quantiles_sum_and_count() -> None:
    m = Metric(name="rpc.latency", unit="ms")
    dp = m.summary.data_points.add(time_unix_nano=T0, count=10, sum=55.0)
    dp.quantile_values.add(quantile=0.5, value=4.0)
    dp.quantile_values.add(quantile=0.99, value=9.5)
    names = by_name(samples(request(m)))
    assert {d["quantile"] for d in names["rpc_latency_milliseconds"]} == {"0.5", "0.99"}
    assert "rpc_latency_milliseconds_sum" in names and "rpc_latency_milliseconds_count" in names


def test_target_info_carries_other_resource_attributes() -> None:
    req = request(sum_metric("c", [1]), resource={
        "service.name": "model", "service.namespace": "ml", "service.instance.id": "pod-1",
        "k8s.pod.name": "pod-1", "host.name": "node-a"})
    names = by_name(samples(req))
    assert names["target_info"] == [{"__name__": "target_info", "job": "ml/model", "instance": "pod-1",
                                     "k8s_pod_name": "pod-1", "host_name": "node-a"}]
    assert names["c_total"][0]["job"] == "ml/model"
    assert "host_name" not in names["c_total"][0]


def test_target_info_can_be_turned_off_and_resource_attributes_copied() -> None:
    req = request(sum_metric("c", [1]), resource={"service.name": "model", "host.name": "node-a"})
    names = by_name(samples(req, target_info=False, resource_to_telemetry_conversion=True))
    assert "target_info" not in names
    assert names["c_total"] == [{"__name__": "c_total", "job": "model", "host_name": "node-a", "route": "/predict"}]


def test_external_labels_do_not_override_and_namespace_prefixes() -> None:
    req = request(sum_metric("c", [1], attrs={"cluster": "from-data"}))
    names = by_name(samples(req, external_labels={"cluster": "eu", "region": "west"}, namespace="ml"))
    assert names["ml_c_total"][0]["cluster"] == "from-data"
    assert names["ml_c_total"][0]["region"] == "west"


def test_colliding_label_names_join_values() -> None:
    req = request(sum_metric("c", [1], attrs={"a.b": "x", "a_b": "y"}))
    assert by_name(samples(req))["c_total"][0]["a_b"] == "x;y"


def test_no_recorded_value_is_a_staleness_marker() -> None:
    m = sum_metric("c", [1])
    m.sum.data_points[0].flags = 1
    (value, _), = next(iter(samples(request(m)).values()))
    assert is_stale(value) and math.isnan(value)
    assert not is_stale(math.nan) and is_stale(STALE_NAN)


def test_delta_sums_become_cumulative() -> None:
    translator = Translator(TranslationOptions())
    s = samples(request(sum_metric("c", [2, 3, 4], temporality=DELTA)), translator)
    assert [v for v, _ in next(iter(s.values()))] == [2.0, 5.0, 9.0]
    # State carries over to the next request; an old point is refused, not counted twice.
    again = request(sum_metric("c", [1], temporality=DELTA, step_ns=0))
    tr = translator.translate(again, T0)
    assert tr.samples == [] and tr.dropped == {"out_of_order": 1}


def test_delta_histograms_become_cumulative() -> None:
    req = request(histogram_metric("lat", [1.0], [[1, 0], [2, 1]], [0.5, 3.0], temporality=DELTA))
    flat = {dict(k)["__name__"] + dict(k).get("le", ""): [v for v, _ in vs] for k, vs in samples(req).items()}
    assert flat["lat_seconds_bucket1"] == [1, 3]
    assert flat["lat_seconds_bucket+Inf"] == [1, 4]
    assert flat["lat_seconds_sum"] == [0.5, 3.5]


def test_cumulator_bounds_streams_and_expires() -> None:
    c = Cumulator(max_streams=2, max_stale_ns=10)
    c.expire(100)
    assert c.add_sum("a", 1, 1) == 1
    assert c.add_sum("b", 1, 1) == 1
    assert c.add_sum("c", 1, 1) is None and c.last_refusal == "max_streams"
    c.expire(105)
    assert c.add_sum("a", 1, 2) == 2
    assert c.expire(112) == 1  # b was last updated at 100
    assert c.add_sum("c", 1, 2) == 1
    assert len(c) == 2


def exp_metric(scale: int, offset: int, counts: list[int], temporality: int = CUMULATIVE, zero: int = 0) -> Metric:
    m = Metric(name="size", unit="By")
    m.exponential_histogram.aggregation_temporality = temporality  # type: ignore[assignment]
    dp = m.exponential_histogram.data_points.add(time_unix_nano=T0, scale=scale, count=sum(counts) + zero,
                                                 sum=10.0, zero_count=zero)
    dp.positive.offset = offset
    dp.positive.bucket_counts.extend(counts)
    return m


def test_exponential_histogram_becomes_a_native_histogram() -> None:
    tr = Translator(TranslationOptions()).translate(request(exp_metric(3, -2, [1, 0, 2, 0, 0, 0, 5], zero=1)), T0)
    assert tr.samples == []
    (_, labels, hist), = tr.histograms
    assert dict(labels)["__name__"] == "size_bytes"
    assert (hist.schema, hist.count, hist.zero_count, hist.sum, hist.timestamp_ms) == (3, 9, 1, 10.0, MS0)
    # OTLP index i is Prometheus index i+1; a short gap is filled with zeros, a long one starts a span.
    assert hist.positive == [(-1, [1, 0, 2]), (5, [5])]


def test_scales_above_eight_are_merged_down() -> None:
    tr = Translator(TranslationOptions()).translate(request(exp_metric(10, 0, [1, 1, 1, 1, 1])), T0)
    hist = tr.histograms[0][2]
    assert hist.schema == 8
    assert sum(sum(c) for _, c in hist.positive) == 5
    assert hist.positive == [(1, [4, 1])]  # OTLP 0..3 → 0, 4 → 1 at scale 8


def test_exp_state_adds_at_the_coarser_scale() -> None:
    a = ExpState(2, positive={0: 1, 1: 1}, count=2)
    b = ExpState(1, positive={0: 3}, count=3)
    total = a.add(b)
    assert total.scale == 1 and total.positive == {0: 5} and total.count == 5


def test_exemplars_go_to_the_counter_and_to_the_bucket_of_their_value() -> None:
    h = histogram_metric("lat", [0.1, 0.5], [[1, 1, 1]], [1.0])
    ex = h.histogram.data_points[0].exemplars.add(as_double=0.3, time_unix_nano=T0,
                                                  trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    ex.filtered_attributes.extend(key_values({"user": "x"}))
    h.histogram.data_points[0].exemplars.add(as_double=7.0, time_unix_nano=T0)
    c = sum_metric("c", [1])
    c.sum.data_points[0].exemplars.add(as_int=1, time_unix_nano=T0 + 5 * 10**6, span_id=b"\x03" * 8)
    tr = Translator(TranslationOptions()).translate(request(h, c), T0)
    got = {(dict(labels)["__name__"], dict(labels).get("le")): ex for labels, ex in tr.exemplars}
    first = got[("lat_seconds_bucket", "0.5")]
    assert first.labels == (("span_id", "02" * 8), ("trace_id", "01" * 16))
    assert (first.value, first.timestamp_ms) == (0.3, MS0)
    assert got[("lat_seconds_bucket", "+Inf")].labels == ()
    assert got[("c_total", None)].labels == (("span_id", "03" * 8),)
    assert got[("c_total", None)].timestamp_ms == MS0 + 5
