"""`Sender`: the sending queue, retries, timeouts and their counters, for every exporter.

An exporter gives the sender one coroutine, `send(batch)`, that makes one attempt and
raises `PermanentError` (never retry; `rejected=` for a partial success),
`RetryableError(retry_after=)` or any other exception (retry). The sender does the rest:

- queue enabled: `submit` returns once the batch is in the bounded queue and
  `num_consumers` tasks send from it; a full queue refuses with `QueueFullError` (or, with
  `block_on_overflow`, waits for room);
- queue disabled: `submit` sends inline and the outcome is the caller's, so the caller's
  await is the backpressure;
- every attempt is bounded by `timeout`; retryable failures are retried with exponential
  backoff (or the server's retry hint) until `max_elapsed_time`;
- counting and logging happen here, once per batch, so that exporters only talk protocol.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agent.component import Settings, TaskOwner
from agent.errors import PermanentError, QueueFullError, RetryableError, ShuttingDownError
from agent.exporters.sending.config import RetryConfig, SendingQueueConfig
from agent.exporters.sending.queue import BatchQueue, BatchTooLargeError, MemoryQueue, QueuedBatch
from agent.exporters.sending.retry import SYSTEM_CLOCK, Backoff, Clock
from agent.model import Batch, Signal

SendFunc = Callable[[Batch], Awaitable[None]]

#: Values of the `outcome` label of the send-duration histogram.
OUTCOMES = ("success", "partial", "permanent", "retryable", "timeout")


def _sizer(name: str) -> Callable[[Batch], int]:
    if name == "items":
        return lambda batch: batch.items
    if name == "bytes":
        return lambda batch: batch.nbytes
    return lambda batch: 1


@dataclass(frozen=True)
class _Counters:
    """The label-bound metric children of one signal, fetched once."""

    sent: Any
    failed_permanent: Any
    failed_partial: Any
    failed_exhausted: Any
    failed_retry_disabled: Any
    enqueue_failed: Any
    dropped_shutdown: Any
    retries: Any
    duration: dict[str, Any]

    @classmethod
    def bind(cls, settings: Settings, signal: Signal) -> _Counters:
        m, c, s = settings.metrics, settings.label, signal.value
        return cls(
            sent=m.exporter_sent.labels(c, s),
            failed_permanent=m.exporter_failed.labels(c, s, "permanent"),
            failed_partial=m.exporter_failed.labels(c, s, "partial"),
            failed_exhausted=m.exporter_failed.labels(c, s, "retries_exhausted"),
            failed_retry_disabled=m.exporter_failed.labels(c, s, "retry_disabled"),
            enqueue_failed=m.exporter_enqueue_failed.labels(c, s),
            dropped_shutdown=m.exporter_dropped.labels(c, s, "shutdown"),
            retries=m.exporter_retries.labels(c, s),
            duration={o: m.exporter_send_duration.labels(c, s, o) for o in OUTCOMES},
        )


class Sender:
    """Queue, retry and timeout around an exporter's `send` coroutine.

    `start()` starts the consumer tasks; `submit(batch)` is what the exporter's `consume`
    calls; `shutdown()` stops intake (new submits raise `ShuttingDownError`), sends what
    is queued, and ends the consumers. When the service cancels `shutdown()` at its
    deadline, whatever is still queued or in flight is counted as dropped
    (`reason="shutdown"`) and logged at ERROR. `shutdown()` is idempotent.

    `clock` and `rng` are injectable so tests see the backoff delays without waiting.
    `queue` replaces the in-memory queue (the persistent queue will come in that way).
    """

    def __init__(
        self,
        settings: Settings,
        send: SendFunc,
        *,
        queue_config: SendingQueueConfig,
        retry_config: RetryConfig,
        timeout: float,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        queue: BatchQueue | None = None,
    ) -> None:
        self._send = send
        self._queue_config = queue_config
        self._retry = retry_config
        self._timeout = float(timeout)
        self._clock = clock
        self._rng = rng or random.Random()
        self._log = settings.logger
        self._label = settings.label
        self._counters = {signal: _Counters.bind(settings, signal) for signal in Signal}
        self._tasks = TaskOwner(settings.label, settings.logger, settings.report_status)
        self._in_flight: dict[int, QueuedBatch] = {}
        self._started = False
        self._closing = False
        self._full = False
        self._queue: BatchQueue | None = None
        if queue_config.enabled:
            self._queue = queue or MemoryQueue(
                queue_config.queue_size, _sizer(queue_config.sizer), queue_config.max_bytes
            )
            bound = self._queue
            settings.metrics.exporter_queue_capacity.labels(self._label).set(bound.capacity)
            settings.metrics.exporter_queue_size.labels(self._label).set_function(lambda: bound.size)

    @property
    def queue(self) -> BatchQueue | None:
        """The sending queue, or None when it is disabled."""
        return self._queue

    async def start(self) -> None:
        if self._started or self._closing:
            return
        self._started = True
        if self._queue is not None:
            for i in range(self._queue_config.num_consumers):
                self._tasks.spawn(f"sending-{i}", self._consume_queue(i))

    async def submit(self, batch: Batch) -> None:
        """Queue the batch (queue enabled) or send it now with retries (queue disabled).

        Raises `QueueFullError`, `BatchTooLargeError` or `ShuttingDownError` when the queue
        refuses it; with the queue disabled, the error that ended the last attempt.
        """
        counters = self._counters[batch.signal]
        if self._closing:
            counters.enqueue_failed.inc(batch.items)
            raise ShuttingDownError(f"exporter {self._label} is shutting down")
        if self._queue is None:
            await self._deliver(batch)
            return
        try:
            await self._queue.put(batch, block=self._queue_config.block_on_overflow)
        except QueueFullError:
            counters.enqueue_failed.inc(batch.items)
            if not self._full:
                self._full = True
                self._log.warning(
                    "The sending queue is full; batches are refused until it has room.",
                    extra={"component": self._label, "capacity": self._queue.capacity},
                )
            raise
        except (BatchTooLargeError, ShuttingDownError) as exc:
            counters.enqueue_failed.inc(batch.items)
            if isinstance(exc, BatchTooLargeError):
                self._log.error(
                    "A batch larger than the whole sending queue was refused.",
                    extra={"component": self._label, "signal": batch.signal.value,
                           "items": batch.items, "error": str(exc)},
                )
            raise
        if self._full:
            self._full = False
            self._log.info("The sending queue has room again.", extra={"component": self._label})

    async def shutdown(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._queue is None:
            return
        self._queue.close()
        try:
            await self._tasks.wait()
        except asyncio.CancelledError:
            self._count_lost()
            await self._tasks.close()
            raise
        self._count_lost()

    async def _consume_queue(self, index: int) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            if item is None:
                return
            self._in_flight[index] = item
            try:
                await self._deliver(item.batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # already counted and logged by _deliver
                pass
            del self._in_flight[index]
            item.ack()

    def _count_lost(self) -> None:
        """Count (and log once) what the queue loses because its consumers stopped."""
        assert self._queue is not None
        lost = [item.batch for item in self._in_flight.values() if not item.nack()]
        self._in_flight.clear()
        lost.extend(self._queue.abandon())
        if not lost:
            return
        per_signal: dict[str, int] = {}
        for batch in lost:
            self._counters[batch.signal].dropped_shutdown.inc(batch.items)
            per_signal[batch.signal.value] = per_signal.get(batch.signal.value, 0) + batch.items
        self._log.error(
            "The exporter stopped before its sending queue drained; the batches left are lost.",
            extra={"component": self._label, "batches": len(lost), "items": per_signal},
        )

    async def _deliver(self, batch: Batch) -> None:
        """Send with retries; count the outcome; raise the error that ended the last attempt."""
        counters = self._counters[batch.signal]
        backoff: Backoff | None = None
        deadline = 0.0
        attempts = 0
        while True:
            attempts += 1
            try:
                await self._attempt(batch, counters)
            except PermanentError as exc:
                self._count_permanent(batch, counters, exc)
                raise
            except Exception as exc:
                if backoff is None:
                    backoff = Backoff(self._retry, self._rng)
                    deadline = self._clock.monotonic() + self._retry.max_elapsed_time
                delay = self._next_delay(exc, backoff, deadline)
                if delay is None:
                    self._count_given_up(batch, counters, exc, attempts)
                    raise
                counters.retries.inc()
                await self._clock.sleep(delay)
            else:
                counters.sent.inc(batch.items)
                return

    async def _attempt(self, batch: Batch, counters: _Counters) -> None:
        outcome = "success"
        started = time.perf_counter()
        try:
            if self._timeout > 0:
                async with asyncio.timeout(self._timeout):
                    await self._send(batch)
            else:
                await self._send(batch)
        except TimeoutError:
            outcome = "timeout"
            raise RetryableError(f"no answer within the timeout of {self._timeout:g}s") from None
        except PermanentError as exc:
            outcome = "partial" if _is_partial(batch, exc) else "permanent"
            raise
        except asyncio.CancelledError:
            outcome = ""
            raise
        except Exception:
            outcome = "retryable"
            raise
        finally:
            if outcome:
                counters.duration[outcome].observe(time.perf_counter() - started)

    def _next_delay(self, exc: Exception, backoff: Backoff, deadline: float) -> float | None:
        """The wait before the next attempt, or None to give up."""
        if not self._retry.enabled:
            return None
        hint = exc.retry_after if isinstance(exc, RetryableError) else None
        delay = max(0.0, hint) if hint is not None else backoff.next_delay()
        if self._retry.max_elapsed_time > 0:
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                return None
            # A hint past the deadline still gets one last attempt at the deadline.
            delay = min(delay, remaining)
        return delay

    def _count_permanent(self, batch: Batch, counters: _Counters, exc: PermanentError) -> None:
        if _is_partial(batch, exc):
            assert exc.rejected is not None
            rejected = min(exc.rejected, batch.items)
            counters.sent.inc(batch.items - rejected)
            counters.failed_partial.inc(rejected)
            self._log.warning(
                "The destination accepted a batch only in part; the rejected items are lost.",
                extra={"component": self._label, "signal": batch.signal.value,
                       "items": batch.items, "rejected": rejected, "error": str(exc)},
            )
            return
        counters.failed_permanent.inc(batch.items)
        self._log.error(
            "The destination refused a batch permanently; it is not retried.",
            extra={"component": self._label, "signal": batch.signal.value,
                   "items": batch.items, "error": str(exc)},
        )

    def _count_given_up(self, batch: Batch, counters: _Counters, exc: Exception, attempts: int) -> None:
        if self._retry.enabled:
            counters.failed_exhausted.inc(batch.items)
            message = "Gave up sending a batch: retries were exhausted."
        else:
            counters.failed_retry_disabled.inc(batch.items)
            message = "Sending a batch failed and retry_on_failure is disabled."
        self._log.error(
            message,
            extra={"component": self._label, "signal": batch.signal.value, "items": batch.items,
                   "attempts": attempts, "error": str(exc) or type(exc).__name__},
        )


def _is_partial(batch: Batch, exc: PermanentError) -> bool:
    return exc.rejected is not None and exc.rejected < batch.items
