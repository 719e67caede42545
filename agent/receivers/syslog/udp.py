"""The syslog receiver's UDP listener: every datagram is one message.

Datagrams are gathered for up to `FLUSH_DELAY` seconds or `FLUSH_RECORDS` datagrams and
handed to the pipeline as one batch, on its own task. UDP cannot push back: a batch the
pipeline refuses is counted by reason and dropped, and a batch that would take the
in-flight records past the listener's `Budget` is dropped and counted `queue_full`.

With `add_attributes`, a peer's name is looked up on its first datagram; datagrams that
arrive before the answer carry the peer's address as `net.peer.name`.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from agent.component import Settings, TaskOwner
from agent.errors import StartError
from agent.receivers.syslog import UDPConfig, split_address
from agent.receivers.syslog.intake import Intake
from agent.receivers.syslog.peers import CACHE_SIZE, Address, Resolver, net_attributes

FLUSH_DELAY = 0.005
FLUSH_RECORDS = 1024


class UDPListener(asyncio.DatagramProtocol):
    def __init__(self, settings: Settings, config: UDPConfig, intake: Intake, owner: TaskOwner,
                 resolver: Resolver, *, reuse_port: bool = False) -> None:
        self.settings = settings
        self.config = config
        self.intake = intake
        self._owner = owner
        self._resolver = resolver
        self._reuse_port = reuse_port
        self._transport: asyncio.DatagramTransport | None = None
        self._local: Address = ("", 0)
        self._local_name = ""
        #: Datagrams waiting for the next flush, by their peer's attributes.
        self._pending: dict[bytes, list[bytes]] = {}
        self._pending_count = 0
        self._first_seen = 0
        self._timer: asyncio.TimerHandle | None = None
        self._peers: dict[Address, bytes] = {}
        self.reading = True
        #: The bound port, once started.
        self.port: int | None = None

    async def start(self) -> None:
        host, port = split_address(self.config.listen_address)
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: self, local_addr=(host or "0.0.0.0", port), reuse_port=self._reuse_port or None)
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartError(
                f"Receiver {self.settings.label} could not listen for syslog on UDP {self.config.listen_address}: {why}."
            ) from exc
        self._transport = transport
        sockname = transport.get_extra_info("sockname")
        self._local = (str(sockname[0]), int(sockname[1]))
        self.port = self._local[1]
        if self.config.add_attributes:
            self._local_name = await self._resolver.name(self._local[0])

    def stop_reading(self) -> None:
        """Take no more datagrams; hand over those already gathered."""
        if not self.reading:
            return
        self.reading = False
        self._flush()
        if self._transport is not None:
            self._transport.close()

    def close(self) -> None:
        self.stop_reading()

    # ---- asyncio.DatagramProtocol -----------------------------------------------------

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.reading:
            return
        attributes = self._attributes(addr) if self.config.add_attributes else b""
        if not self._pending_count:
            self._first_seen = time.time_ns()
            self._timer = asyncio.get_running_loop().call_later(FLUSH_DELAY, self._flush)
        group = self._pending.get(attributes)
        if group is None:
            group = self._pending[attributes] = []
        group.append(data)
        self._pending_count += 1
        if self._pending_count >= FLUSH_RECORDS:
            self._flush()

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on a listening socket say nothing about our data; nothing to do.
        return None

    # ---- delivering -------------------------------------------------------------------

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        self._pending_count = 0
        intake, budget = self.intake, self.intake.budget
        for attributes, frames in pending.items():
            encoded = intake.encode(frames, attributes, self._first_seen)
            if encoded is None:
                continue
            data, items = encoded
            if not budget.fits(items, len(data)):
                intake.refuse("queue_full", items)
                continue
            budget.take(items, len(data))
            self._owner.spawn("udp-deliver", self._deliver(data, items))

    async def _deliver(self, data: bytes, items: int) -> None:
        try:
            await self.intake.offer(data, items)
        finally:
            self.intake.budget.give(items, len(data))

    def _attributes(self, addr: Any) -> bytes:
        peer: Address = (str(addr[0]), int(addr[1]))
        cached = self._peers.get(peer)
        if cached is not None:
            return cached
        name = self._resolver.cached(peer[0])
        if name is None:
            # Not cached until the name is known, so later datagrams get it.
            self._resolver.prefetch(peer[0])
            return net_attributes("IP.UDP", peer, peer[0], self._local, self._local_name)
        attributes = net_attributes("IP.UDP", peer, name, self._local, self._local_name)
        if len(self._peers) >= CACHE_SIZE:
            self._peers.clear()
        self._peers[peer] = attributes
        return attributes
