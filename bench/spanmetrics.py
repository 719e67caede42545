#!/usr/bin/env python3
"""spanmetrics benchmark: spans/s aggregated by the connector on one core.

Pre-built OTLP trace requests (512 spans each, 3 services, 8 span names, 2 model versions,
1 in 20 spans an error, realistic resource and span attributes) are fed to a
`SpanMetricsConnector` in this process, through `consume()`, with a flush into a null
consumer every `--flush-every` requests. Three configurations: the defaults (explicit
buckets), the ML example (two extra dimensions: `ml.model.name`, `ml.model.version`), and
exponential buckets with exemplars. Each figure is measured twice: from parsed messages
(aggregation alone) and from serialized bytes (parse + aggregation, what the agent does
per received request).

Run under the shared benchmark lock:
`flock /tmp/flowglass-bench.lock .venv/bin/python bench/spanmetrics.py [--seconds 5]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from agent.component import Kind, Settings  # noqa: E402
from agent.config.types import dec_hook  # noqa: E402
from agent.connectors.spanmetrics import SpanMetricsConfig  # noqa: E402
from agent.connectors.spanmetrics.connector import SpanMetricsConnector  # noqa: E402
from agent.model import Batch, Signal  # noqa: E402
from agent.testing import make_traces  # noqa: E402

SPANS_PER_REQUEST = 512

CONFIGS: dict[str, dict[str, object]] = {
    "defaults": {},
    "ml dimensions": {
        "dimensions": [{"name": "ml.model.name"}, {"name": "ml.model.version", "default": "unknown"}],
    },
    "exponential + exemplars": {
        "histogram": {"exponential": {"max_size": 160}},
        "exemplars": {"enabled": True},
    },
}


def build_requests(variants: int = 24) -> list[bytes]:
    out = []
    for i in range(variants):
        batch = make_traces(
            SPANS_PER_REQUEST,
            traces=64,
            seed=i,
            service=f"model-server-{i % 3}",
            name=f"predict-{i % 8}",
            error_every=20,
            span_attrs={"ml.model.version": f"v{i % 2 + 1}"},
            resource_attrs={"k8s.pod.name": f"pod-{i % 3}", "cloud.region": "eu-west-1"},
        )
        out.append(batch.serialize())
    return out


class NullConsumer:
    mutates_data = False

    def __init__(self) -> None:
        self.points = 0
        self.last: Batch | None = None

    async def consume(self, batch: Batch) -> None:
        self.points += batch.items
        self.last = batch

    def calls(self) -> int:
        """Total of the `calls` counters in the last (cumulative) emission."""
        assert self.last is not None
        total = 0
        for rm in self.last.message.resource_metrics:  # type: ignore[union-attr]
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name.endswith("calls"):
                        total += sum(dp.as_int for dp in m.sum.data_points)
        return total


async def run(name: str, options: dict[str, object], requests: list[bytes], seconds: float,
              flush_every: int, from_bytes: bool) -> float:
    config = msgspec.convert(options, SpanMetricsConfig, dec_hook=dec_hook)
    sink = NullConsumer()
    connector = SpanMetricsConnector(Settings.for_test("spanmetrics", Kind.CONNECTOR), config, sink)
    await connector.start()
    batches = [Batch.parse(Signal.TRACES, r) for r in requests]
    spans = 0
    n = 0
    cpu0 = time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for i in range(len(requests)):
            batch = Batch.parse(Signal.TRACES, requests[i]) if from_bytes else batches[i]
            await connector.consume(batch)
            spans += SPANS_PER_REQUEST
            n += 1
            if n % flush_every == 0:
                await connector.flush()
    cpu = time.process_time() - cpu0
    await connector.shutdown()
    # Every span was counted once (the emissions are cumulative).
    assert sink.calls() == spans, (name, sink.calls(), spans)
    return spans / cpu


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--flush-every", type=int, default=200, help="requests between flushes")
    args = parser.parse_args()
    requests = build_requests()
    print(f"# spanmetrics — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; {SPANS_PER_REQUEST}-span requests, "
          f"flush every {args.flush_every} requests; spans/s per CPU second of this process")
    print("| configuration | from parsed messages | from bytes (parse + aggregate) | target |")
    print("| --- | --- | --- | --- |")
    for name, options in CONFIGS.items():
        parsed = await run(name, options, requests, args.seconds, args.flush_every, from_bytes=False)
        raw = await run(name, options, requests, args.seconds, args.flush_every, from_bytes=True)
        print(f"| {name} | {parsed:,.0f} | {raw:,.0f} | >= 100,000 |")


if __name__ == "__main__":
    asyncio.run(main())
