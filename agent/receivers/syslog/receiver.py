"""`SyslogReceiver`: the TCP and UDP listeners of one `syslog` receiver, with one lifecycle."""

from __future__ import annotations

import asyncio

from agent.component import Consumer, Settings, TaskOwner
from agent.receivers.syslog import SyslogConfig
from agent.receivers.syslog.intake import Intake, RateLimitedLog
from agent.receivers.syslog.peers import Resolver
from agent.receivers.syslog.record import RecordEncoder
from agent.receivers.syslog.tcp import TCPListener
from agent.receivers.syslog.udp import UDPListener

#: Seconds `shutdown()` waits for the records in flight.
DEFAULT_GRACE = 5.0


class SyslogReceiver:
    """Serves syslog on the configured transports; `reuse_port` lets workers share the ports."""

    def __init__(self, settings: Settings, config: SyslogConfig, consumer: Consumer, *,
                 grace: float = DEFAULT_GRACE, reuse_port: bool = False) -> None:
        self._settings = settings
        self._grace = grace
        self._owner = TaskOwner(settings.label, settings.logger, settings.report_status)
        self._stopped = False
        self._stopping = asyncio.Lock()
        log = RateLimitedLog(settings.logger)
        quiet = config.on_error.endswith("_quiet")
        resolver = Resolver(self._owner.spawn)
        self.intakes: list[Intake] = []
        self._tcp: TCPListener | None = None
        self._udp: UDPListener | None = None
        if config.tcp is not None:
            encoder = RecordEncoder(config, preserve_leading=config.tcp.preserve_leading_whitespaces,
                                    preserve_trailing=config.tcp.preserve_trailing_whitespaces)
            intake = Intake(settings, "tcp", consumer, encoder, log, quiet=quiet)
            self._tcp = TCPListener(settings, config.tcp, config, intake, self._owner, resolver,
                                    reuse_port=reuse_port)
            self.intakes.append(intake)
        if config.udp is not None:
            encoder = RecordEncoder(config, preserve_leading=config.udp.preserve_leading_whitespaces,
                                    preserve_trailing=config.udp.preserve_trailing_whitespaces)
            intake = Intake(settings, "udp", consumer, encoder, log, quiet=quiet)
            self._udp = UDPListener(settings, config.udp, intake, self._owner, resolver, reuse_port=reuse_port)
            self.intakes.append(intake)

    @property
    def tcp_port(self) -> int | None:
        """The TCP port, once started (useful with `listen_address: 127.0.0.1:0`)."""
        return self._tcp.port if self._tcp is not None else None

    @property
    def udp_port(self) -> int | None:
        return self._udp.port if self._udp is not None else None

    async def start(self) -> None:
        """Bind and serve; raises `StartError` (a port in use, a certificate that does not load)."""
        if self._tcp is not None:
            await self._tcp.start()
        if self._udp is not None:
            try:
                await self._udp.start()
            except BaseException:
                if self._tcp is not None:
                    self._tcp.close()
                await self._owner.close(1.0)
                raise
        self._settings.logger.info(
            "The syslog receiver is listening.",
            extra={"component": self._settings.label, "tcp_port": self.tcp_port, "udp_port": self.udp_port},
        )

    async def stop_intake(self) -> None:
        """Take no new connections and read nothing more; batches in flight carry on.

        The first step of `shutdown()`; the graph calls it on every receiver before it shuts
        down the processors, whose flushes answer the batches in flight.
        """
        if self._tcp is not None:
            self._tcp.stop_reading()
        if self._udp is not None:
            self._udp.stop_reading()

    async def shutdown(self) -> None:
        """Stop intake, wait (bounded) for the batches in flight, then close every connection."""
        async with self._stopping:
            if self._stopped:
                return
            self._stopped = True
            await self.stop_intake()
            for intake in self.intakes:
                intake.closing = True
            if self._tcp is not None:
                self._tcp.close()
            drained = await self._owner.wait(self._grace)
            if not drained:
                self._settings.logger.warning(
                    "Syslog records were still being delivered when the receiver's shutdown grace "
                    "ended; they are counted as refused (shutting_down).",
                    extra={"component": self._settings.label, "grace_s": self._grace},
                )
            await self._owner.close(1.0)
            if self._udp is not None:
                self._udp.close()
