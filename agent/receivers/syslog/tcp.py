"""The syslog receiver's TCP (and TLS) listener: one framer and one protocol per connection.

Each read is framed, encoded and handed to the pipeline as one batch, on its own task, so
that a fast sender keeps several batches in flight (the `batch` processor answers only
once a merged batch is out). A connection stops reading — and the sender's writes stall in
TCP — while one of its batches is being retried, while it has `MAX_IN_FLIGHT_PER_CONNECTION`
records (or `MAX_IN_FLIGHT_BYTES_PER_CONNECTION` bytes) in flight, or while the listener has
its `Budget` in flight. Connections beyond `max_connections` are closed as they come and
counted; a connection idle for `connection_idle_timeout` (nothing read, nothing in flight)
is closed. TLS handshakes are asyncio's (a failed one closes the connection; nothing is
read from it).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from typing import Any, cast

from agent.component import Settings, TaskOwner
from agent.errors import StartError
from agent.receivers.syslog import SyslogConfig, TCPConfig, split_address
from agent.receivers.syslog.framing import Auto, Framer, OctetCounting, Trailer, Whole
from agent.receivers.syslog.intake import (
    MAX_IN_FLIGHT_BYTES_PER_CONNECTION,
    MAX_IN_FLIGHT_PER_CONNECTION,
    Intake,
)
from agent.receivers.syslog.peers import Resolver, net_attributes

_TRAILERS = {"LF": b"\n", "NUL": b"\0"}


class TCPListener:
    """The listening socket, its connections, and what they share (framing, intake, tasks)."""

    def __init__(self, settings: Settings, config: TCPConfig, syslog: SyslogConfig, intake: Intake,
                 owner: TaskOwner, resolver: Resolver, *, reuse_port: bool = False) -> None:
        self.settings = settings
        self.config = config
        self.intake = intake
        self.owner = owner
        self.resolver = resolver
        self._syslog = syslog
        self._reuse_port = reuse_port
        self._server: asyncio.Server | None = None
        self.connections: set[Connection] = set()
        self.reading = True
        self._idle_check: asyncio.Task[None] | None = None
        #: The bound port, once started.
        self.port: int | None = None

    def framer(self) -> Framer:
        syslog, tcp = self._syslog, self.config
        if tcp.one_log_per_packet:
            return Whole(tcp.max_log_size)
        if syslog.enable_octet_counting:
            return OctetCounting(syslog.max_octets)
        if syslog.non_transparent_framing_trailer is not None:
            return Trailer(_TRAILERS[syslog.non_transparent_framing_trailer], tcp.max_log_size)
        return Auto(syslog.max_octets, tcp.max_log_size)

    @property
    def full(self) -> bool:
        limit = self.config.max_connections
        return bool(limit) and len(self.connections) >= limit

    async def start(self) -> None:
        label = self.settings.label
        context: ssl.SSLContext | None = None
        if self.config.tls is not None:
            try:
                context = self.config.tls.ssl_context()
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise StartError(f"Receiver {label} could not load its TLS certificate, key or client CA: {exc}.") from exc
        host, port = split_address(self.config.listen_address)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: Connection(self), host or None, port, ssl=context, backlog=1024,
                reuse_port=self._reuse_port or None)
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartError(f"Receiver {label} could not listen for syslog on TCP {self.config.listen_address}: {why}.") from exc
        self.port = int(self._server.sockets[0].getsockname()[1])
        if self.config.connection_idle_timeout > 0:
            self._idle_check = self.owner.spawn(
                "tcp-idle-check", self._close_idle(float(self.config.connection_idle_timeout)))

    def stop_reading(self) -> None:
        """Accept no more connections and read no more from the open ones."""
        self.reading = False
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.update_reading()

    def close(self) -> None:
        """Close every connection (what they still buffer is counted as lost)."""
        self.stop_reading()
        if self._idle_check is not None:
            self._idle_check.cancel()
        for connection in list(self.connections):
            connection.close()

    async def _close_idle(self, timeout: float) -> None:
        while True:
            await asyncio.sleep(min(timeout / 2, 1.0))
            deadline = time.monotonic() - timeout
            for connection in list(self.connections):
                if connection.idle_since(deadline):
                    connection.close()


class Connection(asyncio.Protocol):
    """One TCP connection: frames its bytes and delivers a batch per read."""

    def __init__(self, listener: TCPListener) -> None:
        self._listener = listener
        self._intake = listener.intake
        self._framer = listener.framer()
        self._transport: asyncio.Transport | None = None
        self._attributes = b""
        self._in_flight = 0
        self._in_flight_bytes = 0
        self._held = 0
        self._resolving = False
        self._early: list[bytes] = []
        self._finish_after_resolving = False
        self._paused = False
        self._finished = False
        self._last_active = time.monotonic()

    # ---- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have the methods but are not asyncio.Transport subclasses.
        transport = cast(asyncio.Transport, transport)
        listener = self._listener
        if listener.full or not listener.reading:
            if listener.full:
                self._intake.refuse_request("too_many_connections")
            transport.abort()
            return
        self._transport = transport
        listener.connections.add(self)
        if listener.config.add_attributes:
            self._resolving = True
            self.update_reading()
            listener.owner.spawn("tcp-peer-names", self._resolve(transport))

    def data_received(self, data: bytes) -> None:
        self._last_active = time.monotonic()
        if self._resolving:
            # uvloop may deliver a first read although reading was paused in connection_made.
            self._early.append(data)
            return
        framer = self._framer
        frames = framer.feed(data)
        if framer.errors:
            self._intake.count_errors(framer.errors.items())
            framer.errors.clear()
        if frames:
            self._dispatch(frames)
        if framer.fatal:
            self.close()

    def eof_received(self) -> bool:
        self._finish()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._finish()
        self._listener.connections.discard(self)
        self._intake.budget.forget(self.update_reading)

    # ---- reading and delivering -------------------------------------------------------

    def _finish(self) -> None:
        if self._finished or self._transport is None:
            return
        if self._resolving:
            self._finish_after_resolving = True
            return
        self._finished = True
        framer = self._framer
        frames = framer.finish()
        if framer.errors:
            self._intake.count_errors(framer.errors.items())
            framer.errors.clear()
        if frames and not self._listener.reading:
            # Closed by the receiver's shutdown: the pipeline takes nothing new any more.
            self._intake.refuse("shutting_down", len(frames))
        elif frames:
            self._dispatch(frames)

    def _dispatch(self, frames: list[bytes]) -> None:
        encoded = self._intake.encode(frames, self._attributes)
        if encoded is None:
            return
        data, items = encoded
        self._in_flight += items
        self._in_flight_bytes += len(data)
        self._intake.budget.take(items, len(data))
        self._listener.owner.spawn("tcp-deliver", self._deliver(data, items))
        self.update_reading()

    async def _deliver(self, data: bytes, items: int) -> None:
        try:
            await self._intake.deliver(data, items, self._hold)
        finally:
            self._in_flight -= items
            self._in_flight_bytes -= len(data)
            self._intake.budget.give(items, len(data))
            self.update_reading()

    def _hold(self, on: bool) -> None:
        self._held += 1 if on else -1
        self.update_reading()

    def update_reading(self) -> None:
        """Pause or resume reading to match the connection's and the listener's state."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        budget = self._intake.budget
        pause = (not self._listener.reading or self._held > 0 or self._resolving
                 or self._in_flight >= MAX_IN_FLIGHT_PER_CONNECTION
                 or self._in_flight_bytes >= MAX_IN_FLIGHT_BYTES_PER_CONNECTION or budget.full)
        if pause and not self._paused:
            transport.pause_reading()
            self._paused = True
        elif not pause and self._paused:
            transport.resume_reading()
            self._paused = False
        if self._paused and budget.full:
            budget.wait(self.update_reading)

    async def _resolve(self, transport: asyncio.Transport) -> None:
        peer = _address(transport.get_extra_info("peername"))
        local = _address(transport.get_extra_info("sockname"))
        resolver = self._listener.resolver
        try:
            peer_name = await resolver.name(peer[0])
            local_name = await resolver.name(local[0])
            self._attributes = net_attributes("IP.TCP", peer, peer_name, local, local_name)
        finally:
            self._resolving = False
            early, self._early = self._early, []
            for data in early:
                self.data_received(data)
            if self._finish_after_resolving:
                self._finish()
            self.update_reading()

    # ---- lifecycle --------------------------------------------------------------------

    def idle_since(self, deadline: float) -> bool:
        """Whether nothing was read since `deadline` and nothing is in flight."""
        return self._last_active < deadline and not self._in_flight and not self._paused

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()


def _address(info: Any) -> tuple[str, int]:
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return "", 0
