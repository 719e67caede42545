"""The `flowglass` command as a user runs it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import agent
from agent.testing import free_port

FIVE_MISTAKES = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
        max_recv_msg_size_mib: lots
processors:
  batch:
    send_batch_sizee: 10
exporters:
  nosuch: {{}}
  debug: {{}}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file/missing]
    logs:
      receivers: []
      exporters: [debug]
"""


def flowglass(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def test_five_mistakes_are_all_reported_and_nothing_starts(tmp_path: Path) -> None:
    port = free_port()
    bad = tmp_path / "bad.yaml"
    bad.write_text(FIVE_MISTAKES.format(port=port))
    for command in ("run", "validate"):
        r = flowglass(command, "-c", str(bad))
        assert r.returncode == 2, r.stderr
        err = r.stderr
        assert "Traceback" not in err
        assert "receivers.otlp.protocols.grpc.max_recv_msg_size_mib" in err
        assert "processors.batch.send_batch_sizee" in err
        assert "exporters.nosuch" in err
        assert "service.pipelines.traces.exporters[0]" in err
        assert "service.pipelines.logs" in err and "receiver" in err
        assert "5 problems" in err
    with socket.socket() as s:  # nothing bound the port
        s.bind(("127.0.0.1", port))


def test_validate_ok_components_version() -> None:
    root = Path(__file__).resolve().parents[2]
    r = flowglass("validate", "-c", str(root / "config" / "default.yaml"))
    assert r.returncode == 0, r.stderr
    r = flowglass("components")
    assert r.returncode == 0
    for t in ("otlp", "batch", "memory_limiter", "otlp_grpc", "otlp_http", "debug", "file"):
        assert t in r.stdout
    r = flowglass("--version")
    assert r.returncode == 0 and agent.__version__ in r.stdout


def test_port_in_use_is_a_sentence_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"""
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
exporters:
  debug: {{}}
service:
  telemetry: {{metrics: {{address: ""}}}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [debug]}}
""")
        r = flowglass("run", "-c", str(cfg))
    assert r.returncode == 1
    assert "could not start" in r.stderr
    assert str(port) in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_default_config_runs_with_no_backend(tmp_path: Path) -> None:
    """`flowglass run` with no -c: the embedded default, on free ports, data under ./data."""
    import os
    import signal
    import time
    import urllib.request

    ports = {"FLOWGLASS_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
             "FLOWGLASS_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
             "FLOWGLASS_TELEMETRY_ADDRESS": f"127.0.0.1:{free_port()}"}
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run"], cwd=tmp_path, env={**os.environ, **ports},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{ports['FLOWGLASS_TELEMETRY_ADDRESS']}/readyz", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "default config did not become ready"
                assert proc.poll() is None
                time.sleep(0.1)
        from agent.testing import make_traces
        req = urllib.request.Request(f"http://{ports['FLOWGLASS_OTLP_HTTP_ENDPOINT']}/v1/traces",
                                     data=make_traces(3).serialize(),
                                     headers={"Content-Type": "application/x-protobuf"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    data = tmp_path / "data" / "telemetry.jsonl"
    assert data.exists() and "resourceSpans" in data.read_text()
