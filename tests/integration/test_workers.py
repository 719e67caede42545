"""`service.workers: 2`: two processes share the OTLP port; the supervisor restarts a dead
worker and drains both on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import urllib.request
from pathlib import Path

import grpc

from agent.testing import AgentProcess, free_port, make_traces
from tests.integration.helpers import TRACES_METHOD, raw_export, wait_until

CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
exporters:
  debug: {{}}
service:
  workers: 2
  telemetry:
    logs: {{level: warn}}
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
"""


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def worker_pids(parent: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                out.append(int(entry.name))
    return out


def consecutive_free_ports() -> tuple[int, int]:
    """Two adjacent ports that are both free right now (worker i serves telemetry on port+i)."""
    for _ in range(100):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            first = int(a.getsockname()[1])
            try:
                b.bind(("127.0.0.1", first + 1))
            except OSError:
                continue
            return first, first + 1
    raise AssertionError("no two adjacent free ports on loopback")


def accepted(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("flowglass_receiver_accepted_items_total{"))


def test_two_workers_share_the_port_restart_and_drain() -> None:
    tele, _ = consecutive_free_ports()
    port = free_port()
    while port in (tele, tele + 1):
        port = free_port()
    with AgentProcess(CONFIG.format(port=port, telemetry=tele), telemetry_port=tele) as agent:
        assert agent.proc is not None
        try:
            wait_until(lambda: ready(tele + 1), timeout=40, what="worker 1 ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nagent output:\n{agent.output()}") from None
        for _ in range(40):  # a new connection each time: the kernel spreads them
            code, _, _ = raw_export(f"127.0.0.1:{port}", TRACES_METHOD, make_traces(5).serialize())
            assert code == grpc.StatusCode.OK
        a0, a1 = accepted(tele), accepted(tele + 1)
        assert a0 + a1 == 200
        assert a0 > 0 and a1 > 0, "both workers must take connections"

        pids = worker_pids(agent.proc.pid)
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        wait_until(lambda: len(set(worker_pids(agent.proc.pid)) - set(pids)) == 1, timeout=20,
                   what="the dead worker restarted")
        wait_until(lambda: ready(tele) and ready(tele + 1), what="both workers ready again")
        code, _, _ = raw_export(f"127.0.0.1:{port}", TRACES_METHOD, make_traces(5).serialize())
        assert code == grpc.StatusCode.OK
        survivors = worker_pids(agent.proc.pid)
        assert agent.stop(timeout=60) == 0, agent.output()
        for pid in survivors:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
