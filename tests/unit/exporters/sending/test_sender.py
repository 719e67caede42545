"""The Sender: queue bounds, retries with backoff and hints, counters, shutdown."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from agent.component import Kind, Settings
from agent.errors import PermanentError, QueueFullError, RetryableError, ShuttingDownError
from agent.exporters.sending import BatchTooLargeError, RetryConfig, Sender, SendingQueueConfig
from agent.model import Signal
from agent.testing import make_logs, make_metrics, make_traces
from tests.unit.exporters.helpers import FakeClock, ScriptedSend, metric

SENT = "flowglass_exporter_sent_items_total"
FAILED = "flowglass_exporter_send_failed_items_total"
ENQUEUE_FAILED = "flowglass_exporter_enqueue_failed_items_total"
DROPPED = "flowglass_exporter_dropped_items_total"
RETRIES = "flowglass_exporter_retries_total"


def make_sender(
    send: ScriptedSend,
    *,
    queue: SendingQueueConfig | None = None,
    retry: RetryConfig | None = None,
    timeout: float = 5.0,
    clock: FakeClock | None = None,
) -> tuple[Sender, Settings, FakeClock]:
    settings = Settings.for_test("otlp/test", Kind.EXPORTER)
    clock = clock or FakeClock()
    sender = Sender(
        settings,
        send,
        queue_config=queue or SendingQueueConfig(),
        retry_config=retry or RetryConfig(randomization_factor=0.0),
        timeout=timeout,
        clock=clock,
        rng=random.Random(7),
    )
    return sender, settings, clock


INLINE = SendingQueueConfig(enabled=False)


async def test_full_queue_refuses_and_counts_then_delivers_when_started() -> None:
    send = ScriptedSend()
    sender, settings, _ = make_sender(send, queue=SendingQueueConfig(queue_size=2, num_consumers=2))
    await sender.submit(make_traces(5))
    await sender.submit(make_traces(5))
    with pytest.raises(QueueFullError):
        await sender.submit(make_traces(7))
    assert metric(settings, ENQUEUE_FAILED, signal="traces") == 7
    assert metric(settings, "flowglass_exporter_queue_size") == 2
    assert metric(settings, "flowglass_exporter_queue_capacity") == 2

    await sender.start()
    await sender.shutdown()
    assert send.items == 10
    assert metric(settings, SENT, signal="traces") == 10
    assert metric(settings, "flowglass_exporter_queue_size") == 0


async def test_block_on_overflow_waits_for_room() -> None:
    send = ScriptedSend()
    sender, settings, _ = make_sender(send, queue=SendingQueueConfig(queue_size=1, block_on_overflow=True))
    await sender.submit(make_traces(1))
    blocked = asyncio.create_task(sender.submit(make_traces(2)))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not blocked.done(), "a full queue with block_on_overflow must make submit wait"
    await sender.start()
    await asyncio.wait_for(blocked, 5)
    await sender.shutdown()
    assert send.items == 3
    assert metric(settings, ENQUEUE_FAILED, signal="traces") == 0


async def test_blocked_submit_fails_when_shutdown_starts() -> None:
    send = ScriptedSend()
    send.gate.clear()
    sender, _, _ = make_sender(send, queue=SendingQueueConfig(queue_size=1, num_consumers=1, block_on_overflow=True))
    await sender.start()
    await sender.submit(make_traces(1))  # taken by the consumer, held at the gate
    await asyncio.wait_for(send.entered.wait(), 5)
    await sender.submit(make_traces(1))  # fills the queue
    blocked = asyncio.create_task(sender.submit(make_traces(1)))
    await asyncio.sleep(0)
    shutdown = asyncio.create_task(sender.shutdown())
    with pytest.raises(ShuttingDownError):
        await asyncio.wait_for(blocked, 5)
    send.gate.set()
    await asyncio.wait_for(shutdown, 5)
    assert send.items == 2


async def test_items_sizer_counts_items_and_refuses_oversized_batches() -> None:
    send = ScriptedSend()
    sender, settings, _ = make_sender(send, queue=SendingQueueConfig(queue_size=25, sizer="items"))
    await sender.submit(make_traces(10))
    await sender.submit(make_logs(10))
    assert sender.queue is not None and sender.queue.size == 20
    with pytest.raises(QueueFullError):
        await sender.submit(make_traces(10))
    await sender.submit(make_metrics(5))
    with pytest.raises(BatchTooLargeError):
        await sender.submit(make_traces(30))
    assert metric(settings, ENQUEUE_FAILED, signal="traces") == 40
    await sender.start()
    await sender.shutdown()
    assert send.items == 25


async def test_max_bytes_bounds_the_encoded_size_queued() -> None:
    send = ScriptedSend()
    one = make_traces(10)
    cap = one.nbytes * 2 + 10
    sender, _, _ = make_sender(send, queue=SendingQueueConfig(queue_size=100, max_bytes=cap))  # type: ignore[arg-type]
    await sender.submit(one)
    await sender.submit(make_traces(10))
    with pytest.raises(QueueFullError):
        await sender.submit(make_traces(10))
    await sender.start()
    await sender.shutdown()
    assert send.items == 20


async def test_retry_backoff_grows_and_honours_retry_after() -> None:
    send = ScriptedSend(
        RetryableError("busy"),
        RetryableError("throttled", retry_after=7.0),
        ConnectionError("reset"),
        ConnectionError("reset"),
        None,
    )
    retry = RetryConfig(initial_interval=1.0, multiplier=2.0, max_interval=3.0, randomization_factor=0.0)  # type: ignore[arg-type]
    sender, settings, clock = make_sender(send, queue=INLINE, retry=retry)
    await sender.submit(make_traces(4))
    assert clock.sleeps == [1.0, 7.0, 2.0, 3.0]
    assert send.attempts == 5
    assert metric(settings, RETRIES, signal="traces") == 4
    assert metric(settings, SENT, signal="traces") == 4
    assert metric(settings, FAILED, signal="traces", reason="retries_exhausted") == 0


async def test_retry_through_the_queue_then_delivered() -> None:
    send = ScriptedSend(RetryableError("busy", retry_after=2.5), None)
    sender, settings, clock = make_sender(send)
    await sender.start()
    await sender.submit(make_traces(3))
    await sender.shutdown()
    assert clock.sleeps == [2.5]
    assert send.items == 3
    assert metric(settings, SENT, signal="traces") == 3


async def test_jitter_stays_within_the_randomization_factor() -> None:
    from agent.exporters.sending import Backoff

    backoff = Backoff(RetryConfig(initial_interval=2.0, randomization_factor=0.5), random.Random(1))  # type: ignore[arg-type]
    delays = [backoff.next_delay() for _ in range(3)]
    assert 1.0 <= delays[0] <= 3.0
    assert 1.5 <= delays[1] <= 4.5
    assert len(set(delays)) == 3


async def test_permanent_error_is_never_retried_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    send = ScriptedSend(PermanentError("bad data"))
    sender, settings, clock = make_sender(send)
    await sender.start()
    with caplog.at_level(logging.ERROR):
        await sender.submit(make_traces(6))
        await sender.shutdown()
    assert send.attempts == 1
    assert clock.sleeps == []
    assert metric(settings, FAILED, signal="traces", reason="permanent") == 6
    assert metric(settings, SENT, signal="traces") == 0
    assert [r.message for r in caplog.records].count(
        "The destination refused a batch permanently; it is not retried."
    ) == 1


async def test_partial_success_counts_sent_and_rejected() -> None:
    send = ScriptedSend(PermanentError("3 bad spans", rejected=3))
    sender, settings, _ = make_sender(send, queue=INLINE)
    with pytest.raises(PermanentError) as info:
        await sender.submit(make_traces(10))
    assert info.value.rejected == 3
    assert send.attempts == 1
    assert metric(settings, SENT, signal="traces") == 7
    assert metric(settings, FAILED, signal="traces", reason="partial") == 3
    assert metric(settings, FAILED, signal="traces", reason="permanent") == 0


async def test_max_elapsed_time_gives_up_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    send = ScriptedSend(*[RetryableError("down")] * 100)
    retry = RetryConfig(initial_interval=1.0, multiplier=1.0, max_interval=1.0,  # type: ignore[arg-type]
                        randomization_factor=0.0, max_elapsed_time=3.5)  # type: ignore[arg-type]
    sender, settings, clock = make_sender(send, retry=retry)
    await sender.start()
    with caplog.at_level(logging.ERROR):
        await sender.submit(make_traces(8))
        await sender.shutdown()
    # Attempts at 0, 1, 2, 3 and, capped by the deadline, 3.5; then it gives up.
    assert clock.sleeps == [1.0, 1.0, 1.0, 0.5]
    assert send.attempts == 5
    assert metric(settings, FAILED, signal="traces", reason="retries_exhausted") == 8
    gave_up = [r for r in caplog.records if r.message.startswith("Gave up sending a batch")]
    assert len(gave_up) == 1
    assert gave_up[0].items == 8  # type: ignore[attr-defined]


async def test_retry_after_past_the_deadline_is_capped() -> None:
    send = ScriptedSend(*[RetryableError("later", retry_after=100.0)] * 3)
    retry = RetryConfig(max_elapsed_time=10.0, randomization_factor=0.0)  # type: ignore[arg-type]
    sender, settings, clock = make_sender(send, queue=INLINE, retry=retry)
    with pytest.raises(RetryableError):
        await sender.submit(make_traces(2))
    assert clock.sleeps == [10.0]
    assert metric(settings, FAILED, signal="traces", reason="retries_exhausted") == 2


async def test_queue_disabled_propagates_errors_without_retry() -> None:
    send = ScriptedSend(ConnectionError("refused"))
    sender, settings, clock = make_sender(send, queue=INLINE, retry=RetryConfig(enabled=False))
    with pytest.raises(ConnectionError):
        await sender.submit(make_logs(4))
    assert clock.sleeps == []
    assert metric(settings, FAILED, signal="logs", reason="retry_disabled") == 4
    await sender.submit(make_logs(4))
    assert metric(settings, SENT, signal="logs") == 4


async def test_attempt_timeout_is_retryable_and_observed() -> None:
    send = ScriptedSend()
    send.gate.clear()  # never answers
    sender, settings, _ = make_sender(send, queue=INLINE, retry=RetryConfig(enabled=False), timeout=0.01)
    with pytest.raises(RetryableError, match="timeout"):
        await sender.submit(make_traces(1))
    count = metric(settings, "flowglass_exporter_send_duration_seconds_count", signal="traces", outcome="timeout")
    assert count == 1


async def test_shutdown_drains_the_queue_and_refuses_new_batches() -> None:
    send = ScriptedSend()
    send.gate.clear()
    sender, settings, _ = make_sender(send, queue=SendingQueueConfig(num_consumers=2))
    await sender.start()
    for _ in range(5):
        await sender.submit(make_traces(2))
    shutdown = asyncio.create_task(sender.shutdown())
    await asyncio.sleep(0)
    with pytest.raises(ShuttingDownError):
        await sender.submit(make_traces(2))
    send.gate.set()
    await asyncio.wait_for(shutdown, 5)
    assert send.items == 10
    assert metric(settings, SENT, signal="traces") == 10
    assert metric(settings, ENQUEUE_FAILED, signal="traces") == 2
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("otlp/test:")]
    await sender.shutdown()  # idempotent


async def test_shutdown_cancelled_at_deadline_counts_dropped(caplog: pytest.LogCaptureFixture) -> None:
    send = ScriptedSend()
    send.gate.clear()  # the destination never answers
    sender, settings, _ = make_sender(send, queue=SendingQueueConfig(num_consumers=1))
    await sender.start()
    await sender.submit(make_traces(10))
    await sender.submit(make_metrics(6))
    await sender.submit(make_traces(10))
    await asyncio.wait_for(send.entered.wait(), 5)
    with caplog.at_level(logging.ERROR):
        shutdown = asyncio.create_task(sender.shutdown())
        for _ in range(5):
            await asyncio.sleep(0)
        shutdown.cancel()
        with pytest.raises(asyncio.CancelledError):
            await shutdown
    assert metric(settings, DROPPED, signal="traces", reason="shutdown") == 20
    assert metric(settings, DROPPED, signal="metrics", reason="shutdown") == 6
    lost = [r for r in caplog.records if "before its sending queue drained" in r.message]
    assert len(lost) == 1
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("otlp/test:")]
    await sender.shutdown()  # idempotent: nothing counted twice
    assert metric(settings, DROPPED, signal="traces", reason="shutdown") == 20


async def test_shutdown_without_start_counts_what_was_queued() -> None:
    sender, settings, _ = make_sender(ScriptedSend())
    await sender.submit(make_logs(3))
    await sender.shutdown()
    assert metric(settings, DROPPED, signal="logs", reason="shutdown") == 3


@pytest.mark.parametrize("signal", list(Signal))
async def test_each_signal_is_counted_under_its_label(signal: Signal) -> None:
    from agent.testing import make_batch

    send = ScriptedSend()
    sender, settings, _ = make_sender(send, queue=INLINE)
    await sender.submit(make_batch(signal, 3))
    assert metric(settings, SENT, signal=signal.value) == send.items > 0
