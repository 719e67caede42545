"""`service.workers: N`: N agent processes sharing the listening ports (DESIGN §7).

`flowglass run` with `workers` > 1 becomes a supervisor: it starts N worker processes, each
running the same configuration (`python -m agent run -c ...` with
`FLOWGLASS_WORKER_INDEX=i`). Workers open their listening sockets with SO_REUSEPORT, so the
kernel spreads incoming connections across them; worker `i` serves its own telemetry on the
configured telemetry port + i (worker 0 on the configured port).

The supervisor forwards SIGTERM and SIGINT to every worker and waits for them to drain
(`shutdown_timeout` plus a margin, then SIGKILL). A worker that dies on its own is logged
and restarted after a back-off; when workers keep dying (5 times within a minute) the
supervisor stops them all and exits 1. Its exit code is 0 when every worker exited 0.

Only pipelines that hold no cross-request state scale this way; tail sampling and span
metrics keep state per process and belong on a gateway tier behind Kafka (DESIGN §7).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

logger = logging.getLogger(__name__)

WORKER_ENV = "FLOWGLASS_WORKER_INDEX"
_MAX_DEATHS = 5
_DEATH_WINDOW = 60.0
_POLL = 0.1


def worker_index() -> int | None:
    """This process's worker index, or None when it is not a worker."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value and value.isdigit() else None


def telemetry_address(address: str, index: int | None) -> str:
    """The telemetry address of worker `index`: port + index (port 0 stays 0)."""
    if not address or not index:
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) == 0:
        return address
    return f"{host}:{int(port) + index}"


class Supervisor:
    def __init__(self, config_paths: Sequence[str], workers: int, shutdown_timeout: float) -> None:
        self._paths = list(config_paths)
        self._n = workers
        self._grace = shutdown_timeout + 5.0
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._deaths: list[float] = []
        self._stopping = False
        self._restart_at: dict[int, float] = {}

    def _spawn(self, index: int) -> None:
        cmd = [sys.executable, "-m", "agent", "run"]
        for path in self._paths:
            cmd += ["-c", path]
        env = {**os.environ, WORKER_ENV: str(index)}
        self._children[index] = subprocess.Popen(cmd, env=env)
        logger.info("Started a worker.", extra={"worker": index, "pid": self._children[index].pid})

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._stopping:
            logger.info("Received a signal; stopping the workers.", extra={"signal": signal.Signals(signum).name})
        self._stopping = True
        for child in self._children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def run(self) -> int:
        """Start the workers and supervise them until a signal; the exit code."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for i in range(self._n):
                self._spawn(i)
            while not self._stopping:
                self._watch()
                time.sleep(_POLL)
            return self._wait_all()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _watch(self) -> None:
        now = time.monotonic()
        for index, child in list(self._children.items()):
            code = child.poll()
            if code is None or self._stopping:
                continue
            if index in self._restart_at:
                if now >= self._restart_at[index]:
                    del self._restart_at[index]
                    self._spawn(index)
                continue
            self._deaths = [t for t in self._deaths if now - t < _DEATH_WINDOW] + [now]
            if len(self._deaths) >= _MAX_DEATHS:
                logger.error(
                    "Workers keep dying; stopping all of them.",
                    extra={"worker": index, "exit_code": code, "deaths_in_window": len(self._deaths)},
                )
                self._on_signal(signal.SIGTERM, None)
                return
            delay = min(2.0 ** (len(self._deaths) - 1), 30.0)
            logger.error(
                "A worker exited unexpectedly; restarting it.",
                extra={"worker": index, "exit_code": code, "restart_in_s": delay},
            )
            self._restart_at[index] = now + delay

    def _wait_all(self) -> int:
        deadline = time.monotonic() + self._grace
        worst = 0
        for index, child in self._children.items():
            try:
                code = child.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                logger.error("A worker did not stop in time; killing it.", extra={"worker": index})
                child.kill()
                code = child.wait()
            worst = max(worst, abs(code))
        return 0 if worst == 0 else 1
