"""A local Kubernetes API server that serves recorded responses (`fixtures/`).

Lists are answered from a per-path sequence of documents (the last one repeats). A watch
takes its lines from a per-path queue the test feeds: bytes are written to the stream,
`None` ends the stream (as the server's watch timeout does), an int answers a fresh watch
request with that HTTP status. Every request is recorded with its query and whether it
carried the expected bearer token.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def watch_lines(name: str) -> list[bytes]:
    return [line.encode() + b"\n" for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


class FakeKubeApi:
    def __init__(self, token: str = "") -> None:
        self.token = token
        self.lists: dict[str, list[Any]] = defaultdict(list)
        self.watches: dict[str, asyncio.Queue[bytes | int | None]] = defaultdict(asyncio.Queue)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.waiting: dict[str, int] = defaultdict(int)
        self.list_gate: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        # End every watch still waiting for a line (one None each), so cleanup is immediate.
        for path, q in self.watches.items():
            for _ in range(self.waiting[path] + 1):
                q.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()

    def list_count(self, path: str) -> int:
        return sum(1 for p, q in self.requests if p == path and "watch" not in q)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        query = dict(request.query)
        self.requests.append((path, query))
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401}, status=401)
        if "watch" not in query:
            if self.list_gate is not None:
                await self.list_gate.wait()
            answers = self.lists.get(path)
            if not answers:
                return web.json_response({"kind": "Status", "reason": "NotFound", "code": 404}, status=404)
            doc = answers.pop(0) if len(answers) > 1 else answers[0]
            return web.json_response(doc)
        queue = self.watches[path]
        self.waiting[path] += 1
        try:
            return await self._stream(request, queue)
        finally:
            self.waiting[path] -= 1

    async def _stream(self, request: web.Request, queue: asyncio.Queue[bytes | int | None]) -> web.StreamResponse:
        item = await queue.get()
        if isinstance(item, int):
            return web.json_response({"kind": "Status", "status": "Failure", "reason": "Expired", "code": item}, status=item)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await resp.prepare(request)
            while item is not None:
                assert isinstance(item, bytes)
                await resp.write(item)
                item = await queue.get()
                if isinstance(item, int):
                    break
        except ConnectionError:  # the client went away (the processor shut down)
            pass
        return resp
