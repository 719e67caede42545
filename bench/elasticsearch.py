#!/usr/bin/env python3
"""Elasticsearch exporter benchmark: log records/s encoded to `_bulk` NDJSON and sent.

Pre-built OTLP log requests (1000 records each, 2 attributes, a string body, trace and span
ids, as `agent.testing.make_logs` builds them) are parsed before the clock starts. The timed
part feeds them into the `elasticsearch` exporter (`otel` mapping mode, `flush.interval: 0`,
so each batch is one bulk request; sending queue with 2 workers) on one event loop pinned to
one core; a second process, pinned to the other core, runs a null HTTP sink that reads each
request and answers `{"errors":false}` (the exporter's fast path: no item needs a look).

Variants: `compression: none` (the target) and `gzip` (the default), with and without
`document_id: hash`; plus the encoder alone (no HTTP).

Prints records/s (wall, and per CPU second of the exporter process) and CPU µs per record.
Run under the shared lock:
`flock /tmp/flowglass-bench.lock .venv/bin/python bench/elasticsearch.py [--seconds 10]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import serve_null_http  # noqa: E402

TARGET = 100_000
RECORDS_PER_REQUEST = 1000


# ---- the null sink (second process) ---------------------------------------------------------

_ANSWER = b'{"took":0,"errors":false}'


async def _sink_main(port: int) -> None:
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(_ANSWER)).encode() + b"\r\n\r\n" + _ANSWER)
    server = await serve_null_http(port, answer)
    print("ready", flush=True)
    async with server:
        await asyncio.Event().wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


# ---- the exporter under test ----------------------------------------------------------------

def _batches(variants: int) -> list[Any]:
    from agent.model import Batch, Signal
    from agent.testing import make_logs

    out = []
    for i in range(variants):
        data = make_logs(RECORDS_PER_REQUEST, service=f"model-server-{i}").serialize()
        out.append(Batch.parse(Signal.LOGS, data))
    return out


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def run_exporter(port: int, seconds: float, compression: str, hash_ids: bool) -> dict[str, float]:
    import msgspec

    from agent.component import Kind, Settings
    from agent.config.types import dec_hook
    from agent.exporters.elasticsearch import ElasticsearchExporterConfig
    from agent.exporters.elasticsearch.exporter import ElasticsearchExporter

    options: dict[str, Any] = {"endpoint": f"http://127.0.0.1:{port}", "compression": compression,
                               "flush": {"interval": 0}, "num_workers": 2,
                               "sending_queue": {"queue_size": 4}}
    if hash_ids:
        options["document_id"] = "hash"
    config = msgspec.convert(options, ElasticsearchExporterConfig, dec_hook=dec_hook)
    settings = Settings.for_test("elasticsearch", Kind.EXPORTER)
    exporter = ElasticsearchExporter(settings, config)
    batches = _batches(4)
    await exporter.start()
    for b in batches[:2]:  # warm up: connections, caches
        await exporter.consume(b)
    records = 0
    cpu0, t0 = _cpu(), time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:
        await exporter.consume(batches[i % len(batches)])
        records += RECORDS_PER_REQUEST
        i += 1
    await exporter.shutdown()
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    created = settings.metrics.registry.get_sample_value(
        "flowglass_exporter_elasticsearch_documents_total",
        {"component": "elasticsearch", "signal": "logs", "outcome": "created"}) or 0.0
    return {"records": records, "wall": wall, "cpu": cpu, "created": created - 2 * RECORDS_PER_REQUEST}


def run_encoder(seconds: float) -> dict[str, float]:
    from agent.exporters.elasticsearch.bulk import ndjson
    from agent.exporters.elasticsearch.encode import DocumentEncoder

    encoder = DocumentEncoder(mode="otel", logs_index="logs-generic-default", traces_index="traces-generic-default",
                              logs_dynamic_index=False, traces_dynamic_index=False, logstash=None, pipeline="",
                              logs_dynamic_id=False, hash_ids=False)
    batches = _batches(4)
    records, nbytes = 0, 0
    cpu0, t0 = _cpu(), time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:
        docs, _ = encoder.encode(batches[i % len(batches)])
        nbytes += len(ndjson(docs))
        records += len(docs)
        i += 1
    return {"records": records, "wall": time.perf_counter() - t0, "cpu": _cpu() - cpu0, "bytes": nbytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        _pin(1)
        asyncio.run(_sink_main(args.sink))
        return

    _pin(0)
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"exporter pinned to CPU 0, sink to CPU 1")
    enc = run_encoder(args.seconds)
    print(f"encoder alone (otel mode): {enc['records'] / enc['cpu']:,.0f} records per CPU second, "
          f"{enc['bytes'] / enc['records']:.0f} NDJSON bytes a record")
    port = _free_port()
    sink = subprocess.Popen([sys.executable, __file__, "--sink", str(port)], stdout=subprocess.PIPE)
    try:
        assert sink.stdout is not None
        sink.stdout.readline()
        try:
            import uvloop

            loop_factory: Any = uvloop.new_event_loop
        except ImportError:
            loop_factory = None
        for compression, hash_ids in (("none", False), ("none", True), ("gzip", False)):
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                r = runner.run(run_exporter(port, args.seconds, compression, hash_ids))
            per_cpu = r["records"] / r["cpu"]
            verdict = "met" if per_cpu >= TARGET else "MISSED"
            print(f"compression {compression:4}, hash ids {hash_ids!s:5}: {r['records'] / r['wall']:,.0f} records/s "
                  f"wall, {per_cpu:,.0f} per CPU second ({1e6 / per_cpu:.2f} µs a record; target "
                  f"{TARGET:,}: {verdict}); created {r['created']:,.0f} of {r['records']:,.0f}")
    finally:
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    main()
