"""`KafkaExporter`: the records of each batch through one aiokafka producer, behind the sending queue."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import BrokerResponseError, KafkaError, MessageSizeTooLargeError, RecordTooLargeError
from aiokafka.partitioner import DefaultPartitioner

from agent.component import Settings
from agent.config.kafka import quiet_client_logs
from agent.errors import PermanentError, RetryableError
from agent.exporters.kafka import KafkaExporterConfig
from agent.exporters.kafka.records import Built, Record, RecordBuilder, SaramaPartitioner
from agent.exporters.sending import SYSTEM_CLOCK, Clock, QueuedExporter
from agent.model import Batch, Signal

quiet_client_logs()

#: Seconds `shutdown()` gives the producer to deliver what it still holds.
PRODUCER_CLOSE_GRACE = 5.0

ProducerFactory = Callable[..., Any]


class OutgoingBatch(Batch):
    """A batch on its way to Kafka: the records it became, kept across retries.

    Only the sending helper sees it, and it reads the signal, the item count and the size;
    the records are the content (the wrapped batch is not kept, so a split batch is held once).
    """

    __slots__ = ("built",)

    def __init__(self, signal: Signal, built: Built, items: int) -> None:
        super().__init__(signal, data=b"", items=items)
        self.built = built

    @property
    def nbytes(self) -> int:
        return sum(len(r.value) for r in self.built.records)


def is_permanent(error: BaseException) -> bool:
    """A producer error that sending again cannot fix (too large, not authorized, invalid)."""
    if isinstance(error, (MessageSizeTooLargeError, RecordTooLargeError)):
        return True
    return isinstance(error, BrokerResponseError) and not error.retriable


class KafkaExporter(QueuedExporter):
    """Produces every signal through one producer; see the package doc for the guarantees.

    `producer_factory` (tests) replaces `AIOKafkaProducer`; `clock` is the retry clock.
    """

    #: `consume` turns a batch into records itself (one per trace, resource, ...).
    encode_on_submit = False

    def __init__(self, settings: Settings, config: KafkaExporterConfig, *, clock: Clock = SYSTEM_CLOCK,
                 producer_factory: ProducerFactory = AIOKafkaProducer) -> None:
        super().__init__(
            settings,
            sending_queue=config.sending_queue,
            retry_on_failure=config.retry_on_failure,
            timeout=config.timeout,
            clock=clock,
        )
        self._config = config
        self._builder = RecordBuilder(config)
        self._factory = producer_factory
        self._producer: Any = None
        self._connecting: asyncio.Lock | None = None
        self._unreachable = False
        #: An attempt stops waiting for acknowledgements a little before the sender's timeout,
        #: so that a silent broker is noticed (and logged) here.
        self._ack_wait = float(config.timeout) * 0.9 if config.timeout > 0 else None
        m, label = settings.metrics, settings.label
        self._too_large = {s: m.exporter_failed.labels(label, s.value, "message_too_large") for s in Signal}

    async def _open(self) -> None:
        """Nothing to connect yet: the producer connects with the first send (the brokers may be down)."""
        self._connecting = asyncio.Lock()
        self._settings.logger.info(
            "The Kafka exporter started.",
            extra={"component": self._settings.label, **self._config.describe()},
        )

    async def consume(self, batch: Batch) -> None:
        """Queue the batch's records; items too large for one record are refused (partially)."""
        built = self._builder.build(batch)
        items = batch.items - built.too_large_items
        if built.too_large_items:
            self._count_too_large(batch, built.too_large_items)
        if built.records:
            await self.sender.submit(OutgoingBatch(batch.signal, built, items))
        if built.too_large_items:
            raise PermanentError(
                f"{built.too_large_items} items are each larger than producer.max_message_bytes "
                f"({self._config.producer.max_message_bytes} bytes) and were not sent",
                rejected=built.too_large_items,
            )

    # ---- sending ----------------------------------------------------------------------------

    async def _send(self, batch: Batch) -> None:
        assert isinstance(batch, OutgoingBatch)
        producer = await self._connected()
        records = [r for r in batch.built.records if not (r.delivered or r.rejected)]
        reason = ""
        for record in records:
            if record.future is not None and not _failed(record.future):
                continue  # acknowledged, or still in flight from the last attempt
            try:
                record.future = await producer.send(
                    record.topic, record.value, key=record.key, headers=record.headers
                )
            except Exception as exc:
                if not is_permanent(exc):
                    raise RetryableError(f"the producer did not take a record: {exc!r}") from None
                record.rejected, record.future, reason = True, None, str(exc)
        futures = [r.future for r in records if r.future is not None]
        if futures:
            # `asyncio.wait` leaves the futures alone when the attempt ends early: a record
            # still in flight is awaited again by the next attempt rather than sent twice.
            _, pending = await asyncio.wait(futures, timeout=self._ack_wait)
            if pending:
                self._report_unreachable(TimeoutError(f"no acknowledgement within {self._ack_wait:g}s"))
                raise RetryableError(f"{len(pending)} of {len(records)} records were not acknowledged in time")
        self._settle(batch, records, reason)

    def _settle(self, batch: OutgoingBatch, records: list[Record], reason: str) -> None:
        retry: BaseException | None = None
        for record in records:
            if record.rejected:
                continue
            future = record.future
            error = RetryableError("the producer dropped the record") if future.cancelled() else future.exception()
            if error is None:
                record.delivered = True
            elif is_permanent(error):
                record.rejected, reason = True, str(error)
            elif retry is None:
                retry = error
        if retry is not None:
            waiting = sum(1 for r in records if not (r.delivered or r.rejected))
            raise RetryableError(f"{waiting} of {len(records)} records were not acknowledged: {retry!r}")
        self._report_reachable()
        rejected = sum(r.items for r in batch.built.records if r.rejected)
        if rejected:
            raise PermanentError(f"the broker refused records: {reason}", rejected=rejected)

    async def _connected(self) -> Any:
        """The started producer; raises `RetryableError` while the brokers cannot be reached."""
        if self._producer is not None:
            return self._producer
        assert self._connecting is not None, "start() was not called"
        async with self._connecting:
            if self._producer is not None:
                return self._producer
            producer = self._new_producer()
            try:
                await producer.start()
            except BaseException as exc:
                await _stop_quietly(producer)
                if isinstance(exc, KafkaError | OSError):
                    self._report_unreachable(exc)
                    raise RetryableError(f"cannot reach the Kafka brokers: {exc!r}") from None
                raise
            self._producer = producer
            self._report_reachable()
            return producer

    def _new_producer(self) -> Any:
        config = self._config
        try:
            options = config.client_options()
        except (OSError, ssl.SSLError) as exc:
            raise PermanentError(f"cannot load the Kafka TLS files: {exc}") from exc
        hasher = config.record_partitioner.sticky_key.hasher
        return self._factory(
            **options,
            acks=config.producer.acks,
            compression_type=None if config.producer.compression == "none" else config.producer.compression,
            linger_ms=int(config.producer.linger * 1000),
            max_request_size=int(config.producer.max_broker_write_bytes),
            # One record of up to max_message_bytes fits a partition's batch, and small records share it.
            max_batch_size=max(16384, config.producer.max_message_bytes),
            partitioner=SaramaPartitioner() if hasher == "sarama_compat" else DefaultPartitioner(),
        )

    def _report_unreachable(self, exc: BaseException) -> None:
        if self._unreachable:
            return
        self._unreachable = True
        self._settings.logger.warning(
            "The Kafka exporter cannot reach its brokers; batches wait in the sending queue and are retried.",
            extra={"component": self._settings.label, "error": repr(exc), **self._config.describe()},
        )

    def _report_reachable(self) -> None:
        if not self._unreachable:
            return
        self._unreachable = False
        self._settings.logger.info(
            "The Kafka exporter reaches its brokers again; queued batches are being sent.",
            extra={"component": self._settings.label, **self._config.describe()},
        )

    def _count_too_large(self, batch: Batch, items: int) -> None:
        self._too_large[batch.signal].inc(items)
        self._settings.logger.error(
            "Items larger than producer.max_message_bytes were dropped.",
            extra={"component": self._settings.label, "signal": batch.signal.value, "items": items,
                   "max_message_bytes": self._config.producer.max_message_bytes},
        )

    async def _close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            await asyncio.wait_for(producer.stop(), PRODUCER_CLOSE_GRACE)
        except (TimeoutError, KafkaError, OSError) as exc:
            self._settings.logger.warning(
                "The Kafka producer did not close cleanly; records it still held may be lost.",
                extra={"component": self._settings.label, "error": repr(exc)},
            )


def _failed(future: Any) -> bool:
    """The send is over and did not deliver (an error, or the producer dropped it)."""
    return bool(future.done() and (future.cancelled() or future.exception() is not None))


async def _stop_quietly(producer: Any) -> None:
    try:
        await producer.stop()
    except Exception:  # it never started: nothing of ours is lost
        pass
