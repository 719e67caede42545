#!/usr/bin/env python3
"""Throughput of the `redaction` processor on one core, batches fed straight in.

Pre-built traces batches (parsed before the clock starts) of `--spans` spans, each span with
10 attributes: realistic HTTP/ML attributes, mostly clean, about one span in ten carrying an
e-mail, a card number, an SSN, a client IP or a secret that must be masked. The processor
runs with `allow_all_keys`, 10 `blocked_values` patterns and 4 detectors (`email`,
`credit_card`, `us_ssn`, `ipv4`) and passes batches to a do-nothing consumer. The figure is
spans per second of processor time (`time.process_time`, one core).

Run under the shared benchmark lock:
`flock /tmp/flowglass-bench.lock .venv/bin/python bench/redaction.py [--seconds 10] [--record]`.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.trace.v1.trace_pb2 import Span  # noqa: E402

from agent.component import Kind, Settings  # noqa: E402
from agent.config.types import dec_hook  # noqa: E402
from agent.model import Batch, Signal, new_request  # noqa: E402
from agent.processors.redaction import FACTORY, RedactionConfig  # noqa: E402
from agent.testing import key_values, random_span_id, random_trace_id  # noqa: E402

TARGET = 60_000

BLOCKED_VALUES = [
    r"4[0-9]{12}(?:[0-9]{3})?",
    r"5[1-5][0-9]{14}",
    r"3[47][0-9]{13}",
    r"secret_[A-Za-z0-9]{16}",
    r"sk-[A-Za-z0-9]{20,}",
    r"ghp_[A-Za-z0-9]{36}",
    r"xox[baprs]-[A-Za-z0-9-]+",
    r"api[_-]?key[=:]\S+",
    r"password=\S+",
    r"AIza[0-9A-Za-z_-]{35}",
]
DETECTORS = ["email", "credit_card", "us_ssn", "ipv4"]

SENSITIVE = [
    ("user.email", "alice.smith@example.com"),
    ("payment.card", "4111 1111 1111 1111"),
    ("user.ssn", "078-05-1120"),
    ("client.address", "203.0.113.42"),
    ("http.request.header.cookie", "session=Zx8aQ2mN7pL4kR9tW1yB3cD5"),
]


def build_batch(spans: int, rng: random.Random) -> Batch:
    req = new_request(Signal.TRACES)
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(key_values({
        "service.name": "model-server", "service.instance.id": "model-server-7f9c",
        "host.name": "node-3", "k8s.namespace.name": "ml-serving",
    }))
    ss = rs.scope_spans.add()
    ss.scope.name = "flowglass.bench"
    now = time.time_ns()
    for i in range(spans):
        s = ss.spans.add()
        s.trace_id = random_trace_id(rng)
        s.span_id = random_span_id(rng)
        s.name = "POST /v1/models/resnet:predict"
        s.kind = Span.SPAN_KIND_SERVER
        s.start_time_unix_nano = now
        s.end_time_unix_nano = now + 1_000_000
        attrs = {
            "http.request.method": "POST",
            "url.path": "/v1/models/resnet:predict",
            "http.response.status_code": 200,
            "ml.model.name": "resnet50",
            "ml.model.version": "2024.11.3",
            "ml.batch_size": 8,
            "user_agent.original": "python-requests/2.31.0",
            "request.id": f"req-{rng.getrandbits(48):012x}",
            "server.address": "model-server.ml-serving.svc",
            "ml.latency.queue_ms": 1.5,
        }
        if i % 10 == 3:
            key, value = SENSITIVE[(i // 10) % len(SENSITIVE)]
            attrs["user_agent.original"] = f"{key}: {value}"
        s.attributes.extend(key_values(attrs))
    return Batch(Signal.TRACES, req)


class _Null:
    mutates_data = False

    async def consume(self, batch: Batch) -> None:
        return None


async def run(seconds: float, spans: int) -> tuple[float, int]:
    import msgspec

    config = msgspec.convert(
        {"allow_all_keys": True, "blocked_values": BLOCKED_VALUES, "detectors": DETECTORS},
        RedactionConfig, dec_hook=dec_hook,
    )
    assert FACTORY.create is not None
    proc = FACTORY.create(Settings.for_test("redaction", Kind.PROCESSOR, "traces"), config, Signal.TRACES, _Null())
    rng = random.Random(7)
    pool = [build_batch(spans, rng) for _ in range(64)]
    data = [b.serialize() for b in pool]
    done = 0
    used = 0.0
    while used < seconds:
        batches = [Batch.parse(Signal.TRACES, d) for d in data]
        for b in batches:
            b.message  # noqa: B018 - parsed before the clock starts
        t0 = time.process_time()
        for b in batches:
            await proc.consume(b)
        used += time.process_time() - t0
        done += spans * len(batches)
    return done / used, done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--spans", type=int, default=512, help="spans per batch")
    ap.add_argument("--record", action="store_true", help="append the figures to bench/RESULTS.md")
    args = ap.parse_args()
    rate, done = asyncio.run(run(args.seconds, args.spans))
    verdict = "met" if rate >= TARGET else "MISSED"
    print(f"redaction: {rate:,.0f} spans/s on one core ({done:,} spans), target {TARGET:,} — {verdict}")
    if args.record:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        text = (
            f"\n### redaction — {stamp}\n\n"
            f"Machine: {platform.machine()}, {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}; run under the shared benchmark lock, other helpers' tests "
            f"may have shared the 2 cores. Batches of {args.spans} spans × 10 attributes, "
            f"`allow_all_keys`, 10 blocked_values, detectors {', '.join(DETECTORS)}; "
            f"processor CPU time only (batches parsed before the clock).\n\n"
            f"| figure | measured | target |\n| --- | --- | --- |\n"
            f"| spans/s through `redaction` (one core) | {rate:,.0f} | >= {TARGET:,} |\n"
        )
        with open(ROOT / "bench" / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
