"""List-then-watch of one kind of Kubernetes object, kept in a store.

`Informer.run()` lists the objects (replacing the store), then watches from the list's
resourceVersion, applying ADDED / MODIFIED / DELETED events and following BOOKMARKs. When
the server ends a watch (its timeout), the next one starts from the last version seen. A
`410 Gone` lists again at once; any other failure waits (0.5s doubling to 30s) and lists
again. `synced` is set after the first complete list.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from agent.processors.k8sattributes.client import KubeApi, KubeApiError, ResourceExpired

_WATCH_SECONDS = "290"


class Store(Protocol):
    def replace(self, objects: list[dict[str, Any]]) -> None: ...

    def upsert(self, obj: dict[str, Any]) -> None: ...

    def delete(self, obj: dict[str, Any]) -> None: ...


class Informer:
    def __init__(
        self, api: KubeApi, path: str, params: Mapping[str, str], store: Store, logger: logging.Logger, label: str,
        *, max_backoff: float = 30.0,
    ) -> None:
        self._api = api
        self.path = path
        self._params = dict(params)
        self._store = store
        self._logger = logger
        self._label = label
        self._max_backoff = max_backoff
        self.synced = asyncio.Event()
        self.lists = 0
        self.relists_after_gone = 0

    async def run(self) -> None:
        import aiohttp

        delay = 0.5
        failing = False
        while True:
            try:
                version = await self._list()
                if failing:
                    self._logger.info("The Kubernetes API answers again.", extra={"component": self._label, "path": self.path})
                    failing = False
                delay = 0.5
                while True:
                    version, events = await self._watch(version)
                    if events == 0:
                        # A watch that ends without a single event (not even a bookmark)
                        # would otherwise be reopened in a tight loop.
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, self._max_backoff)
                    else:
                        delay = 0.5
            except ResourceExpired:
                self.relists_after_gone += 1
                self._logger.info(
                    "The watch's resource version expired (410 Gone); listing again.",
                    extra={"component": self._label, "path": self.path},
                )
            except (TimeoutError, KubeApiError, aiohttp.ClientError, OSError, ValueError) as exc:
                if not failing:
                    self._logger.warning(
                        "Cannot list or watch the Kubernetes API; retrying with back-off. Batches keep "
                        "the metadata known so far.",
                        extra={"component": self._label, "path": self.path, "error": str(exc) or repr(exc)},
                    )
                    failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)

    async def _list(self) -> str:
        doc = await self._api.list(self.path, self._params)
        self._store.replace(list(doc.get("items") or []))
        self.lists += 1
        self.synced.set()
        return str((doc.get("metadata") or {}).get("resourceVersion", ""))

    async def _watch(self, version: str) -> tuple[str, int]:
        """Apply one watch's events; (the last resource version seen, how many events)."""
        events = 0
        params = {**self._params, "timeoutSeconds": _WATCH_SECONDS}
        if version:
            params["resourceVersion"] = version
        async for event in self._api.watch(self.path, params):
            events += 1
            obj = event.get("object") or {}
            kind = event.get("type")
            new_version = (obj.get("metadata") or {}).get("resourceVersion")
            if kind in ("ADDED", "MODIFIED"):
                self._store.upsert(obj)
            elif kind == "DELETED":
                self._store.delete(obj)
            if new_version:
                version = str(new_version)
        return version, events
