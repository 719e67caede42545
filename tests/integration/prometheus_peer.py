"""Real Prometheus 2.42 and VictoriaMetrics (Debian packages) for integration tests.

Each peer runs from its own temporary directory on a free loopback port, is waited for
until ready, queried over its HTTP API (`/api/v1/query`) and stopped by its process id.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from agent.testing import free_port, stop_process


class Peer:
    """A server process started from a temp dir; `url` is its base URL."""

    name = "peer"
    ready_path = "/"

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix=f"flowglass-{self.name}-")
        self.dir = Path(self._dir.name)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "peer.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def write_url(self) -> str:
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> Peer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        stop_process(self.proc)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                doc = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            doc = json.loads(err.read() or b"{}")
        if doc.get("status") != "success":
            raise AssertionError(f"{self.name} query failed: {doc}")
        return doc["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The result vector of an instant query (at `at` seconds, default now)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("/api/v1/query", **params)
        return list(data["result"])

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of an instant query, or None when it returns nothing."""
        result = self.query(expr, at)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def __enter__(self) -> Peer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class Prometheus(Peer):
    """`prometheus` with the remote write receiver and, optionally, scrape jobs."""

    name = "prometheus"
    ready_path = "/-/ready"

    def __init__(self, binary: str, scrape_configs: list[dict[str, Any]] | None = None,
                 extra_args: list[str] | None = None) -> None:
        super().__init__()
        self.binary = binary
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": scrape_configs or []}
        (self.dir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.extra_args = extra_args or []

    def command(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
            *self.extra_args,
        ]

    @property
    def write_url(self) -> str:
        return f"{self.url}/api/v1/write"


class VictoriaMetrics(Peer):
    name = "victoria-metrics"
    ready_path = "/health"

    def __init__(self, binary: str) -> None:
        super().__init__()
        self.binary = binary

    def command(self) -> list[str]:
        return [
            self.binary,
            f"-storageDataPath={self.dir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            # Make written samples searchable at once rather than after the default cache delay.
            "-search.latencyOffset=0s",
            "-search.disableCache",
        ]

    @property
    def write_url(self) -> str:
        return f"{self.url}/api/v1/write"

    def flush(self) -> None:
        """Make recently written samples visible to queries."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10):
            pass
