"""KafkaExporter with a scripted producer: delivery, retries that never resend, outages, refusals."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, NotLeaderForPartitionError

from agent.component import Kind, Settings
from agent.config.types import dec_hook
from agent.errors import PermanentError
from agent.exporters.kafka import KafkaExporterConfig
from agent.exporters.kafka.exporter import KafkaExporter
from agent.exporters.kafka.records import SaramaPartitioner
from agent.testing import make_logs, make_traces
from tests.unit.exporters.helpers import FakeClock, metric

SENT = "flowglass_exporter_sent_items_total"
FAILED = "flowglass_exporter_send_failed_items_total"


class FakeProducer:
    """Acknowledges every record unless `script` says otherwise (an exception, or "hold")."""

    def __init__(self) -> None:
        self.options: dict[str, Any] = {}
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.script: list[BaseException | str | None] = []
        self.start_errors: list[BaseException] = []
        self.starts = 0
        self.stopped = 0
        self.held: list[asyncio.Future[Any]] = []

    def __call__(self, **options: Any) -> FakeProducer:
        self.options = options
        return self

    async def start(self) -> None:
        self.starts += 1
        if self.start_errors:
            raise self.start_errors.pop(0)

    async def stop(self) -> None:
        self.stopped += 1

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> Any:
        self.sent.append((topic, value, key))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        outcome = self.script.pop(0) if self.script else None
        if outcome == "hold":
            self.held.append(future)
        elif isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(("metadata", topic))
        return future


def _exporter(fake: FakeProducer, /, **options: Any) -> tuple[KafkaExporter, Settings]:
    config = msgspec.convert({"retry_on_failure": {"initial_interval": "1s"}, **options}, KafkaExporterConfig,
                             dec_hook=dec_hook)
    settings = Settings.for_test("kafka", Kind.EXPORTER)
    return KafkaExporter(settings, config, clock=FakeClock(), producer_factory=fake), settings


async def test_batches_are_produced_with_the_configured_producer_options() -> None:
    producer = FakeProducer()
    exporter, settings = _exporter(producer, sending_queue={"enabled": False},
                                   producer={"required_acks": "all", "compression": "zstd", "linger": "5ms"})
    await exporter.start()
    await exporter.consume(make_traces(10))
    await exporter.shutdown()
    assert len(producer.sent) == 1 and producer.sent[0][0] == "otlp_spans"
    assert metric(settings, SENT, signal="traces") == 10
    o = producer.options
    assert (o["acks"], o["compression_type"], o["linger_ms"]) == ("all", "zstd", 5)
    assert o["max_batch_size"] == 1_000_000 and isinstance(o["partitioner"], SaramaPartitioner)
    assert o["bootstrap_servers"] == ["localhost:9092"] and o["client_id"] == "flowglass"
    assert producer.stopped == 1


async def test_unreachable_brokers_are_retried_and_logged_once_each_way(caplog: pytest.LogCaptureFixture) -> None:
    producer = FakeProducer()
    producer.start_errors = [KafkaConnectionError("refused"), KafkaConnectionError("refused")]
    exporter, settings = _exporter(producer, sending_queue={"enabled": False})
    await exporter.start()
    with caplog.at_level(logging.INFO):
        await exporter.consume(make_traces(4))
    await exporter.shutdown()
    assert producer.starts == 3
    assert metric(settings, SENT, signal="traces") == 4
    assert metric(settings, "flowglass_exporter_retries_total", signal="traces") == 2
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("agent")]
    assert sum("cannot reach its brokers" in m for m in messages) == 1
    assert sum("reaches its brokers again" in m for m in messages) == 1


async def test_a_retry_sends_only_the_records_not_yet_acknowledged() -> None:
    producer = FakeProducer()
    producer.script = [None, NotLeaderForPartitionError(), None]
    exporter, settings = _exporter(producer, sending_queue={"enabled": False}, partition_traces_by_id=True)
    await exporter.start()
    await exporter.consume(make_traces(9, traces=3))
    await exporter.shutdown()
    keys = [key for _, _, key in producer.sent]
    assert len(keys) == 4 and keys[3] == keys[1]
    assert metric(settings, SENT, signal="traces") == 9


async def test_a_record_still_in_flight_is_awaited_not_sent_again() -> None:
    producer = FakeProducer()
    producer.script = ["hold"]
    exporter, settings = _exporter(producer, timeout="100ms")
    await exporter.start()
    await exporter.consume(make_traces(5))
    # The first attempt gives up waiting; the record is still in the producer's hands.
    while metric(settings, "flowglass_exporter_retries_total", signal="traces") < 1:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    producer.held[0].set_result("late ack")
    await exporter.shutdown()
    assert len(producer.sent) == 1
    assert metric(settings, SENT, signal="traces") == 5


async def test_a_record_the_broker_refuses_for_good_is_counted_not_retried() -> None:
    producer = FakeProducer()
    producer.script = [MessageSizeTooLargeError()]
    exporter, settings = _exporter(producer, sending_queue={"enabled": False})
    await exporter.start()
    with pytest.raises(PermanentError):
        await exporter.consume(make_logs(3))
    await exporter.shutdown()
    assert len(producer.sent) == 1
    assert metric(settings, FAILED, signal="logs", reason="permanent") == 3


async def test_items_over_max_message_bytes_are_refused_in_part_and_counted() -> None:
    producer = FakeProducer()
    exporter, settings = _exporter(producer, producer={"max_message_bytes": 1500}, logs={"encoding": "raw"})
    batch = make_logs(3)
    batch.mutable().resource_logs[0].scope_logs[0].log_records[1].body.string_value = "x" * 4000
    await exporter.start()
    with pytest.raises(PermanentError) as caught:
        await exporter.consume(batch)
    assert caught.value.rejected == 1
    await exporter.shutdown()
    assert len(producer.sent) == 2
    assert metric(settings, FAILED, signal="logs", reason="message_too_large") == 1
    assert metric(settings, SENT, signal="logs") == 2


async def test_mutates_nothing() -> None:
    exporter, _ = _exporter(FakeProducer(), partition_traces_by_id=True)
    batch = make_traces(8, traces=4)
    before = batch.serialize()
    await exporter.start()
    await exporter.consume(batch)
    await exporter.shutdown()
    assert not exporter.mutates_data and batch.serialize() == before
