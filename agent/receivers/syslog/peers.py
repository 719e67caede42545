"""`add_attributes`: the `net.*` attributes the Collector's TCP and UDP inputs add.

`net.transport` (`IP.TCP` / `IP.UDP`), `net.peer.ip`, `net.peer.port`, `net.peer.name`,
`net.host.ip`, `net.host.port`, `net.host.name` — all strings, ports included; a name is
the reverse-DNS name of the address (without its trailing dot), or the address itself when
it has none. Names are looked up off the event loop and cached for five minutes, at most
`CACHE_SIZE` of them.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

from agent.receivers.syslog import wire

CACHE_SIZE = 4096
TTL = 300.0

Address = tuple[str, int]


Spawn = Callable[[str, Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


class Resolver:
    """Reverse-DNS names with a cache; lookups run as tasks made by `spawn` (a `TaskOwner`'s)."""

    def __init__(self, spawn: Spawn, clock: Callable[[], float] = time.monotonic) -> None:
        self._spawn = spawn
        self._clock = clock
        self._names: dict[str, tuple[str, float]] = {}
        self._pending: dict[str, asyncio.Task[str]] = {}

    def cached(self, ip: str) -> str | None:
        entry = self._names.get(ip)
        if entry is None or entry[1] < self._clock():
            return None
        return entry[0]

    async def name(self, ip: str) -> str:
        """The reverse-DNS name of `ip`, or `ip` itself."""
        found = self.cached(ip)
        if found is not None:
            return found
        return await asyncio.shield(self.prefetch(ip))

    def prefetch(self, ip: str) -> asyncio.Task[str]:
        """Start looking `ip` up (once, however often it is asked for); the lookup's task."""
        pending = self._pending.get(ip)
        if pending is None:
            pending = self._spawn("reverse-dns", self._lookup(ip))
            self._pending[ip] = pending
            pending.add_done_callback(lambda _: self._pending.pop(ip, None))
        return pending

    async def _lookup(self, ip: str) -> str:
        loop = asyncio.get_running_loop()
        try:
            host, _ = await loop.getnameinfo((ip, 0), socket.NI_NAMEREQD)
        except (OSError, UnicodeError):
            host = ip
        name = host.rstrip(".") or ip
        if len(self._names) >= CACHE_SIZE:
            self._names.clear()
        self._names[ip] = (name, self._clock() + TTL)
        return name


def net_attributes(transport: str, peer: Address, peer_name: str, local: Address, local_name: str) -> bytes:
    """The encoded `net.*` attributes of one peer."""
    return wire.string_attributes({
        "net.transport": transport,
        "net.peer.ip": peer[0],
        "net.peer.port": str(peer[1]),
        "net.peer.name": peer_name,
        "net.host.ip": local[0],
        "net.host.port": str(local[1]),
        "net.host.name": local_name,
    })
