"""The syslog receiver's way into its pipeline, shared by the TCP and UDP listeners.

`Intake` holds the label-bound counters of one transport, encodes frames into a batch,
and delivers batches:

- `deliver()` (TCP) hands a batch to the consumer and, while the consumer refuses it as
  retryable, keeps it and tries again with backoff (honouring a `retry_after` hint); the
  connection does not read meanwhile. A permanent refusal is counted and dropped. Once the
  receiver shuts down, a refused batch is counted `shutting_down` and dropped.
- `offer()` (UDP) hands a batch over once: a refusal is counted by reason and dropped.

`Budget` bounds the log records (and their bytes) of one transport waiting for the
pipeline: a TCP connection stops reading while it (or its listener) is over its bound, UDP
drops what does not fit.

Refusal reasons (`flowglass_receiver_refused_items_total{reason}`): `permanent`,
`memory_limit`, `retryable` (UDP only; TCP retries), `shutting_down`, `malformed`
(unparseable and `on_error: drop`), `too_large`, `framing`, `truncated`, `queue_full`
(UDP over its in-flight bound). Connections refused at `max_connections` are counted in
`flowglass_receiver_refused_requests_total{reason="too_many_connections"}`; records that did
not parse and were passed on raw in `flowglass_receiver_unparsed_items_total`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

from agent.component import Consumer, Settings
from agent.errors import MemoryRefusedError, PermanentError, RetryableError, ShuttingDownError
from agent.model import Batch, Signal
from agent.receivers.syslog.record import RecordEncoder

Transport = Literal["tcp", "udp"]

ITEM_REASONS = ("permanent", "memory_limit", "retryable", "shutting_down", "malformed", "too_large",
                "framing", "truncated", "queue_full")
REQUEST_REASONS = ("too_many_connections",)

#: Log records of one transport waiting for the pipeline (TCP stops reading, UDP drops beyond).
MAX_IN_FLIGHT = 65536
#: ... and their encoded bytes.
MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024
#: Log records of one TCP connection waiting for the pipeline before it stops reading ...
MAX_IN_FLIGHT_PER_CONNECTION = 16384
#: ... and their encoded bytes.
MAX_IN_FLIGHT_BYTES_PER_CONNECTION = 16 * 1024 * 1024
#: First and longest pause between two tries of a refused batch, in seconds.
RETRY_INITIAL = 0.05
RETRY_MAX = 2.0


def reason_of(error: BaseException) -> str:
    """The refusal reason counted for a consumer's exception."""
    if isinstance(error, PermanentError):
        return "permanent"
    if isinstance(error, MemoryRefusedError):
        return "memory_limit"
    if isinstance(error, ShuttingDownError):
        return "shutting_down"
    return "retryable"


class Budget:
    """Log records and their bytes in flight on one transport, with bounds; wakes waiters
    when there is room again."""

    def __init__(self, limit: int = MAX_IN_FLIGHT, byte_limit: int = MAX_IN_FLIGHT_BYTES) -> None:
        self.limit = limit
        self.byte_limit = byte_limit
        self.used = 0
        self.bytes = 0
        self._waiters: set[Callable[[], None]] = set()

    @property
    def full(self) -> bool:
        return self.used >= self.limit or self.bytes >= self.byte_limit

    def fits(self, items: int, nbytes: int) -> bool:
        """Whether `items` records of `nbytes` more stay within the bounds."""
        return self.used + items <= self.limit and self.bytes + nbytes <= self.byte_limit

    def take(self, items: int, nbytes: int) -> None:
        self.used += items
        self.bytes += nbytes

    def give(self, items: int, nbytes: int) -> None:
        self.used -= items
        self.bytes -= nbytes
        if self._waiters and not self.full:
            waiters = list(self._waiters)
            self._waiters.clear()
            for wake in waiters:
                wake()

    def wait(self, wake: Callable[[], None]) -> None:
        """Call `wake()` once the budget has room again."""
        self._waiters.add(wake)

    def forget(self, wake: Callable[[], None]) -> None:
        self._waiters.discard(wake)


class RateLimitedLog:
    """A WARNING at most once per `interval` per kind, saying how many were not logged."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str, extra: dict[str, Any], count: int = 1) -> None:
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + count
            return
        self._last[kind] = now
        self._logger.warning(message, extra={**extra, "similar_not_logged": self._suppressed.pop(kind, 0)})


class Intake:
    """One transport of one syslog receiver: encoding, counters and delivery."""

    def __init__(self, settings: Settings, transport: Transport, consumer: Consumer,
                 encoder: RecordEncoder, log: RateLimitedLog, *, quiet: bool) -> None:
        self.transport = transport
        self.encoder = encoder
        self.budget = Budget()
        self.closing = False
        self._consumer = consumer
        self._log = log
        self._quiet = quiet
        self._label = settings.label
        m = settings.metrics
        labels = (settings.label, Signal.LOGS.value, transport)
        self._accepted = m.receiver_accepted.labels(*labels)
        self._refused = {r: m.receiver_refused.labels(*labels, r) for r in ITEM_REASONS}
        self._refused_requests = {r: m.receiver_refused_requests.labels(*labels, r) for r in REQUEST_REASONS}
        self._unparsed = m.receiver_unparsed.labels(*labels)

    # ---- counting ---------------------------------------------------------------------

    def refuse(self, reason: str, items: int = 1) -> None:
        if items:
            self._refused[reason].inc(items)

    def refuse_request(self, reason: str) -> None:
        self._refused_requests[reason].inc()

    def count_errors(self, errors: Iterable[tuple[str, int]]) -> None:
        """Count framing problems (reason, messages lost)."""
        for reason, n in errors:
            self.refuse(reason, n)
            if not self._quiet:
                self._log.warning(
                    f"framing:{reason}",
                    "Syslog data that could not be framed was dropped; it is counted in "
                    "flowglass_receiver_refused_items_total.",
                    {"component": self._label, "transport": self.transport, "reason": reason}, n)

    # ---- encoding ---------------------------------------------------------------------

    def encode(self, frames: list[bytes], transport_attributes: bytes = b"",
               observed: int | None = None) -> tuple[bytes, int] | None:
        """(request bytes, records) for `frames`, or None when none of them gives a record.

        `observed` is when the frames were read (Unix nanoseconds; now by default).
        """
        encoder = self.encoder
        tail = encoder.tail(observed or time.time_ns(), transport_attributes)
        out = encoder.encode(frames, tail)
        if out.unparsed or out.dropped:
            self._count_unparsed(out.unparsed, out.dropped)
        if not out.records:
            return None
        return encoder.request(out.records), len(out.records)

    def _count_unparsed(self, unparsed: int, dropped: int) -> None:
        if unparsed:
            self._unparsed.inc(unparsed)
        if dropped:
            self.refuse("malformed", dropped)
        if not self._quiet:
            self._log.warning(
                "unparsed",
                "Syslog messages did not parse as the configured protocol; they are counted "
                "and, with on_error: send, passed on with only their body.",
                {"component": self._label, "transport": self.transport, "unparsed": unparsed, "dropped": dropped},
                unparsed + dropped)

    # ---- delivery ---------------------------------------------------------------------

    async def offer(self, data: bytes, items: int) -> None:
        """Hand a batch over once; count a refusal and drop the batch (UDP)."""
        try:
            await self._consumer.consume(Batch(Signal.LOGS, data=data, items=items))
        except asyncio.CancelledError:
            self.refuse("shutting_down", items)
            raise
        except Exception as error:
            self._refusal(error, items)
            return
        self._accepted.inc(items)

    async def deliver(self, data: bytes, items: int, hold: Callable[[bool], None]) -> None:
        """Hand a batch over until it is accepted or refused for good (TCP).

        `hold(True)` is called when the batch is refused as retryable (the connection stops
        reading) and `hold(False)` once it was accepted or given up.
        """
        delay = RETRY_INITIAL
        held = False
        try:
            while True:
                try:
                    await self._consumer.consume(Batch(Signal.LOGS, data=data, items=items))
                except asyncio.CancelledError:
                    self.refuse("shutting_down", items)
                    raise
                except Exception as error:
                    if isinstance(error, PermanentError) or self.closing:
                        self._refusal(error, items, closing=self.closing)
                        return
                    if not held:
                        held = True
                        hold(True)
                    if not isinstance(error, RetryableError):
                        self._log.warning(
                            f"retry:{type(error).__name__}",
                            "The pipeline failed with an unexpected error; the syslog connection "
                            "stops reading and the records are tried again.",
                            {"component": self._label, "transport": self.transport, "error": repr(error)})
                    await asyncio.sleep(self._pause(error, delay))
                    delay = min(delay * 2, RETRY_MAX)
                    continue
                self._accepted.inc(items)
                return
        finally:
            if held:
                hold(False)

    @staticmethod
    def _pause(error: Exception, delay: float) -> float:
        if isinstance(error, RetryableError) and error.retry_after:
            return min(error.retry_after, RETRY_MAX)
        return delay

    def _refusal(self, error: Exception, items: int, closing: bool = False) -> None:
        if isinstance(error, PermanentError) and error.rejected is not None and 0 <= error.rejected < items:
            self._accepted.inc(items - error.rejected)
            items = error.rejected
        reason = "shutting_down" if closing and not isinstance(error, PermanentError) else reason_of(error)
        self.refuse(reason, items)
        if not isinstance(error, (PermanentError, RetryableError)):
            self._log.warning(
                f"error:{type(error).__name__}",
                "The pipeline failed with an unexpected error; the syslog records were dropped.",
                {"component": self._label, "transport": self.transport, "error": repr(error)}, items)
