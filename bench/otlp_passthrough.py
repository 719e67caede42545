#!/usr/bin/env python3
"""OTLP pass-through benchmark: load generator → agent (otlp → batch → otlp_grpc) → sink.

Three processes besides this one: the agent under test (`python -m agent run`), a do-nothing
OTLP gRPC sink that the agent exports to, and — in the same run, for comparison — a bare
gRPC server that only parses the same requests and counts their spans (the limit of a
Python gRPC server on this machine). The load generator (this process, or `--procs` of
them) sends pre-built ExportTraceServiceRequests of 512 spans over raw gRPC.

Prints: spans/s through the agent, agent CPU seconds per million spans, agent RSS idle and
at 10k spans/s, the bare server's spans/s and the ratio. `--record` appends the figures with
the machine description to bench/RESULTS.md.

Run: `make bench` or `.venv/bin/python bench/otlp_passthrough.py [--seconds 20]`.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402

TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS_PER_REQUEST = 512


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_requests(variants: int = 8) -> list[bytes]:
    """Pre-built requests: 512 spans each, with realistic resource and span attributes."""
    from agent.testing import make_traces

    out = []
    for i in range(variants):
        batch = make_traces(
            SPANS_PER_REQUEST,
            traces=64,
            seed=i,
            service=f"model-server-{i % 3}",
            resource_attrs={
                "k8s.pod.name": f"resnet-7d9f-{i}", "k8s.namespace.name": "ml-serving",
                "k8s.node.name": "node-1", "ml.model.name": "resnet50", "ml.model.version": "3",
            },
            span_attrs={"user_agent.original": "python-requests/2.32", "server.address": "10.0.0.7"},
            error_every=50,
        )
        out.append(batch.serialize())
    return out


# ---- servers ---------------------------------------------------------------------------------

def _serve(port: int, parse: bool, ready: mp.synchronize.Event, counter: mp.sharedctypes.Synchronized) -> None:  # type: ignore[name-defined]
    """A gRPC OTLP trace server: do-nothing sink (parse=False) or bare parse-and-count server."""
    import uvloop
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    async def main() -> None:
        local = [0]

        async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            if parse:
                msg = ExportTraceServiceRequest.FromString(request)
                n = 0
                for rs in msg.resource_spans:
                    for ss in rs.scope_spans:
                        n += len(ss.spans)
                local[0] += n
            else:
                local[0] += len(request)
            return b""

        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(export)},
        )
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        while True:
            await asyncio.sleep(0.2)
            counter.value = local[0]

    uvloop.run(main())


class Server:
    def __init__(self, parse: bool) -> None:
        self.port = free_port()
        self.ready = mp.Event()
        self.counter = mp.Value("q", 0)
        self.proc = mp.Process(target=_serve, args=(self.port, parse, self.ready, self.counter), daemon=True)

    def __enter__(self) -> Server:
        self.proc.start()
        if not self.ready.wait(20):
            raise RuntimeError("server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.join(5)


# ---- load generator --------------------------------------------------------------------------

def _load(port: int, seconds: float, concurrency: int, rate: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """Send requests for `seconds` with `concurrency` in flight (rate spans/s if > 0)."""
    import uvloop

    requests = build_requests()

    async def main() -> tuple[int, int]:
        ok = failed = 0
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)]
        )
        call = channel.unary_unary(TRACE_METHOD)
        deadline = time.monotonic() + seconds
        interval = (SPANS_PER_REQUEST / rate) * concurrency if rate > 0 else 0.0

        async def worker(i: int) -> None:
            nonlocal ok, failed
            j = i
            next_at = time.monotonic()
            while time.monotonic() < deadline:
                try:
                    await call(requests[j % len(requests)], timeout=10)
                    ok += 1
                except grpc.aio.AioRpcError:
                    failed += 1
                    await asyncio.sleep(0.01)
                j += 1
                if interval:
                    next_at += interval
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        await channel.close()
        return ok, failed

    out.put(uvloop.run(main()))


def load(port: int, seconds: float, concurrency: int, procs: int, rate: float = 0.0) -> tuple[int, int, float]:
    """(requests ok, requests failed, elapsed) over `procs` generator processes."""
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    per_rate = rate / procs if rate else 0.0
    ps = [mp.Process(target=_load, args=(port, seconds, concurrency, per_rate, q)) for _ in range(procs)]
    t0 = time.monotonic()
    for p in ps:
        p.start()
    results = [q.get(timeout=seconds + 60) for _ in ps]
    for p in ps:
        p.join(10)
    elapsed = time.monotonic() - t0
    return sum(r[0] for r in results), sum(r[1] for r in results), elapsed


# ---- the agent under test --------------------------------------------------------------------

AGENT_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{receiver_port}
        max_recv_msg_size_mib: 64
processors:
  batch:
    send_batch_size: 8192
    timeout: 200ms
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink_port}
    tls: {{insecure: true}}
    compression: none
    sending_queue:
      num_consumers: 4
service:
  telemetry:
    logs: {{level: warn}}
    metrics: {{address: 127.0.0.1:{telemetry_port}}}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp]
"""


def proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds user+system, RSS bytes) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Agent:
    def __init__(self, sink_port: int) -> None:
        self.receiver_port = free_port()
        self.telemetry_port = free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="flowglass-bench-")
        self.config = Path(self.dir.name) / "agent.yaml"
        self.config.write_text(AGENT_CONFIG.format(
            receiver_port=self.receiver_port, sink_port=sink_port, telemetry_port=self.telemetry_port))

    def __enter__(self) -> Agent:
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(self.config)], cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.telemetry_port}/readyz", timeout=1)
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"agent exited with {self.proc.returncode}") from None
                time.sleep(0.1)
        raise RuntimeError("agent did not become ready")

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.dir.cleanup()


def sampling_rss(pid: int, fn, *args):  # type: ignore[no-untyped-def]
    """Run fn(*args) in a thread while sampling the RSS of `pid`; (result, peak RSS)."""
    peak = 0
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(fn, *args)
        while not fut.done():
            peak = max(peak, proc_stat(pid)[1])
            time.sleep(0.25)
        return fut.result(), peak


# ---- main ------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each full-speed phase")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight per generator")
    ap.add_argument("--procs", type=int, default=1, help="load generator processes")
    ap.add_argument("--record", action="store_true", help="append the figures to bench/RESULTS.md")
    args = ap.parse_args()

    print(f"machine: {machine()}")
    with Server(parse=False) as sink, Agent(sink.port) as agent:
        time.sleep(2.0)
        _, rss_idle = proc_stat(agent.proc.pid)

        # First 10k spans/s for 10 s, sampling RSS meanwhile (before any burst raises the heap).
        (ok10, failed10, el10), rss_peak = sampling_rss(agent.proc.pid, load, agent.receiver_port, 10.0, 4, 1, 10_000.0)

        cpu0, _ = proc_stat(agent.proc.pid)
        sent0 = metric(agent.telemetry_port, "flowglass_exporter_sent_items_total")
        (ok, failed, elapsed), rss_full = sampling_rss(
            agent.proc.pid, load, agent.receiver_port, args.seconds, args.concurrency, args.procs)
        time.sleep(1.0)  # let the last batch leave
        cpu1, _ = proc_stat(agent.proc.pid)
        sent = metric(agent.telemetry_port, "flowglass_exporter_sent_items_total") - sent0
        accepted_rate = ok * SPANS_PER_REQUEST / elapsed
        cpu_per_m = (cpu1 - cpu0) / max(sent, 1) * 1e6


    with Server(parse=True) as bare:
        ok_b, _failed_b, el_b = load(bare.port, args.seconds, args.concurrency, args.procs)
        bare_rate = ok_b * SPANS_PER_REQUEST / el_b

    ratio = accepted_rate / bare_rate if bare_rate else 0.0
    rows = [
        ("spans/s through the agent (accepted)", f"{accepted_rate:,.0f}", ">= 250,000"),
        ("spans delivered to the sink", f"{sent:,.0f} of {ok * SPANS_PER_REQUEST:,} accepted", "all"),
        ("requests refused/failed (full speed)", f"{failed}", "-"),
        ("agent CPU s per million spans", f"{cpu_per_m:.2f}", "-"),
        ("agent RSS idle", f"{rss_idle / 2**20:.1f} MiB", "<= 60 MiB"),
        ("agent RSS at 10k spans/s (peak)", f"{rss_peak / 2**20:.1f} MiB", "<= 100 MiB"),
        ("agent RSS at full speed (peak)", f"{rss_full / 2**20:.1f} MiB", "-"),
        ("spans/s at the 10k phase", f"{ok10 * SPANS_PER_REQUEST / el10:,.0f} (failed {failed10})", "10,000"),
        ("bare parse-only gRPC server spans/s", f"{bare_rate:,.0f}", "-"),
        ("agent / bare ratio", f"{ratio:.2f}", ">= 0.60"),
    ]
    w = max(len(r[0]) for r in rows)
    print()
    for name, value, target in rows:
        print(f"{name:<{w}}  {value:>32}  target {target}")
    if args.record:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write(f"\n### otlp_passthrough — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n")
            f.write(f"Machine: {machine()}. Load: {args.procs} generator process(es) × {args.concurrency} "
                    f"in flight, {args.seconds:.0f} s per full-speed phase, 512-span requests.\n\n")
            f.write("| figure | measured | target |\n| --- | --- | --- |\n")
            for name, value, target in rows:
                f.write(f"| {name} | {value} | {target} |\n")


if __name__ == "__main__":
    main()
