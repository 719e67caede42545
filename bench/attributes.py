#!/usr/bin/env python3
"""`attributes` processor benchmark: spans/s with 5 actions on spans with 10 attributes.

Pre-built OTLP trace requests (512 spans each, 10 span attributes) are parsed before the
clock starts; the timed part feeds them straight into an `attributes` processor whose next
consumer does nothing, one after another on one event loop (one core). The processor
changes batches in place, so every round works on freshly parsed batches.

The five actions: upsert a constant, insert from the request metadata (with a default),
hash one attribute (SHA-256), delete one, convert one to a string.

Prints spans/s (wall and per CPU second of this process) and CPU µs per span; `--record`
appends them to bench/RESULTS.md. Run under the shared lock:
`flock /tmp/flowglass-bench.lock .venv/bin/python bench/attributes.py [--seconds 10]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from agent.component import Kind, Settings  # noqa: E402
from agent.config.types import dec_hook  # noqa: E402
from agent.model import Batch, ClientInfo, Signal  # noqa: E402
from agent.processors.attributes import FACTORY, AttributesConfig  # noqa: E402
from agent.testing import make_traces  # noqa: E402

SPANS_PER_REQUEST = 512
TARGET = 150_000

ACTIONS = [
    {"key": "ml.model.version", "value": "v3", "action": "upsert"},
    {"key": "tenant", "from_context": "metadata.x-tenant", "default_value": "unknown", "action": "insert"},
    {"key": "user.id", "action": "hash"},
    {"key": "http.request.header.authorization", "action": "delete"},
    {"key": "http.response.status_code", "action": "convert", "converted_type": "string"},
]


class Discard:
    mutates_data = False

    async def consume(self, batch: Batch) -> None:
        return None


def build_requests(variants: int = 4) -> list[bytes]:
    out = []
    for i in range(variants):
        batch = make_traces(
            SPANS_PER_REQUEST,
            traces=64,
            seed=i,
            span_attrs={
                "user.id": f"user-{i}",
                "http.request.header.authorization": "Bearer abc.def",
                "session.id": f"s-{i}",
                "feature.flag": True,
            },
        )
        span = batch.message.resource_spans[0].scope_spans[0].spans[0]  # type: ignore[union-attr]
        assert len(span.attributes) == 10, len(span.attributes)
        out.append(batch.serialize())
    return out


async def run(seconds: float) -> dict[str, Any]:
    config = msgspec.convert({"actions": ACTIONS}, AttributesConfig, dec_hook=dec_hook)
    settings = Settings.for_test("attributes/bench", Kind.PROCESSOR, "traces")
    assert FACTORY.create is not None
    processor = FACTORY.create(settings, config, Signal.TRACES, Discard())
    client = ClientInfo(address="127.0.0.1", metadata={"x-tenant": ("acme",)})
    requests = build_requests()
    per_round = 40
    spans = 0
    wall = cpu = 0.0
    rounds: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batches = [Batch.parse(Signal.TRACES, requests[i % len(requests)], client) for i in range(per_round)]
        for b in batches:
            b.mutable()  # parsed already; only the processor's work is timed
        w0, c0 = time.perf_counter(), time.process_time()
        for b in batches:
            await processor.consume(b)
        round_wall = time.perf_counter() - w0
        wall += round_wall
        cpu += time.process_time() - c0
        spans += per_round * SPANS_PER_REQUEST
        rounds.append(per_round * SPANS_PER_REQUEST / round_wall)
    return {"spans": spans, "wall": wall, "cpu": cpu, "rounds": sorted(rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--record", action="store_true", help="append the figures to bench/RESULTS.md")
    args = parser.parse_args()
    r = asyncio.run(run(args.seconds))
    rate = r["spans"] / r["wall"]
    cpu_rate = r["spans"] / r["cpu"]
    us = r["cpu"] / r["spans"] * 1e6
    rounds = r["rounds"]
    median, best = rounds[len(rounds) // 2], rounds[-1]
    print(f"spans processed:        {int(r['spans']):,}")
    print(f"spans/s (wall, 1 core): {rate:,.0f}   target >= {TARGET:,}")
    print(f"spans/s per CPU second: {cpu_rate:,.0f}")
    print(f"rounds of {40 * SPANS_PER_REQUEST:,} spans: median {median:,.0f}/s, best {best:,.0f}/s ({len(rounds)} rounds)")
    print(f"CPU per span:           {us:.2f} µs")
    if args.record:
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        verdict = "met" if rate >= TARGET else "missed"
        with open(ROOT / "bench" / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write(
                f"\n### attributes — {when}\n\nMachine: {machine}; run under the shared bench lock, "
                "other helpers' tests may have shared the cores.\n\n"
                "| figure | measured | target |\n| --- | --- | --- |\n"
                f"| spans/s through `attributes` (5 actions, 10 attributes, wall) | {rate:,.0f} | >= {TARGET:,} ({verdict}) |\n"
                f"| spans/s per CPU second | {cpu_rate:,.0f} | - |\n"
                f"| spans/s, median / best round of {40 * SPANS_PER_REQUEST:,} spans | {median:,.0f} / {best:,.0f} | - |\n"
                f"| CPU per span | {us:.2f} µs | - |\n"
            )


if __name__ == "__main__":
    main()
