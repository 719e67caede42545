"""Records the pipeline will never take, written to the dead-letter topic with the reason.

A dead letter keeps the record's key, value and headers, and adds
`flowglass.dead_letter.reason` (why: `poison: …` or `refused: …`) and
`flowglass.dead_letter.topic` / `.partition` / `.offset` (where it was read). The producer
is made on first use with the receiver's connection options.
"""

from __future__ import annotations

from typing import Any

from aiokafka.errors import BrokerResponseError

from agent.receivers.kafka import KafkaReceiverConfig

REASON_HEADER = "flowglass.dead_letter.reason"
SOURCE_HEADERS = ("flowglass.dead_letter.topic", "flowglass.dead_letter.partition", "flowglass.dead_letter.offset")
#: Longest reason kept in the header, in bytes.
MAX_REASON = 4096


def is_permanent(error: BaseException) -> bool:
    """A broker answer that writing again cannot change (not authorized, invalid topic, ...)."""
    return isinstance(error, BrokerResponseError) and not error.retriable


def dead_letter_headers(record: Any, reason: str) -> list[tuple[str, bytes]]:
    source = (record.topic.encode(), str(record.partition).encode(), str(record.offset).encode())
    return [*list(record.headers or ()), (REASON_HEADER, reason.encode()[:MAX_REASON]),
            *zip(SOURCE_HEADERS, source, strict=True)]


class DeadLetterWriter:
    """Writes dead letters to `config.dead_letter_topic`; errors are the caller's to retry or count."""

    def __init__(self, config: KafkaReceiverConfig, producer_factory: Any) -> None:
        self._config = config
        self._factory = producer_factory
        self._producer: Any = None

    async def write(self, record: Any, reason: str) -> None:
        """Write one record and wait for the broker's acknowledgement."""
        producer = await self._started()
        await producer.send_and_wait(self._config.dead_letter_topic, record.value or b"", key=record.key,
                                     headers=dead_letter_headers(record, reason))

    async def _started(self) -> Any:
        if self._producer is None:
            producer = self._factory(**self._config.client_options())
            try:
                await producer.start()
            except BaseException:
                await _stop_quietly(producer)
                raise
            self._producer = producer
        return self._producer

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _stop_quietly(producer)


async def _stop_quietly(client: Any) -> None:
    try:
        await client.stop()
    except Exception:  # a producer that never connected may fail to stop: nothing is lost
        pass
