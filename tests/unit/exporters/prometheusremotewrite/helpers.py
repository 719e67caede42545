"""A remote write server double on loopback: decodes every request and answers as scripted."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

import cramjam
from aiohttp import web

from agent._proto.prometheus import remote_pb2

#: (request) → (status, body, headers) or None for 204.
Responder = Callable[[remote_pb2.WriteRequest], "tuple[int, str, dict[str, str]] | None"]


@dataclass
class RemoteWriteServer:
    responder: Responder | None = None
    requests: list[remote_pb2.WriteRequest] = field(default_factory=list)
    accepted: list[remote_pb2.WriteRequest] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""
    ssl_context: ssl.SSLContext | None = None
    #: When set, every answer waits until the event is set (to hold requests in flight).
    gate: asyncio.Event | None = None
    #: Set when the first request has arrived.
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> RemoteWriteServer:
        app = web.Application()
        app.router.add_post("/api/v1/write", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        scheme = "https" if self.ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{port}/api/v1/write"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        message = remote_pb2.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
        self.requests.append(message)
        self.headers.append(dict(request.headers))
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        answer = self.responder(message) if self.responder else None
        if answer is None:
            self.accepted.append(message)
            return web.Response(status=204)
        status, text, headers = answer
        return web.Response(status=status, text=text, headers=headers)

    def accepted_samples(self) -> dict[str, list[tuple[int, float]]]:
        """`name{labels}` → [(timestamp, value)] over every accepted request, in arrival order."""
        out: dict[str, list[tuple[int, float]]] = {}
        for req in self.accepted:
            for ts in req.timeseries:
                key = series_key(ts)
                out.setdefault(key, []).extend((s.timestamp, s.value) for s in ts.samples)
        return out


def series_key(ts: object) -> str:
    labels = {lb.name: lb.value for lb in ts.labels}  # type: ignore[attr-defined]
    name = labels.pop("__name__", "")
    return name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"
