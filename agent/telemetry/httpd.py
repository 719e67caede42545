"""A minimal HTTP/1.1 server on asyncio streams, for GET endpoints that serve metrics.

The agent's own `/metrics`, `/healthz`, `/readyz` and the `prometheus` exporter's `/metrics`
need no framework, and not loading one keeps an idle agent about 10 MiB smaller. Requests
are bounded (8 KiB of head, 10 s to send it); every response closes its connection.

`respond(method, path, headers)` returns `(status, content type, body)`; header names are
lower-case and the query string is cut from the path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Response = tuple[int, str, bytes]
Responder = Callable[[str, str, dict[str, str]], Response | Awaitable[Response]]

MAX_HEAD = 8 * 1024
HEAD_TIMEOUT = 10.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HTTPServer:
    """Serves `respond` on one address until `close()`."""

    def __init__(self, respond: Responder) -> None:
        self._respond = respond
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self.port: int | None = None

    async def start(self, host: str | None, port: int, *, reuse_port: bool = False) -> None:
        """Bind and serve; raises OSError when the address cannot be bound."""
        self._server = await asyncio.start_server(
            self._serve, host, port, reuse_address=True, reuse_port=reuse_port or None
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and end open connections; safe to call more than once."""
        server, self._server = self._server, None
        if server is None:
            return
        self.port = None
        server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=1.0)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            status, content_type, body = await self._answer(reader)
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> Response:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.LimitOverrunError:
            return 400, "text/plain", b"request head too large\n"
        if len(head) > MAX_HEAD:
            return 400, "text/plain", b"request head too large\n"
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return 400, "text/plain", b"bad request line\n"
        method, target, _ = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        result = self._respond(method, target.split("?", 1)[0], headers)
        if isinstance(result, Awaitable):
            return await result
        return result
