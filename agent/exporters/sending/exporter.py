"""`QueuedExporter`: the shape every exporter that sends through the shared helper has.

A subclass opens its transport in `_open()`, sends one batch in `_send()` (raising
`PermanentError`, `RetryableError(retry_after=)` or any other exception for "later"), and
closes the transport in `_close()`. The base class owns the `Sender` (queue, retry, timeout,
counters) and the lifecycle: `start()` opens then starts the sender; `consume()` hands the
batch to the sender; `shutdown()` drains the sender, then closes the transport, once.
"""

from __future__ import annotations

from agent.component import Settings
from agent.config.types import Duration
from agent.exporters.sending.config import RetryConfig, SendingQueueConfig
from agent.exporters.sending.retry import SYSTEM_CLOCK, Clock
from agent.exporters.sending.sender import Sender
from agent.model import Batch


class QueuedExporter:
    mutates_data = False
    #: Encode a batch before queueing it, so the queue's byte bound reads a cached size and
    #: the send path forwards bytes. Exporters that send another encoding set this False.
    encode_on_submit = True

    def __init__(
        self,
        settings: Settings,
        *,
        sending_queue: SendingQueueConfig,
        retry_on_failure: RetryConfig,
        timeout: Duration,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._settings = settings
        self._started = False
        self._shut_down = False
        self.sender = Sender(
            settings,
            self._send,
            queue_config=sending_queue,
            retry_config=retry_on_failure,
            timeout=timeout,
            clock=clock,
        )

    async def _open(self) -> None:
        """Open the transport (channel, session, producer); raise StartError on failure."""

    async def _close(self) -> None:
        """Close the transport; called once, after the sender drained."""

    async def _send(self, batch: Batch) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        if self._started:
            return
        await self._open()
        self._started = True
        await self.sender.start()

    async def consume(self, batch: Batch) -> None:
        if self.encode_on_submit:
            batch.serialize()
        await self.sender.submit(batch)

    async def shutdown(self) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        try:
            await self.sender.shutdown()
        finally:
            if self._started:
                await self._close()
