"""The agent's own HTTP endpoint: `/metrics`, `/healthz` and `/readyz` (DESIGN §6).

Served on `service.telemetry.metrics.address` (default `127.0.0.1:8888`; an empty address
turns the server off) by a small HTTP/1.1 server on asyncio streams: three GET routes need
no framework, and not loading one keeps an idle agent about 10 MiB smaller. Requests are
bounded (8 KiB of head, 10 s to send it) and every response closes the connection.

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

import json
import logging
from typing import Any

from prometheus_client.exposition import choose_encoder

from agent.errors import StartError
from agent.telemetry.health import Health
from agent.telemetry.httpd import HTTPServer, Response
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
        self._http: HTTPServer | None = None
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

    async def start(self) -> None:
        """Bind and serve; does nothing when the address is empty."""
        if not self.enabled or self._http is not None:
            return
        try:
            host, port = parse_address(self.address)
        except ValueError as exc:
            raise StartError(f"The telemetry address {self.address!r} is not valid: {exc}.") from None
        http = HTTPServer(self._respond)
        try:
            await http.start(host, port)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StartError(
                f"The telemetry server cannot listen on {self.address}: {reason}. "
                "Change service.telemetry.metrics.address or stop whatever uses that port."
            ) from exc
        self._http = http
        self._port = http.port
        logger.info(
            "The telemetry server is listening.",
            extra={"address": self.address, "port": self._port},
        )

    async def shutdown(self) -> None:
        """Stop serving; safe to call more than once."""
        http, self._http = self._http, None
        if http is None:
            return
        self._port = None
        await http.close()

    def _respond(self, method: str, path: str, headers: dict[str, str]) -> Response:
        if path not in ("/metrics", "/healthz", "/readyz"):
            return 404, "text/plain", b"not found: try /metrics, /healthz or /readyz\n"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET is allowed\n"
        if path == "/metrics":
            encoder, content_type = choose_encoder(headers.get("accept", ""))
            return 200, content_type, encoder(self._metrics.registry)
        if path == "/healthz":
            alive = self._health.alive
            return (200 if alive else 503), "application/json", _json({"status": "ok" if alive else "stopped"})
        return (200 if self._health.ready else 503), "application/json", _json(self._health.snapshot())


def _json(doc: Any) -> bytes:
    return json.dumps(doc).encode()
