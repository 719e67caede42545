"""The `prometheus` pull exporter: config, rendering (text and OpenMetrics), expiry, HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from agent.component import Kind, Settings
from agent.config.types import dec_hook
from agent.exporters.prometheus import PrometheusExporter, PrometheusExporterConfig, classic_buckets
from agent.model import Batch, Signal
from agent.model.prometheus_series import NativeHistogram
from agent.testing import key_values

T0 = 1_700_000_000_000_000_000


def config(**options: Any) -> PrometheusExporterConfig:
    return msgspec.convert({"endpoint": "127.0.0.1:0", **options}, PrometheusExporterConfig, dec_hook=dec_hook)


def make(**options: Any) -> PrometheusExporter:
    return PrometheusExporter(Settings.for_test("prometheus", Kind.EXPORTER), config(**options))


def batch(counter: float = 3.0, *, flags: int = 0, delta: bool = False, t: int = T0) -> Batch:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(key_values({"service.name": "svc", "service.instance.id": "i-1",
                                              "host.name": "node"}))
    sm = rm.scope_metrics.add()
    m = sm.metrics.add(name="requests", description="Requests served.\nPer route.")
    m.sum.is_monotonic = True
    m.sum.aggregation_temporality = 1 if delta else 2  # type: ignore[assignment]
    dp = m.sum.data_points.add(time_unix_nano=t, as_double=counter, flags=flags)
    dp.attributes.extend(key_values({"route": 'a"b\\c'}))
    h = sm.metrics.add(name="latency", unit="s")
    h.histogram.aggregation_temporality = 2  # type: ignore[assignment]
    hp = h.histogram.data_points.add(time_unix_nano=t, count=3, sum=1.5)
    hp.explicit_bounds.extend([0.1, 1.0])
    hp.bucket_counts.extend([1, 1, 1])
    return Batch(Signal.METRICS, req)


def test_config_defaults_and_errors() -> None:
    c = config()
    assert c.metric_expiration == 300 and not c.enable_open_metrics and not c.send_timestamps
    with pytest.raises(ValueError, match="endpoint is required"):
        msgspec.convert({}, PrometheusExporterConfig)
    with pytest.raises(ValueError, match="host:port"):
        config(endpoint="nowhere")
    with pytest.raises(ValueError, match="greater than 0"):
        config(metric_expiration="0s")
    with pytest.raises(ValueError, match="usable label name"):
        config(const_labels={"__x": "y"})


async def test_text_format() -> None:
    exporter = make(namespace="ml", const_labels={"cluster": "eu"})
    await exporter.consume(batch())
    text = exporter.render().decode()
    assert "# HELP ml_requests_total Requests served.\\nPer route.\n# TYPE ml_requests_total counter\n" in text
    assert 'ml_requests_total{cluster="eu",instance="i-1",job="svc",route="a\\"b\\\\c"} 3\n' in text
    assert "# TYPE ml_latency_seconds histogram" in text
    assert 'ml_latency_seconds_bucket{cluster="eu",instance="i-1",job="svc",le="0.1"} 1' in text
    assert 'ml_latency_seconds_bucket{cluster="eu",instance="i-1",job="svc",le="+Inf"} 3' in text
    assert 'ml_latency_seconds_count{cluster="eu",instance="i-1",job="svc"} 3' in text
    assert 'ml_target_info{cluster="eu",host_name="node",instance="i-1",job="svc"} 1' in text
    assert "# EOF" not in text


async def test_openmetrics_format_and_timestamps() -> None:
    exporter = make(enable_open_metrics=True, send_timestamps=True)
    await exporter.consume(batch())
    text = exporter.render(open_metrics=True).decode()
    assert "# TYPE requests counter\n" in text
    assert f'requests_total{{instance="i-1",job="svc",route="a\\"b\\\\c"}} 3 {T0 // 10**6 / 1000:.3f}' in text
    assert "# TYPE target info" in text
    assert text.endswith("# EOF\n")


async def test_latest_value_wins_and_deltas_add_up() -> None:
    exporter = make()
    await exporter.consume(batch(3.0))
    await exporter.consume(batch(7.0, t=T0 + 10**9))
    assert 'requests_total{instance="i-1",job="svc",route="a\\"b\\\\c"} 7\n' in exporter.render().decode()
    deltas = make()
    await deltas.consume(batch(2.0, delta=True))
    await deltas.consume(batch(5.0, delta=True, t=T0 + 10**9))
    assert '} 7\n' in deltas.render().decode()


async def test_staleness_marker_removes_the_series_and_expiry_forgets() -> None:
    exporter = make(metric_expiration="1m")
    await exporter.consume(batch())
    await exporter.consume(batch(flags=1, t=T0 + 10**9))
    assert "requests_total{" not in exporter.render().decode()
    assert "latency_seconds_count" in exporter.render().decode()
    import time
    assert exporter.expire(time.monotonic() + 61) > 0
    assert exporter.render() == b""


def test_native_histograms_become_classic_buckets() -> None:
    hist = NativeHistogram(schema=0, zero_threshold=0.0, zero_count=1, count=6, sum=9.0,
                           positive=[(1, [2, 3])], negative=[], timestamp_ms=0)
    assert classic_buckets(hist) == [(0.0, 1), (2.0, 3), (4.0, 6), (float("inf"), 6)]


async def _get(port: int, path: str, accept: str = "") -> tuple[str, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = f"Accept: {accept}\r\n" if accept else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return head, body


async def test_http_serving() -> None:
    exporter = make(enable_open_metrics=True)
    await exporter.start()
    try:
        await exporter.consume(batch())
        assert exporter.port is not None
        head, body = await _get(exporter.port, "/metrics")
        assert head.startswith("HTTP/1.1 200") and "text/plain; version=0.0.4" in head
        assert "requests_total{" in body
        head, body = await _get(exporter.port, "/metrics", "application/openmetrics-text;version=1.0.0")
        assert "application/openmetrics-text" in head and body.endswith("# EOF\n")
        head, _ = await _get(exporter.port, "/other")
        assert head.startswith("HTTP/1.1 404")
    finally:
        await exporter.shutdown()
        await exporter.shutdown()


async def test_the_batch_is_not_changed() -> None:
    exporter = make()
    b = batch()
    before = b.message.SerializeToString()
    await exporter.consume(b)
    assert exporter.mutates_data is False
    assert b.message.SerializeToString() == before


def test_upstream_options_are_named_as_not_supported() -> None:
    from agent.components import default_registry
    from agent.config import load_text
    from agent.errors import ConfigError

    yaml = """
receivers: {otlp: {protocols: {http: {endpoint: 127.0.0.1:0}}}}
exporters:
  prometheus:
    endpoint: 127.0.0.1:0
    tls: {cert_file: x.pem}
service: {pipelines: {metrics: {receivers: [otlp], exporters: [prometheus]}}}
"""
    with pytest.raises(ConfigError, match="not supported by Flowglass"):
        load_text(yaml, registry=default_registry(), environ={})
