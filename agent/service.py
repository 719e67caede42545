"""The service: one agent built from one configuration, run until SIGTERM/SIGINT.

`Service.start()` serves the agent's own telemetry, builds the graph and starts it
(exporters first, receivers last). On SIGTERM or SIGINT it stops intake, drains what is
buffered and exits within `service.shutdown_timeout`. Only this module runs the event loop
(uvloop when available); only `cli.py` calls `sys.exit`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any

from agent.config.model import AgentConfig
from agent.pipeline.graph import Graph
from agent.telemetry.health import Health
from agent.telemetry.metrics import AgentMetrics
from agent.telemetry.server import TelemetryServer
from agent.workers import telemetry_address

logger = logging.getLogger(__name__)


class Service:
    """One running agent."""

    def __init__(
        self, config: AgentConfig, *, metrics: AgentMetrics | None = None, worker_index: int | None = None
    ) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else AgentMetrics(process=True)
        self.health = Health(self.metrics)
        self.graph = Graph(config, self.metrics, self.health)
        # With `service.workers`, worker i serves its telemetry on the configured port + i.
        address = telemetry_address(config.service.telemetry.metrics.address, worker_index)
        self.telemetry = TelemetryServer(address, self.metrics, self.health)
        self._stop = asyncio.Event()
        self._shut = False

    async def start(self) -> None:
        """Serve telemetry, build and start the graph; raises StartError or ConfigError."""
        await self.telemetry.start()
        try:
            self.graph.build()
            await self.graph.start()
        except BaseException:
            await self.telemetry.shutdown()
            raise
        self.health.mark_started()
        logger.info(
            "Flowglass started.",
            extra={
                "pipelines": [str(p) for p in self.config.pipelines],
                "telemetry": self.config.service.telemetry.metrics.address or "off",
            },
        )

    def request_stop(self) -> None:
        """Ask `run()` to shut down (what SIGTERM and SIGINT do)."""
        self._stop.set()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop intake, drain, stop everything within `timeout` (default shutdown_timeout)."""
        if self._shut:
            return
        self._shut = True
        budget = self.config.service.shutdown_timeout if timeout is None else timeout
        started = time.monotonic()
        logger.info("Flowglass is shutting down.", extra={"timeout_s": float(budget)})
        self.health.mark_stopping()
        await self.graph.shutdown(deadline=started + budget)
        await self.telemetry.shutdown()
        logger.info("Flowglass stopped.", extra={"took_s": round(time.monotonic() - started, 3)})

    async def run(self) -> int:
        """Start, wait for SIGTERM/SIGINT (or `request_stop()`), shut down; the exit code."""
        await self.start()
        loop = asyncio.get_running_loop()
        installed: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        try:
            await self._stop.wait()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            await self.shutdown()
        return 0

    def _on_signal(self, sig: int) -> None:
        logger.info("Received a signal; shutting down.", extra={"signal": signal.Signals(sig).name})
        self._stop.set()


def run_loop(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run `main` on uvloop when it is installed, else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(main())
    return uvloop.run(main())
