"""KafkaReceiver with a scripted consumer: ordered commits, retries, poison, rebalances, shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from agent.component import Kind, Settings
from agent.config.types import dec_hook
from agent.errors import PermanentError, RetryableError
from agent.model import Batch, Signal
from agent.receivers.kafka import KafkaReceiverConfig
from agent.receivers.kafka.receiver import KafkaReceiver
from agent.testing import Sink, attrs_dict, make_traces
from tests.unit.exporters.helpers import FakeClock
from tests.unit.receivers.kafka.fakes import FakeConsumer, FakeProducer, HeldSink, Record, until

TP0 = TopicPartition("otlp_spans", 0)
TP1 = TopicPartition("otlp_spans", 1)


def rec(offset: int, name: str | None = None, partition: int = 0, value: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None) -> Record:
    data = value if value is not None else make_traces(2, traces=1, name=name or f"r{offset}").serialize()
    return Record("otlp_spans", partition, offset, data, headers=headers or [])


class Harness:
    def __init__(self, pipeline: Any, **options: Any) -> None:
        self.consumer = FakeConsumer()
        self.producer = FakeProducer()
        self.clock = FakeClock()
        self.settings = Settings.for_test("kafka", Kind.RECEIVER)
        config = msgspec.convert({"autocommit": {"enable": False}, **options}, KafkaReceiverConfig,
                                 dec_hook=dec_hook)
        self.receiver = KafkaReceiver(self.settings, config, {Signal.TRACES: pipeline},
                                      consumer_factory=self.consumer, producer_factory=self.producer,
                                      clock=self.clock, grace=1.0)

    def metric(self, name: str, **labels: str) -> float:
        value = self.settings.metrics.registry.get_sample_value(name, {"component": "kafka", **labels})
        return value or 0.0

    async def start(self, *assigned: TopicPartition) -> None:
        await self.receiver.start()
        await asyncio.wait_for(self.consumer.subscribed.wait(), 5)
        await self.consumer.rebalance(list(assigned or (TP0,)))


@pytest.fixture
async def held() -> AsyncIterator[tuple[Harness, HeldSink]]:
    sink = HeldSink()
    # A short session: a rebalance waits half of it for records in flight.
    h = Harness(sink, session_timeout="1s", heartbeat_interval="200ms")
    yield h, sink
    for gate in sink.gates.values():
        gate.set()
    await h.receiver.shutdown()


async def test_an_offset_is_committed_only_when_every_record_before_it_returned(
    held: tuple[Harness, HeldSink],
) -> None:
    h, sink = held
    await h.start()
    h.consumer.add(rec(0), rec(1), rec(2))
    await until(lambda: len(sink.entered) == 3)  # all three are in the pipeline together
    sink.gate("r1").set()
    sink.gate("r2").set()
    await until(lambda: len(sink.accepted) == 2)
    await asyncio.sleep(0.05)
    assert all(c.get(TP0, 0) == 0 for c in h.consumer.commits)
    sink.gate("r0").set()
    await until(lambda: h.consumer.committed_offset(TP0) == 3)


async def test_records_in_flight_are_bounded_by_max_in_flight() -> None:
    sink = HeldSink()
    h = Harness(sink, max_in_flight=2)
    await h.start()
    h.consumer.add(*(rec(i) for i in range(5)))
    await until(lambda: len(sink.entered) == 2)
    await asyncio.sleep(0.05)
    assert len(sink.entered) == 2 and max(h.consumer.max_records_seen) <= 2
    for i in range(5):
        sink.gate(f"r{i}").set()
    await until(lambda: len(sink.accepted) == 5)
    assert sink.max_concurrent == 2
    await h.receiver.shutdown()
    assert h.consumer.committed_offset(TP0) == 5


async def test_a_retryable_refusal_pauses_the_partition_and_hands_the_record_over_again() -> None:
    sink = Sink()
    sink.fail_with, sink.fail_times = RetryableError("downstream busy"), 2
    h = Harness(sink)
    await h.start()
    h.consumer.add(rec(0))
    await sink.wait_for_items(2)
    await until(lambda: h.consumer.committed_offset(TP0) == 1)
    assert sink.calls == 3
    assert h.consumer.pause_calls == [TP0, TP0] and h.consumer.resume_calls == [TP0, TP0]
    assert h.metric("flowglass_receiver_kafka_retries_total", topic="otlp_spans") == 2
    assert h.metric("flowglass_receiver_refused_items_total", signal="traces", transport="kafka",
                    reason="retryable") == 4
    assert h.metric("flowglass_receiver_accepted_items_total", signal="traces", transport="kafka") == 2
    assert len(h.clock.sleeps) == 2 and 0 < h.clock.sleeps[0] <= 0.75
    await h.receiver.shutdown()


async def test_a_retry_hint_from_the_pipeline_sets_the_wait() -> None:
    sink = Sink()
    sink.fail_with, sink.fail_times = RetryableError("later", retry_after=7.0), 1
    h = Harness(sink)
    await h.start()
    h.consumer.add(rec(0))
    await sink.wait_for_items(2)
    assert h.clock.sleeps == [7.0]
    await h.receiver.shutdown()


async def test_a_record_refused_until_max_elapsed_time_is_passed_over() -> None:
    sink = Sink()
    sink.fail_with = RetryableError("never")
    h = Harness(sink, error_backoff={"initial_interval": "1s", "max_elapsed_time": "10s"})
    await h.start()
    h.consumer.add(rec(0))
    await until(lambda: h.consumer.committed_offset(TP0) == 1)
    assert h.metric("flowglass_receiver_kafka_skipped_records_total", topic="otlp_spans",
                    reason="retries_exhausted") == 1
    assert sum(h.clock.sleeps) >= 10
    await h.receiver.shutdown()


async def test_poison_is_counted_dead_lettered_with_its_reason_and_passed_over() -> None:
    sink = Sink()
    h = Harness(sink, dead_letter_topic="dead")
    await h.start()
    h.consumer.add(rec(0), rec(1, value=b"\xff\xffnot protobuf", headers=[("tenant", b"ml")]), rec(2))
    await sink.wait_for_items(4)
    await until(lambda: h.consumer.committed_offset(TP0) == 3)
    assert h.metric("flowglass_receiver_kafka_skipped_records_total", topic="otlp_spans", reason="poison") == 1
    assert h.metric("flowglass_receiver_kafka_dead_letter_records_total", topic="otlp_spans", outcome="written") == 1
    [(topic, value, _, headers)] = h.producer.sent
    assert (topic, value) == ("dead", b"\xff\xffnot protobuf")
    found = dict(headers)
    assert found["tenant"] == b"ml"
    assert found["flowglass.dead_letter.reason"].startswith(b"poison: not a protobuf traces export request")
    assert (found["flowglass.dead_letter.partition"], found["flowglass.dead_letter.offset"]) == (b"0", b"1")
    await h.receiver.shutdown()
    assert h.producer.stopped


async def test_a_dead_letter_that_cannot_be_written_yet_is_retried_before_the_offset_moves() -> None:
    sink = Sink()
    h = Harness(sink, dead_letter_topic="dead")
    h.producer.errors = [KafkaConnectionError("down")]
    await h.start()
    h.consumer.add(rec(0, value=b"garbage"))
    await until(lambda: h.consumer.committed_offset(TP0) == 1)
    assert len(h.producer.sent) == 1 and h.clock.sleeps


async def test_a_permanent_refusal_is_counted_and_passed_over() -> None:
    sink = Sink()
    sink.fail_with, sink.fail_times = PermanentError("bad data"), 1
    h = Harness(sink)
    await h.start()
    h.consumer.add(rec(0), rec(1))
    await until(lambda: h.consumer.committed_offset(TP0) == 2)
    assert sink.items == 2
    assert h.metric("flowglass_receiver_refused_items_total", signal="traces", transport="kafka",
                    reason="permanent") == 2
    assert h.metric("flowglass_receiver_kafka_skipped_records_total", topic="otlp_spans", reason="refused") == 1
    await h.receiver.shutdown()


async def test_a_partial_refusal_counts_both_parts_and_moves_on() -> None:
    sink = Sink()
    sink.fail_with, sink.fail_times = PermanentError("one bad", rejected=1), 1
    h = Harness(sink)
    await h.start()
    h.consumer.add(rec(0))
    await until(lambda: h.consumer.committed_offset(TP0) == 1)
    assert h.metric("flowglass_receiver_accepted_items_total", signal="traces", transport="kafka") == 1
    assert h.metric("flowglass_receiver_refused_items_total", signal="traces", transport="kafka",
                    reason="partial") == 1
    await h.receiver.shutdown()


async def test_a_rebalance_commits_finished_work_and_gives_up_what_is_in_flight(
    held: tuple[Harness, HeldSink],
) -> None:
    h, sink = held
    await h.start(TP0, TP1)
    h.consumer.add(rec(0, "a0"), rec(1, "a1"), rec(0, "b0", partition=1))
    await until(lambda: len(sink.entered) == 3)
    sink.gate("a0").set()
    await until(lambda: len(sink.accepted) == 1)
    assert h.metric("flowglass_receiver_kafka_assigned_partitions") == 2
    await h.consumer.rebalance([TP1])
    # a0 finished: committed; a1 was still in the pipeline: given up (its next owner reads it).
    assert h.consumer.committed_offset(TP0) == 1
    assert h.consumer.committed_offset(TP1) is None
    assert h.metric("flowglass_receiver_kafka_assigned_partitions") == 1
    assert h.metric("flowglass_receiver_kafka_rebalances_total") == 2
    # The partition kept (TP1) starts over from its committed offset: its record comes again.
    h.consumer.add(rec(0, "b0-again", partition=1))
    sink.gate("b0-again").set()
    await until(lambda: h.consumer.committed_offset(TP1) == 1)


async def test_shutdown_lets_records_in_flight_finish_then_commits_and_leaves(
    held: tuple[Harness, HeldSink],
) -> None:
    h, sink = held
    await h.start()
    h.consumer.add(rec(0), rec(1))
    await until(lambda: len(sink.entered) == 2)
    await h.receiver.stop_intake()
    h.consumer.add(rec(2))
    shutdown = asyncio.create_task(h.receiver.shutdown())
    await asyncio.sleep(0.05)
    assert not shutdown.done()
    sink.gate("r0").set()
    sink.gate("r1").set()
    await shutdown
    assert "r2" not in sink.entered  # fetched after intake stopped: not handed over, not committed
    assert h.consumer.committed_offset(TP0) == 2
    assert h.consumer.stopped
    await h.receiver.shutdown()  # idempotent


async def test_lag_per_partition_is_the_high_watermark_minus_the_commit_point() -> None:
    sink = HeldSink()
    h = Harness(sink, autocommit={"enable": True, "interval": "20ms"})
    await h.start()
    h.consumer.add(rec(0), rec(1), rec(2))
    h.consumer.highwaters[TP0] = 10
    sink.gate("r0").set()

    def lag() -> float:
        return h.metric("flowglass_receiver_kafka_consumer_lag", topic="otlp_spans", partition="0")

    await until(lambda: lag() == 9)
    sink.gate("r1").set()
    sink.gate("r2").set()
    await until(lambda: lag() == 7)
    await h.receiver.shutdown()


async def test_unreachable_brokers_are_retried_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink()
    h = Harness(sink)
    h.consumer.start_errors = [KafkaConnectionError("refused")] * 3
    with caplog.at_level(logging.INFO):
        await h.start()
        h.consumer.add(rec(0))
        await sink.wait_for_items(2)
    await h.receiver.shutdown()
    assert h.consumer.starts == 4
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("agent")]
    assert sum("cannot reach its brokers" in m for m in messages) == 1
    assert sum("reaches its brokers again" in m for m in messages) == 1


async def test_headers_become_metadata_and_chosen_ones_resource_attributes() -> None:
    sink = Sink()
    h = Harness(sink, header_extraction={"extract_headers": True, "headers": ["tenant"]})
    await h.start()
    h.consumer.add(rec(4, headers=[("tenant", b"ml-team"), ("trace", b"x")]))
    await sink.wait_for_items(2)
    batch: Batch = sink.batches[0]
    assert batch.client.get("kafka.topic") == ("otlp_spans",)
    assert batch.client.get("kafka.offset") == ("4",) and batch.client.get("trace") == ("x",)
    attrs = attrs_dict(batch.message.resource_spans[0].resource.attributes)  # type: ignore[union-attr]
    assert attrs["kafka.header.tenant"] == "ml-team" and "kafka.header.trace" not in attrs
    await h.receiver.shutdown()


async def test_the_consumer_is_configured_from_the_collector_options() -> None:
    h = Harness(Sink(), group_id="gw", initial_offset="earliest", session_timeout="2s",
                heartbeat_interval="500ms", group_rebalance_strategy="range", max_fetch_wait="100ms",
                rack_id="zone-a", traces={"topics": ["a", "b"]})
    await h.receiver.start()
    await asyncio.wait_for(h.consumer.subscribed.wait(), 5)
    o = h.consumer.options
    assert (o["group_id"], o["auto_offset_reset"], o["enable_auto_commit"]) == ("gw", "earliest", False)
    assert (o["session_timeout_ms"], o["heartbeat_interval_ms"], o["fetch_max_wait_ms"]) == (2000, 500, 100)
    assert o["partition_assignment_strategy"][0].name == "range" and o["client_rack"] == "zone-a"
    assert h.consumer.topics == ["a", "b"]
    await h.receiver.shutdown()


async def test_a_receiver_no_pipeline_uses_does_nothing() -> None:
    consumer = FakeConsumer()
    config = msgspec.convert({}, KafkaReceiverConfig, dec_hook=dec_hook)
    receiver = KafkaReceiver(Settings.for_test("kafka", Kind.RECEIVER), config, {}, consumer_factory=consumer)
    await receiver.start()
    await receiver.shutdown()
    assert consumer.starts == 0
