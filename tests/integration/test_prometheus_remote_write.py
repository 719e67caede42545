"""OTLP in → agent (a process) → prometheusremotewrite → real Prometheus 2.42 and VictoriaMetrics.

Every metric type is queryable afterwards with exactly the values sent; out-of-order and
out-of-bounds answers are counted and dropped while the rest keeps flowing; with
Prometheus down, data waits in the queue and arrives once it is up.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

from agent.testing import AgentProcess, free_port, key_values
from tests.conftest import require_tool
from tests.integration.helpers import wait_until
from tests.integration.prometheus_peer import Peer, Prometheus, VictoriaMetrics

pytestmark = pytest.mark.timeout(180)

AGENT = """
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{port}"}}
exporters:
  prometheusremotewrite:
    endpoint: {url}
    external_labels: {{source: flowglass}}
    remote_write_queue: {{num_consumers: 2}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 90s}}
service:
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    metrics: {{receivers: [otlp], exporters: [prometheusremotewrite]}}
"""


@pytest.fixture(scope="module")
def prometheus() -> Iterator[Prometheus]:
    binary = require_tool("prometheus")
    with Prometheus(binary, extra_args=["--enable-feature=native-histograms,exemplar-storage"]) as peer:
        yield peer  # type: ignore[misc]


@pytest.fixture(scope="module")
def victoria() -> Iterator[VictoriaMetrics]:
    binary = require_tool("victoria-metrics")
    with VictoriaMetrics(binary) as peer:
        yield peer  # type: ignore[misc]


class Agent:
    def __init__(self, url: str) -> None:
        self.port = free_port()
        tele = free_port()
        self.process = AgentProcess(AGENT.format(port=self.port, url=url, telemetry=tele), telemetry_port=tele)

    def __enter__(self) -> Agent:
        self.process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            assert self.process.stop() == 0, self.process.output()
        finally:
            self.process.close()

    def send(self, req: ExportMetricsServiceRequest) -> None:
        http = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/metrics", data=req.SerializeToString(),
                                      headers={"Content-Type": "application/x-protobuf"})
        with urllib.request.urlopen(http, timeout=10) as resp:
            assert resp.status == 200


def metrics_request(run: str, t_ns: int, metrics: list[Metric], **resource: str) -> ExportMetricsServiceRequest:
    """Data points of `metrics` at `t_ns`, labelled `run`; with extra `resource` attributes, a target_info."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(key_values({"service.name": "model", "service.instance.id": "pod-1",
                                              **resource}))
    sm = rm.scope_metrics.add()
    sm.metrics.extend(metrics)
    for m in sm.metrics:
        kind = m.WhichOneof("data")
        for dp in getattr(m, kind).data_points:
            dp.time_unix_nano = t_ns
            dp.attributes.extend(key_values({"run": run}))
    return req


def every_type() -> list[Metric]:
    counter = Metric(name="it.requests", unit="{request}")
    counter.sum.is_monotonic = True
    counter.sum.aggregation_temporality = 2  # type: ignore[assignment]
    counter.sum.data_points.add(as_int=42)
    gauge = Metric(name="it.gpu.utilization", unit="1")
    gauge.gauge.data_points.add(as_double=0.625)
    hist = Metric(name="it.latency", unit="s")
    hist.histogram.aggregation_temporality = 2  # type: ignore[assignment]
    hp = hist.histogram.data_points.add(count=10, sum=3.25)
    hp.explicit_bounds.extend([0.1, 0.5, 1.0])
    hp.bucket_counts.extend([4, 3, 2, 1])
    summary = Metric(name="it.rpc", unit="ms")
    sp = summary.summary.data_points.add(count=7, sum=70.5)
    sp.quantile_values.add(quantile=0.5, value=9.0)
    sp.quantile_values.add(quantile=0.99, value=20.0)
    native = Metric(name="it.payload", unit="By")
    native.exponential_histogram.aggregation_temporality = 2  # type: ignore[assignment]
    ep = native.exponential_histogram.data_points.add(scale=0, count=6, sum=20.0, zero_count=1)
    ep.positive.offset = 1  # buckets (2,4] and (4,8]
    ep.positive.bucket_counts.extend([2, 3])
    return [counter, gauge, hist, summary, native]


def wait_value(peer: Peer, expr: str, at: float, want: float | None = None, timeout: float = 30.0) -> float:
    got: list[float | None] = [None]

    def check() -> bool:
        if isinstance(peer, VictoriaMetrics):
            peer.flush()
        got[0] = peer.value(expr, at)
        return got[0] is not None and (want is None or got[0] == want)

    try:
        wait_until(check, timeout, what=f"{expr} == {want} in {peer.name}")
    except AssertionError:
        raise AssertionError(f"{expr}: got {got[0]}, want {want}\n{peer.output()}") from None
    assert got[0] is not None
    return got[0]


@pytest.mark.peer("prometheus")
@pytest.mark.parametrize("server", ["prometheus", "victoria"])
def test_every_type_arrives_with_the_values_sent(server: str, request: Any) -> None:
    peer: Peer = request.getfixturevalue(server)
    run = uuid.uuid4().hex[:8]
    now_ns = time.time_ns()
    at = now_ns / 1e9 + 0.5
    with Agent(peer.write_url) as agent:
        agent.send(metrics_request(run, now_ns, every_type(), **{"host.name": "node-a"}))
        sel = f'run="{run}",job="model",instance="pod-1",source="flowglass"'
        assert wait_value(peer, f"it_requests_total{{{sel}}}", at, 42) == 42
        assert wait_value(peer, f"it_gpu_utilization_ratio{{{sel}}}", at) == 0.625
        for le, want in (("0.1", 4), ("0.5", 7), ("1", 9), ("+Inf", 10)):
            assert wait_value(peer, f'it_latency_seconds_bucket{{{sel},le="{le}"}}', at) == want
        assert wait_value(peer, f"it_latency_seconds_sum{{{sel}}}", at) == 3.25
        assert wait_value(peer, f"it_latency_seconds_count{{{sel}}}", at) == 10
        assert wait_value(peer, f'it_rpc_milliseconds{{{sel},quantile="0.99"}}', at) == 20
        assert wait_value(peer, f'it_rpc_milliseconds{{{sel},quantile="0.5"}}', at) == 9
        assert wait_value(peer, f"it_rpc_milliseconds_sum{{{sel}}}", at) == 70.5
        assert wait_value(peer, f"it_rpc_milliseconds_count{{{sel}}}", at) == 7
        assert wait_value(peer, 'target_info{job="model",instance="pod-1",host_name="node-a"}', at) == 1
        if server == "prometheus":  # VictoriaMetrics 1.x ignores native histograms in remote write
            assert wait_value(peer, f"histogram_count(it_payload_bytes{{{sel}}})", at) == 6
            assert wait_value(peer, f"histogram_sum(it_payload_bytes{{{sel}}})", at) == 20
            # 2 of the 6 observations are in (2,4], 1 in the zero bucket: 3 are <= 4.
            assert wait_value(peer, f"histogram_fraction(0, 4, it_payload_bytes{{{sel}}})", at) == 0.5


@pytest.mark.peer("prometheus")
def test_out_of_order_and_out_of_bounds_are_counted_and_the_rest_flows(prometheus: Prometheus) -> None:
    run = uuid.uuid4().hex[:8]
    now_ns = time.time_ns()
    at = now_ns / 1e9 + 0.5

    def gauge(name: str, value: float, t_ns: int) -> ExportMetricsServiceRequest:
        m = Metric(name=name)
        m.gauge.data_points.add(as_double=value)
        return metrics_request(run, t_ns, [m])

    with Agent(prometheus.write_url) as agent:
        agent.send(gauge("it.order", 1, now_ns))
        assert wait_value(prometheus, f'it_order{{run="{run}"}}', at) == 1
        # One request: an older sample of it.order, a sample from three hours ago, a good one.
        req = gauge("it.order", 99, now_ns - 10**9)
        req.MergeFrom(gauge("it.ancient", 5, now_ns - 3 * 3600 * 10**9))
        req.MergeFrom(gauge("it.fresh", 7, now_ns))
        agent.send(req)
        assert wait_value(prometheus, f'it_fresh{{run="{run}"}}', at) == 7
        wait_until(lambda: agent.process.metric("flowglass_exporter_prometheus_rejected_samples_total") >= 2,
                   30, "rejections to be counted")
        m = agent.process.metric
        assert m("flowglass_exporter_prometheus_rejected_samples_total", reason="out_of_order") == 1
        assert m("flowglass_exporter_prometheus_rejected_samples_total", reason="out_of_bounds") == 1
        assert prometheus.value(f'it_order{{run="{run}"}}', at) == 1
        # Later data of the same series keeps flowing.
        agent.send(gauge("it.order", 3, now_ns + 10**9))
        assert wait_value(prometheus, f'it_order{{run="{run}"}}', at + 1, 3) == 3


@pytest.mark.peer("prometheus")
def test_prometheus_down_then_up_everything_arrives() -> None:
    binary = require_tool("prometheus")
    peer = Prometheus(binary)
    try:
        run = uuid.uuid4().hex[:8]
        now_ns = time.time_ns()
        with Agent(peer.write_url) as agent:
            for i in range(5):
                m = Metric(name="it.backlog")
                m.sum.is_monotonic = True
                m.sum.aggregation_temporality = 2  # type: ignore[assignment]
                m.sum.data_points.add(as_int=i + 1)
                agent.send(metrics_request(run, now_ns + i * 10**9, [m]))
            wait_until(lambda: agent.process.metric("flowglass_exporter_retries_total") >= 1, 30, "a retry")
            peer.start()
            at = now_ns / 1e9 + 5
            assert wait_value(peer, f'it_backlog_total{{run="{run}"}}', at, 5, timeout=60) == 5
            assert wait_value(peer, f'count_over_time(it_backlog_total{{run="{run}"}}[1m])', at) == 5
    finally:
        peer.close()


@pytest.mark.peer("prometheus")
def test_exemplars_link_buckets_to_traces(prometheus: Prometheus) -> None:
    run = uuid.uuid4().hex[:8]
    now_ns = time.time_ns()
    hist = Metric(name="it.exemplar.latency", unit="s")
    hist.histogram.aggregation_temporality = 2  # type: ignore[assignment]
    hp = hist.histogram.data_points.add(count=2, sum=0.9)
    hp.explicit_bounds.extend([0.1, 1.0])
    hp.bucket_counts.extend([1, 1, 0])
    hp.exemplars.add(as_double=0.8, time_unix_nano=now_ns, trace_id=bytes(range(16)), span_id=bytes(range(8)))
    with Agent(prometheus.write_url) as agent:
        agent.send(metrics_request(run, now_ns, [hist]))
        expr = f'it_exemplar_latency_seconds_bucket{{run="{run}"}}'
        wait_value(prometheus, f'{expr[:-1]},le="1"}}', now_ns / 1e9 + 0.5)
        start, end = f"{now_ns / 1e9 - 60:.3f}", f"{now_ns / 1e9 + 60:.3f}"
        found: list[Any] = []

        def has_exemplar() -> bool:
            found[:] = prometheus.api("/api/v1/query_exemplars", query=expr, start=start, end=end)
            return bool(found)

        wait_until(has_exemplar, 30, "the exemplar")
    ((series),) = found
    assert series["seriesLabels"]["le"] == "1"
    ((ex),) = series["exemplars"]
    assert ex["labels"] == {"trace_id": bytes(range(16)).hex(), "span_id": bytes(range(8)).hex()}
    assert float(ex["value"]) == 0.8


@pytest.mark.peer("prometheus")
@pytest.mark.parametrize("server", ["prometheus", "victoria"])
def test_delta_counters_and_histograms_arrive_cumulative(server: str, request: Any) -> None:
    """The Collector drops delta points; Flowglass adds them up per series."""
    peer: Peer = request.getfixturevalue(server)
    run = uuid.uuid4().hex[:8]
    now_ns = time.time_ns()
    with Agent(peer.write_url) as agent:
        for i, (delta, buckets) in enumerate([(3, [1, 2]), (4, [0, 4]), (5, [5, 0])]):
            counter = Metric(name="it.delta.requests")
            counter.sum.is_monotonic = True
            counter.sum.aggregation_temporality = 1  # type: ignore[assignment]
            counter.sum.data_points.add(as_int=delta)
            hist = Metric(name="it.delta.latency", unit="s")
            hist.histogram.aggregation_temporality = 1  # type: ignore[assignment]
            hp = hist.histogram.data_points.add(count=sum(buckets), sum=float(delta))
            hp.explicit_bounds.append(0.5)
            hp.bucket_counts.extend(buckets)
            agent.send(metrics_request(run, now_ns + i * 10**9, [counter, hist]))
        at = now_ns / 1e9 + 2.5
        assert wait_value(peer, f'it_delta_requests_total{{run="{run}"}}', at, 12) == 12
        assert wait_value(peer, f'it_delta_latency_seconds_bucket{{run="{run}",le="0.5"}}', at, 6) == 6
        assert wait_value(peer, f'it_delta_latency_seconds_count{{run="{run}"}}', at, 12) == 12
        assert wait_value(peer, f'it_delta_latency_seconds_sum{{run="{run}"}}', at, 12) == 12
        # Every intermediate total (3, 7, 12) is stored.
        assert wait_value(peer, f'count_over_time(it_delta_requests_total{{run="{run}"}}[1m])', at, 3) == 3
        assert wait_value(peer, f'min_over_time(it_delta_requests_total{{run="{run}"}}[1m])', at, 3) == 3
