"""The agent's own HTTP endpoint: `/metrics`, `/healthz` and `/readyz` (DESIGN §6).

Served by aiohttp on `service.telemetry.metrics.address` (default `127.0.0.1:8888`; an
empty address turns the server off).

- `GET /metrics`: the agent's metrics registry in the Prometheus text format (or
  OpenMetrics when the scraper asks for it in `Accept`). Rendering a registry of a few
  hundred series takes well under a millisecond, so it runs on the loop.
- `GET /healthz`: 200 `{"status": "ok"}` for as long as the event loop answers (a stuck
  loop does not answer at all, which is what a liveness probe detects).
- `GET /readyz`: 200 with the health snapshot while the agent is ready, else 503 with the
  snapshot naming each component that is not ok and why.

`start()` raises `StartError` with a sentence when the address cannot be bound;
`shutdown()` is idempotent.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from agent.errors import StartError
from agent.telemetry.health import Health
from agent.telemetry.metrics import AgentMetrics

logger = logging.getLogger(__name__)


def parse_address(address: str) -> tuple[str | None, int]:
    """`host:port`, `[v6]:port` or `:port` → (host or None for every interface, port)."""
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise ValueError(f"expected host:port, got {address!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"expected host:port with a numeric port, got {address!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"the port must be between 0 and 65535, got {port}")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (host or None), port


class TelemetryServer:
    """Serves the agent's metrics and health probes until `shutdown()`."""

    def __init__(self, address: str, metrics: AgentMetrics, health: Health) -> None:
        self.address = address
        self._metrics = metrics
        self._health = health
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0); only valid after `start()`."""
        if self._port is None:
            raise RuntimeError("the telemetry server is not listening")
        return self._port

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._handle_metrics)
        app.router.add_get("/healthz", self._handle_healthz)
        app.router.add_get("/readyz", self._handle_readyz)
        return app

    async def start(self) -> None:
        """Bind and serve; does nothing when the address is empty."""
        if not self.enabled or self._runner is not None:
            return
        try:
            host, port = parse_address(self.address)
        except ValueError as exc:
            raise StartError(f"The telemetry address {self.address!r} is not valid: {exc}.") from None
        # No access log: probes hit these routes every few seconds.
        runner = web.AppRunner(self._app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            reason = exc.strerror or str(exc)
            raise StartError(
                f"The telemetry server cannot listen on {self.address}: {reason}. "
                "Change service.telemetry.metrics.address or stop whatever uses that port."
            ) from exc
        self._runner = runner
        addresses: list[Any] = list(runner.addresses)
        self._port = int(addresses[0][1]) if addresses else port
        logger.info(
            "The telemetry server is listening.",
            extra={"address": self.address, "port": self._port},
        )

    async def shutdown(self) -> None:
        """Stop serving; safe to call more than once."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._port = None
        await runner.cleanup()

    async def _handle_metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _handle_healthz(self, request: web.Request) -> web.Response:
        if self._health.alive:
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "stopped"}, status=503)

    async def _handle_readyz(self, request: web.Request) -> web.Response:
        snapshot = self._health.snapshot()
        return web.json_response(snapshot, status=200 if self._health.ready else 503)
