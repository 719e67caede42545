"""The remote write exporter against a loopback server double: wire format, retries, rejections, order."""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from agent import __version__
from agent.component import Kind, Settings
from agent.config.types import dec_hook
from agent.errors import QueueFullError
from agent.exporters.prometheusremotewrite import PrometheusRemoteWriteExporterConfig
from agent.exporters.prometheusremotewrite.exporter import PrometheusRemoteWriteExporter, rejection_reason
from agent.model import Batch, Signal
from agent.testing import key_values
from tests.unit.exporters.helpers import FakeClock, metric
from tests.unit.exporters.prometheusremotewrite.helpers import RemoteWriteServer, series_key

T0 = 1_700_000_000_000_000_000


def gauges(series: list[str], t_ns: int, value: float = 1.0) -> Batch:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(key_values({"service.name": "svc"}))
    sm = rm.scope_metrics.add()
    for name in series:
        m = sm.metrics.add(name=name)
        m.gauge.data_points.add(time_unix_nano=t_ns, as_double=value)
    return Batch(Signal.METRICS, req)


def make(url: str, clock: FakeClock | None = None, **options: Any) -> PrometheusRemoteWriteExporter:
    config = msgspec.convert({"endpoint": url, **options}, PrometheusRemoteWriteExporterConfig, dec_hook=dec_hook)
    settings = Settings.for_test("prometheusremotewrite", Kind.EXPORTER)
    return PrometheusRemoteWriteExporter(settings, config, clock=clock or FakeClock())


async def test_wire_format_headers_and_content() -> None:
    async with RemoteWriteServer() as server:
        exporter = make(server.url, bearer_token="s3cret", headers={"X-Scope-OrgID": "team"})
        await exporter.start()
        await exporter.consume(gauges(["a", "b"], T0, 2.5))
        await exporter.shutdown()
    headers = server.headers[0]
    assert headers["Content-Encoding"] == "snappy"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert headers["User-Agent"] == f"flowglass/{__version__}"
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["X-Scope-OrgID"] == "team"
    assert server.accepted_samples() == {"a{job=svc}": [(T0 // 10**6, 2.5)], "b{job=svc}": [(T0 // 10**6, 2.5)]}
    assert metric(exporter._settings, "flowglass_exporter_sent_items_total", signal="metrics") == 2


async def test_basic_auth() -> None:
    async with RemoteWriteServer() as server:
        exporter = make(server.url, basic_auth={"username": "u", "password": "p"})
        await exporter.start()
        await exporter.consume(gauges(["a"], T0))
        await exporter.shutdown()
    assert server.headers[0]["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()


async def test_503_is_retried_after_retry_after() -> None:
    answers = [(503, "busy", {"Retry-After": "7"}), (429, "slow down", {})]

    def respond(_: object) -> tuple[int, str, dict[str, str]] | None:
        return answers.pop(0) if answers else None

    clock = FakeClock()
    async with RemoteWriteServer(respond) as server:
        exporter = make(server.url, clock, remote_write_queue={"num_consumers": 1})
        await exporter.start()
        await exporter.consume(gauges(["a"], T0))
        await exporter.shutdown()
    assert len(server.requests) == 3 and len(server.accepted) == 1
    assert clock.sleeps[0] == 7
    assert metric(exporter._settings, "flowglass_exporter_retries_total", signal="metrics") == 2


async def test_400_isolates_the_rejected_series_and_delivers_the_rest() -> None:
    def respond(req: Any) -> tuple[int, str, dict[str, str]] | None:
        if any(series_key(ts).startswith("bad{") for ts in req.timeseries):
            return 400, "out of order sample", {}
        return None

    async with RemoteWriteServer(respond) as server:
        exporter = make(server.url, remote_write_queue={"num_consumers": 1})
        await exporter.start()
        names = [f"good{i}" for i in range(20)] + ["bad"]
        await exporter.consume(gauges(names, T0))
        await exporter.shutdown()
    delivered = server.accepted_samples()
    assert set(delivered) == {f"good{i}{{job=svc}}" for i in range(20)}
    s = exporter._settings
    assert metric(s, "flowglass_exporter_prometheus_rejected_samples_total", reason="out_of_order") == 1
    assert metric(s, "flowglass_exporter_send_failed_items_total", signal="metrics", reason="partial") == 1
    assert metric(s, "flowglass_exporter_sent_items_total", signal="metrics") == 20
    assert len(server.requests) < 2 * 5 * 2  # bisection, not one request per series


async def test_a_request_rejected_whole_is_not_retried() -> None:
    async with RemoteWriteServer(lambda req: (400, "out of bounds", {})) as server:
        exporter = make(server.url, remote_write_queue={"num_consumers": 1})
        await exporter.start()
        await exporter.consume(gauges(["a"], T0))
        await exporter.shutdown()
    assert len(server.requests) == 1
    assert metric(exporter._settings, "flowglass_exporter_prometheus_rejected_samples_total",
                  reason="out_of_bounds") == 1
    assert metric(exporter._settings, "flowglass_exporter_send_failed_items_total",
                  signal="metrics", reason="permanent") == 1


async def test_samples_of_each_series_arrive_in_order_across_shards() -> None:
    async with RemoteWriteServer() as server:
        exporter = make(server.url, remote_write_queue={"num_consumers": 4})
        await exporter.start()
        names = [f"s{i}" for i in range(16)]
        for step in range(30):
            await exporter.consume(gauges(names, T0 + step * 10**9, float(step)))
        await exporter.shutdown()
    delivered = server.accepted_samples()
    assert len(delivered) == 16
    for points in delivered.values():
        assert [v for _, v in points] == [float(i) for i in range(30)]


async def test_requests_are_cut_at_max_batch_size_bytes() -> None:
    async with RemoteWriteServer() as server:
        exporter = make(server.url, max_batch_size_bytes=400, remote_write_queue={"num_consumers": 1})
        await exporter.start()
        await exporter.consume(gauges([f"metric_{i}" for i in range(50)], T0))
        await exporter.shutdown()
    assert len(server.requests) > 3
    assert sum(len(r.timeseries) for r in server.accepted) == 50


async def test_full_queue_refuses_before_touching_delta_state() -> None:
    exporter = make("http://127.0.0.1:9/api/v1/write",
                    remote_write_queue={"queue_size": 1, "num_consumers": 1})
    # Not started: nothing drains the queue.
    await exporter.consume(gauges(["a"], T0))
    with pytest.raises(QueueFullError):
        await exporter.consume(gauges(["a"], T0 + 10**9))
    assert metric(exporter._settings, "flowglass_exporter_enqueue_failed_items_total", signal="metrics") == 1
    await exporter.shutdown()


def test_rejection_reasons_are_bounded() -> None:
    assert rejection_reason(400, "out of order sample") == "out_of_order"
    assert rejection_reason(400, "out of bounds") == "out_of_bounds"
    assert rejection_reason(400, "duplicate sample for timestamp") == "duplicate"
    assert rejection_reason(400, "too old sample") == "too_old"
    assert rejection_reason(413, "anything else at all") == "http_413"


async def test_send_metadata_describes_each_family_once() -> None:
    batch = gauges(["a", "b"], T0)
    batch.mutable().resource_metrics[0].scope_metrics[0].metrics[0].description = "the a gauge"
    async with RemoteWriteServer() as server:
        exporter = make(server.url, send_metadata=True, remote_write_queue={"num_consumers": 3})
        await exporter.start()
        await exporter.consume(batch)
        await exporter.shutdown()
    metadata = [m for req in server.accepted for m in req.metadata]
    assert sorted((m.metric_family_name, m.type, m.help) for m in metadata) == [("a", 2, "the a gauge"), ("b", 2, "")]
    assert sum(len(r.timeseries) for r in server.accepted) == 2


async def test_without_send_metadata_there_is_none() -> None:
    async with RemoteWriteServer() as server:
        exporter = make(server.url)
        await exporter.start()
        await exporter.consume(gauges(["a"], T0))
        await exporter.shutdown()
    assert all(not r.metadata for r in server.accepted)


async def test_the_batch_is_not_changed() -> None:
    batch = gauges(["a", "b"], T0)
    before = batch.message.SerializeToString()
    async with RemoteWriteServer() as server:
        exporter = make(server.url)
        assert exporter.mutates_data is False
        await exporter.start()
        await exporter.consume(batch)
        await exporter.shutdown()
    assert batch.message.SerializeToString() == before


async def test_traces_are_refused_permanently() -> None:
    from agent.errors import PermanentError
    from agent.testing import make_traces

    exporter = make("http://127.0.0.1:9/api/v1/write")
    with pytest.raises(PermanentError):
        await exporter.consume(make_traces(2))
    await exporter.shutdown()


async def test_https_with_a_private_ca() -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    async with RemoteWriteServer(ssl_context=server_ctx) as server:
        trusted = make(server.url, tls={"ca_pem": ca.cert_pem.bytes().decode()})
        await trusted.start()
        await trusted.consume(gauges(["a"], T0))
        await trusted.shutdown()
        assert len(server.accepted) == 1
        untrusted = make(server.url, remote_write_queue={"enabled": False}, retry_on_failure={"enabled": False})
        await untrusted.start()
        await untrusted.consume(gauges(["a"], T0))
        await untrusted.shutdown()
        assert len(server.accepted) == 1
        assert metric(untrusted._settings, "flowglass_exporter_send_failed_items_total",
                      signal="metrics", reason="retry_disabled") == 1


async def test_requests_waiting_for_a_busy_shard_go_out_merged_and_in_order() -> None:
    import asyncio

    async with RemoteWriteServer(gate=asyncio.Event()) as server:
        assert server.gate is not None
        exporter = make(server.url, remote_write_queue={"num_consumers": 1})
        await exporter.start()
        await exporter.consume(gauges(["a", "b"], T0, 0.0))
        await asyncio.wait_for(server.arrived.wait(), 10)  # the first request is in flight and held
        for step in range(1, 20):
            await exporter.consume(gauges(["a", "b"], T0 + step * 10**9, float(step)))
        server.gate.set()
        await exporter.shutdown()
    assert len(server.requests) == 2
    delivered = server.accepted_samples()
    assert [v for _, v in delivered["a{job=svc}"]] == [float(i) for i in range(20)]
    assert metric(exporter._settings, "flowglass_exporter_sent_items_total", signal="metrics") == 40


async def test_merged_requests_respect_max_batch_size_bytes() -> None:
    import asyncio

    async with RemoteWriteServer(gate=asyncio.Event()) as server:
        assert server.gate is not None
        exporter = make(server.url, max_batch_size_bytes=300, remote_write_queue={"num_consumers": 1})
        await exporter.start()
        await exporter.consume(gauges(["a", "b"], T0, 0.0))
        await asyncio.wait_for(server.arrived.wait(), 10)
        for step in range(1, 20):
            await exporter.consume(gauges(["a", "b"], T0 + step * 10**9, float(step)))
        server.gate.set()
        await exporter.shutdown()
    assert 2 < len(server.requests) < 20
    assert all(len(r.SerializeToString()) <= 300 for r in server.requests)
    assert [v for _, v in server.accepted_samples()["b{job=svc}"]] == [float(i) for i in range(20)]
