#!/usr/bin/env python3
"""Remote write benchmark: OTLP metrics in → `prometheusremotewrite` → a null HTTP sink.

This process runs the exporter on one event loop (uvloop) — parse of each OTLP request,
translation to Prometheus series, sharding, protobuf encoding, snappy, and the HTTP POSTs —
and a second process runs a do-nothing HTTP sink that reads each request and answers 204.
Requests are pre-built `ExportMetricsServiceRequest`s (as the `batch` processor would hand
them over): `--series` series per request, each a counter, a gauge and a 10-bound
histogram, i.e. 15 samples per series, with 3 attributes per data point; `--variants`
different resources so the label cache sees `variants × series × 15` distinct series.

Prints samples/s (wall) and samples per CPU second of this process (the figure to compare
with the one-core target), requests and bytes the sink received.

Run: `flock /tmp/flowglass-bench.lock .venv/bin/python bench/prometheus_remote_write.py [--seconds 10]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import serve_null_http  # noqa: E402

BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
SAMPLES_PER_SERIES = 1 + 1 + len(BOUNDS) + 3  # counter, gauge, buckets + +Inf, _sum, _count


def build_requests(variants: int, series: int) -> list[bytes]:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from agent.testing import key_values

    now = time.time_ns()
    out = []
    for v in range(variants):
        req = ExportMetricsServiceRequest()
        rm = req.resource_metrics.add()
        rm.resource.attributes.extend(key_values({
            "service.name": "model-server", "service.instance.id": f"pod-{v}",
            "service.namespace": "ml", "k8s.node.name": "node-1"}))
        sm = rm.scope_metrics.add()
        sm.scope.name = "bench"
        for i in range(series):
            attrs = key_values({"http.route": f"/v1/models/m{i}:predict", "http.response.status_code": 200,
                                "ml.model.version": f"v{i % 7}"})
            c = sm.metrics.add(name="http.server.requests", unit="{request}")
            c.sum.is_monotonic = True
            c.sum.aggregation_temporality = 2  # type: ignore[assignment]
            dp = c.sum.data_points.add(time_unix_nano=now, as_int=1000 + i)
            dp.attributes.extend(attrs)
            g = sm.metrics.add(name="gpu.utilization", unit="1")
            dp = g.gauge.data_points.add(time_unix_nano=now, as_double=0.5)
            dp.attributes.extend(attrs)
            h = sm.metrics.add(name="http.server.request.duration", unit="s")
            h.histogram.aggregation_temporality = 2  # type: ignore[assignment]
            hp = h.histogram.data_points.add(time_unix_nano=now, count=1100, sum=123.0)
            hp.explicit_bounds.extend(BOUNDS)
            hp.bucket_counts.extend([100] * (len(BOUNDS) + 1))
            hp.attributes.extend(attrs)
        out.append(req.SerializeToString())
    return out


# ---- the null sink (second process) ---------------------------------------------------------

async def _sink_main(port: int) -> None:
    stats = {"requests": 0, "bytes": 0}

    async def report(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"{stats['requests']} {stats['bytes']}\n".encode())
        await writer.drain()
        writer.close()

    server = await serve_null_http(port, b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", stats)
    control = await asyncio.start_server(report, "127.0.0.1", port + 1)
    print("ready", flush=True)
    async with server, control:
        await asyncio.Event().wait()


def sink_stats(port: int) -> tuple[int, int]:
    import socket

    with socket.create_connection(("127.0.0.1", port + 1)) as s:
        requests, nbytes = s.makefile().readline().split()
    return int(requests), int(nbytes)


# ---- the exporter under test ----------------------------------------------------------------

async def run(args: argparse.Namespace, port: int) -> dict[str, float]:
    import msgspec

    from agent.component import Kind, Settings
    from agent.config.types import dec_hook
    from agent.errors import QueueFullError
    from agent.exporters.prometheusremotewrite import PrometheusRemoteWriteExporterConfig
    from agent.exporters.prometheusremotewrite.exporter import PrometheusRemoteWriteExporter
    from agent.model import Batch, Signal

    requests = build_requests(args.variants, args.series)
    config = msgspec.convert({"endpoint": f"http://127.0.0.1:{port}/api/v1/write",
                              "remote_write_queue": {"num_consumers": args.shards, "queue_size": 200}},
                             PrometheusRemoteWriteExporterConfig, dec_hook=dec_hook)
    settings = Settings.for_test("prometheusremotewrite", Kind.EXPORTER)
    exporter = PrometheusRemoteWriteExporter(settings, config)
    await exporter.start()

    async def feed(seconds: float) -> int:
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            batch = Batch.parse(Signal.METRICS, requests[n % len(requests)])
            try:
                await exporter.consume(batch)
            except QueueFullError:
                await asyncio.sleep(0.001)
                continue
            n += 1
        return n

    await feed(1.0)  # warm up: label cache, connections
    sent = settings.metrics.registry.get_sample_value
    labels = {"component": "prometheusremotewrite", "signal": "metrics"}
    before = sent("flowglass_exporter_sent_items_total", labels) or 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await feed(args.seconds)
    await exporter.shutdown()  # drains the queues
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    samples = (sent("flowglass_exporter_sent_items_total", labels) or 0.0) - before
    failed = sum(
        sent("flowglass_exporter_send_failed_items_total", {**labels, "reason": r}) or 0.0
        for r in ("permanent", "partial", "retries_exhausted"))
    return {"samples": samples, "cpu": cpu, "wall": wall, "failed": failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--series", type=int, default=200, help="series per request (15 samples each)")
    parser.add_argument("--variants", type=int, default=8)
    parser.add_argument("--shards", type=int, default=5, help="remote_write_queue.num_consumers")
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        asyncio.run(_sink_main(args.sink))
        return

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = subprocess.Popen([sys.executable, __file__, "--sink", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        try:
            import uvloop

            result = uvloop.run(run(args, port))
        except ImportError:
            result = asyncio.run(run(args, port))
        requests, nbytes = sink_stats(port)
    finally:
        sink.terminate()
        sink.wait(10)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    per_request = args.series * SAMPLES_PER_SERIES
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"load: {per_request} samples per OTLP request ({args.series} series x {SAMPLES_PER_SERIES}), "
          f"{args.variants} resources, {args.shards} shards, {args.seconds:g} s")
    print(f"samples sent:             {result['samples']:,.0f} (failed {result['failed']:,.0f})")
    print(f"samples/s (wall):         {result['samples'] / result['wall']:,.0f}")
    print(f"samples per CPU second:   {result['samples'] / result['cpu']:,.0f}   (target >= 300,000 on one core)")
    print(f"exporter CPU / wall:      {result['cpu'] / result['wall']:.2f}")
    print(f"sink: {requests:,} requests, {nbytes / 1e6:,.1f} MB snappy "
          f"({nbytes / max(1.0, result['samples']):.2f} bytes/sample incl. warm-up)")
    print(f"peak RSS of the exporter process: {rss:,.0f} MiB")


if __name__ == "__main__":
    main()
