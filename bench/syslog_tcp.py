#!/usr/bin/env python3
"""Syslog over TCP benchmark: Flowglass (syslog → batch → file) against rsyslogd (imptcp → omfile).

A realistic mix of RFC 5424 messages (~200 bytes: a few hosts and apps, all severities,
microsecond timestamps, a third without structured data, a third with rsyslog's
`timeQuality`, a third with a per-request SD element and id) is framed with octet counting
once, before the clock starts. Sender threads in this process (not the agent's) then push
`--messages` messages over `--connections` TCP connections to the agent and, in the same
run, the same bytes to rsyslogd on another port.

The clock runs from the first byte sent to the moment every message is out: for Flowglass
when the `file` exporter counted them all as written (`flowglass_exporter_sent_items_total`),
for rsyslogd when its output file holds them all (one line each). Prints messages/s for
both, CPU seconds per million messages of each receiving process (from /proc), and the
ratio Flowglass/rsyslog. The floor is 100k messages/s through one agent process.

Run: `.venv/bin/python bench/syslog_tcp.py [--messages 1000000] [--connections 4] [--format proto]`;
`--record` appends the figures to bench/RESULTS.md. Needs rsyslogd (`make peers`).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402

FLOOR = 100_000

AGENT_CONFIG = """
receivers:
  syslog:
    protocol: rfc5424
    enable_octet_counting: true
    tcp: {{listen_address: "127.0.0.1:{port}"}}
processors:
  batch: {{}}
exporters:
  file: {{path: "{out}", format: {format}}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{telemetry}"}}}}
  pipelines:
    logs: {{receivers: [syslog], processors: [batch], exporters: [file]}}
"""

RSYSLOG_CONFIG = """
module(load="imptcp")
input(type="imptcp" address="127.0.0.1" port="{port}")
action(type="omfile" file="{out}" template="RSYSLOG_FileFormat")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_messages(n: int, seed: int = 7) -> list[bytes]:
    """A realistic mix of ~200-byte RFC 5424 messages."""
    rng = random.Random(seed)
    hosts = [f"gpu-node-{i:02d}.ml.example.com" for i in range(6)]
    apps = [("model-server", "INFER"), ("trainer", "STEP"), ("feature-store", "-"), ("gateway", "REQ")]
    texts = ["request served status=200 path=/v1/models/resnet50:predict latency_ms={:.2f}",
             "batch completed step={} loss={:.4f} lr=0.0003 tokens_per_s=41250",
             "cache miss for key user:{} fetching from backing store took {:.1f}ms",
             "upstream timeout after {:.0f}ms retrying attempt=2 of 3 backend=10.0.3.17:8500"]
    out = []
    for i in range(n):
        app, msgid = apps[i % len(apps)]
        sd = ("-", '[timeQuality tzKnown="1" isSynced="1" syncAccuracy="218000"]',
              f'[req@32473 id="{rng.getrandbits(48):012x}" model="resnet50"]')[i % 3]
        template = texts[i % len(texts)]
        text = template.format(*(rng.random() * 1000 for _ in range(template.count("{"))))
        stamp = f"2024-05-06T07:{(i // 60) % 60:02d}:{i % 60:02d}.{rng.randrange(10**6):06d}Z"
        pri = 8 * rng.choice([1, 3, 16, 20]) + rng.choice([3, 4, 6, 6, 6, 7])
        out.append(f"<{pri}>1 {stamp} {hosts[i % len(hosts)]} {app} {1000 + i % 97} {msgid} {sd} {text}".encode())
    return out


def framed(messages: list[bytes]) -> bytes:
    return b"".join(b"%d %b" % (len(m), m) for m in messages)


def send(port: int, blob: bytes, per_blob: int, total: int, connections: int) -> None:
    """Send `total` messages (whole blobs of `per_blob`) over `connections` connections, in threads."""
    blobs = total // per_blob
    counts = [blobs // connections + (1 if i < blobs % connections else 0) for i in range(connections)]

    def worker(count: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            for _ in range(count):
                s.sendall(blob)

    threads = [threading.Thread(target=worker, args=(c,)) for c in counts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def run(label: str, pid: int, port: int, blob: bytes, per_blob: int, total: int, connections: int,
        done: callable, timeout: float = 600.0) -> tuple[float, float]:  # type: ignore[valid-type]
    """(messages/s, CPU s per million) of one receiver."""
    cpu0 = proc_cpu(pid)
    start = time.perf_counter()
    sender = threading.Thread(target=send, args=(port, blob, per_blob, total, connections))
    sender.start()
    deadline = start + timeout
    while not done() and time.perf_counter() < deadline:
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    sender.join()
    if not done():
        raise RuntimeError(f"{label} did not take every message within {timeout}s")
    cpu = proc_cpu(pid) - cpu0
    return total / elapsed, cpu / total * 1e6


def bench_agent(blob: bytes, per_blob: int, total: int, connections: int, fmt: str, tmp: Path) -> tuple[float, float]:
    from agent.testing import AgentProcess

    port, telemetry = free_port(), free_port()
    out = tmp / f"agent.{fmt}"
    config = AGENT_CONFIG.format(port=port, out=out, format=fmt, telemetry=telemetry)
    with AgentProcess(config, telemetry_port=telemetry) as agent:
        assert agent.proc is not None
        send(port, framed([b"<14>1 - - - - - - warm-up"] * 1000), 1000, 1000, 1)  # warm-up
        while metric(telemetry, "flowglass_exporter_sent_items_total") < 1000:
            time.sleep(0.05)
        base = metric(telemetry, "flowglass_exporter_sent_items_total")

        def done() -> bool:
            return metric(telemetry, "flowglass_exporter_sent_items_total") - base >= total

        result = run("flowglass", agent.proc.pid, port, blob, per_blob, total, connections, done)
        refused = metric(telemetry, "flowglass_receiver_refused_items_total")
        unparsed = metric(telemetry, "flowglass_receiver_unparsed_items_total")
        if refused or unparsed:
            raise RuntimeError(f"the agent refused {refused} and could not parse {unparsed} messages")
        return result


def bench_rsyslog(blob: bytes, per_blob: int, total: int, connections: int, tmp: Path) -> tuple[float, float]:
    from tests.integration.syslog_peers import Rsyslog, rsyslogd_path

    binary = rsyslogd_path()
    if binary is None:
        raise RuntimeError("rsyslogd is not installed; run `make peers`")
    port = free_port()
    out = tmp / "rsyslog.out"
    with Rsyslog(binary, tmp / "rsyslog", RSYSLOG_CONFIG.format(port=port, out=out)) as rsyslog:
        assert rsyslog.proc is not None
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.1)
        lines = [0, 0]  # lines seen, bytes read

        def done() -> bool:
            try:
                with open(out, "rb") as f:
                    f.seek(lines[1])
                    data = f.read()
            except FileNotFoundError:
                return False
            lines[0] += data.count(b"\n")
            lines[1] += len(data)
            return lines[0] >= total

        return run("rsyslogd", rsyslog.proc.pid, port, blob, per_blob, total, connections, done)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--format", choices=["proto", "json"], default="proto", help="the file exporter's format")
    ap.add_argument("--skip-rsyslog", action="store_true")
    ap.add_argument("--record", action="store_true", help="append the figures to bench/RESULTS.md")
    args = ap.parse_args()
    messages = build_messages(100_000)
    blob, per_blob = framed(messages), len(messages)
    total = max(per_blob, args.messages // per_blob * per_blob)
    size = sum(map(len, messages)) / len(messages)
    print(f"{total:,} messages of {size:.0f} bytes on average over {args.connections} connections")
    with tempfile.TemporaryDirectory(prefix="flowglass-bench-syslog-") as tmp:
        rate, cpu = bench_agent(blob, per_blob, total, args.connections, args.format, Path(tmp))
        print(f"flowglass (syslog → batch → file/{args.format}): {rate:,.0f} msgs/s, {cpu:.2f} CPU s per million")
        rs_rate = rs_cpu = None
        if not args.skip_rsyslog:
            rs_rate, rs_cpu = bench_rsyslog(blob, per_blob, total, args.connections, Path(tmp))
            print(f"rsyslogd (imptcp → omfile): {rs_rate:,.0f} msgs/s, {rs_cpu:.2f} CPU s per million")
            print(f"ratio flowglass/rsyslog: {rate / rs_rate:.2f}")
    print(f"floor {FLOOR:,} msgs/s: {'met' if rate >= FLOOR else 'MISSED'}")
    if args.record:
        rows = [
            ("messages/s, Flowglass syslog → batch → file", f"{rate:,.0f}", f">= {FLOOR:,}"),
            ("CPU s per million messages, Flowglass", f"{cpu:.2f}", "-"),
        ]
        if rs_rate is not None and rs_cpu is not None:
            rows += [("messages/s, rsyslogd imptcp → omfile", f"{rs_rate:,.0f}", "-"),
                     ("CPU s per million messages, rsyslogd", f"{rs_cpu:.2f}", "-"),
                     ("ratio Flowglass / rsyslogd", f"{rate / rs_rate:.2f}", "as close to 1 as the design allows")]
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write(f"\n### syslog_tcp — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n")
            f.write(f"Machine: {machine()}. {total:,} messages of {size:.0f} bytes, octet counting, "
                    f"{args.connections} connections, file format {args.format}.\n\n")
            f.write("| figure | measured | target |\n| --- | --- | --- |\n")
            for row in rows:
                f.write(f"| {row[0]} | {row[1]} | {row[2]} |\n")


if __name__ == "__main__":
    main()
