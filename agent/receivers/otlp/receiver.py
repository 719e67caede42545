"""`OTLPReceiver`: the gRPC and HTTP servers of one `otlp` receiver, with one lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from agent.component import Consumer, Settings
from agent.model import Signal
from agent.receivers.otlp import OTLPReceiverConfig
from agent.receivers.otlp.intake import ErrorLog, Gate, SignalIntake, Transport

#: Seconds `shutdown()` waits for the consumes of requests in flight.
DEFAULT_GRACE = 5.0
#: Seconds the servers then get to write the last answers and close their connections.
CLOSE_GRACE = 1.0


class OTLPReceiver:
    """Serves OTLP for the signals in `consumers` on the enabled protocols.

    `reuse_port` lets several processes share the listening ports (`service.workers`);
    without it a port in use is a start error.
    """

    def __init__(
        self,
        settings: Settings,
        config: OTLPReceiverConfig,
        consumers: Mapping[Signal, Consumer],
        *,
        grace: float = DEFAULT_GRACE,
        reuse_port: bool = False,
    ) -> None:
        self._settings = settings
        self._config = config
        self._grace = grace
        self._gate = Gate()
        self._stopped = False
        self._stopping = asyncio.Lock()
        errors = ErrorLog(settings.logger)

        def intakes(transport: Transport) -> dict[Signal, SignalIntake]:
            return {
                signal: SignalIntake(settings, signal, transport, consumer, self._gate, errors)
                for signal, consumer in consumers.items()
            }

        # Each transport's module is imported only when it is configured (aiohttp costs ~10 MiB).
        if config.grpc is not None:
            from agent.receivers.otlp.grpc import OTLPGrpcServer
        if config.http is not None:
            from agent.receivers.otlp.http import OTLPHttpServer
        self._grpc = (
            OTLPGrpcServer(settings, config.grpc, intakes("grpc"), reuse_port=reuse_port)
            if config.grpc is not None
            else None
        )
        self._http = (
            OTLPHttpServer(settings, config.http, intakes("http"), grace=CLOSE_GRACE, reuse_port=reuse_port)
            if config.http is not None
            else None
        )

    @property
    def grpc_port(self) -> int | None:
        """The port gRPC listens on, once started (useful with `endpoint: 127.0.0.1:0`)."""
        return self._grpc.port if self._grpc is not None else None

    @property
    def http_port(self) -> int | None:
        """The port HTTP listens on, once started."""
        return self._http.port if self._http is not None else None

    async def start(self) -> None:
        """Bind and serve; raises `StartError` (a port in use, a certificate that does not load)."""
        if self._grpc is not None:
            await self._grpc.start()
        if self._http is not None:
            try:
                await self._http.start()
            except BaseException:
                if self._grpc is not None:
                    await self._grpc.stop(0.0)
                raise
        self._settings.logger.info(
            "The OTLP receiver is listening.",
            extra={
                "component": self._settings.label,
                "grpc_port": self.grpc_port,
                "http_port": self.http_port,
            },
        )

    async def stop_intake(self) -> None:
        """Refuse new requests (retryable) from now on; requests in flight carry on.

        The first step of `shutdown()`. A graph that calls it on every receiver before
        shutting down processors lets requests held by a processor (a batch waiting for its
        timeout) be answered when that processor flushes.
        """
        self._gate.close()

    async def shutdown(self) -> None:
        """Refuse new requests, let those in flight finish (bounded), then close the servers."""
        # A second call, even a concurrent one, returns once the first has finished.
        async with self._stopping:
            if self._stopped:
                return
            self._stopped = True
            await self.stop_intake()
            drained = await self._gate.drain(self._grace)
            if not drained:
                self._settings.logger.warning(
                    "Requests were still being processed when the OTLP receiver's shutdown grace "
                    "ended; their senders are told to retry.",
                    extra={
                        "component": self._settings.label,
                        "in_flight": self._gate.in_flight,
                        "grace_s": self._grace,
                    },
                )
            # Once the consumes ended the servers only write the last answers; after a grace
            # that ran out there is nothing left to wait for.
            if self._grpc is not None:
                await self._grpc.stop(CLOSE_GRACE if drained else 0.0)
            if self._http is not None:
                await self._http.stop()
