"""The receiver's way into its pipelines, shared by the gRPC and HTTP servers.

A `SignalIntake` hands a decoded batch to the signal's consumer, turns the result into an
`Outcome`, and counts items accepted or refused. A `Gate` shared by every intake of one
receiver tracks requests in flight: once closed it refuses new requests and lets the
receiver wait, bounded, for those still being consumed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from agent.component import Consumer, Settings
from agent.errors import FlowglassError
from agent.model import Batch, Signal
from agent.receivers.otlp.outcome import ACCEPTED, Outcome, Verdict, classify

Transport = Literal["grpc", "http"]

#: Reasons a whole request is refused before its items are known.
REQUEST_REFUSAL_REASONS = (
    "malformed",
    "too_large",
    "unsupported_media_type",
    "decompression",
    "shutting_down",
)


class Gate:
    """Requests in flight across one receiver's servers; closed once shutdown begins."""

    __slots__ = ("_idle", "closed", "in_flight")

    def __init__(self) -> None:
        self.closed = False
        self.in_flight = 0
        self._idle: asyncio.Event | None = None

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()

    def close(self) -> None:
        """Refuse new requests from now on."""
        self.closed = True

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the requests in flight; True when they all ended."""
        if self.in_flight == 0:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


class ErrorLog:
    """Logs unexpected consumer errors at WARNING: the first of each type, then at most once
    per `interval` seconds per type, saying how many were not logged in between."""

    def __init__(
        self, logger: logging.Logger, interval: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[type[BaseException], float] = {}
        self._suppressed: dict[type[BaseException], int] = {}

    def report(self, error: BaseException, extra: dict[str, Any]) -> None:
        kind = type(error)
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        self._logger.warning(
            "A pipeline failed with an unexpected error; the sender was told to retry.",
            extra={**extra, "error": repr(error), "similar_errors_not_logged": suppressed},
            exc_info=error,
        )


class SignalIntake:
    """One signal of one transport: its consumer and its label-bound counters."""

    def __init__(
        self,
        settings: Settings,
        signal: Signal,
        transport: Transport,
        consumer: Consumer,
        gate: Gate,
        errors: ErrorLog,
    ) -> None:
        self.signal = signal
        self.transport = transport
        self._consumer = consumer
        self._gate = gate
        self._errors = errors
        self._label = settings.label
        m = settings.metrics
        labels = (settings.label, signal.value, transport)
        self._accepted = m.receiver_accepted.labels(*labels)
        self._refused: dict[Verdict, Any] = {
            v: m.receiver_refused.labels(*labels, v.value) for v in Verdict if v is not Verdict.ACCEPTED
        }
        self._refused_requests = {
            r: m.receiver_refused_requests.labels(*labels, r) for r in REQUEST_REFUSAL_REASONS
        }

    @property
    def closed(self) -> bool:
        """True once the receiver shuts down: new requests are refused as retryable."""
        return self._gate.closed

    def refuse_request(self, reason: str) -> None:
        """Count a request refused before its items could be counted."""
        self._refused_requests[reason].inc()

    async def consume(self, batch: Batch) -> Outcome:
        """Hand `batch` to the consumer and count what became of its items."""
        items = batch.items  # before consume: a consumer may change the batch
        gate = self._gate
        gate.enter()
        try:
            await self._consumer.consume(batch)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            outcome = classify(error, items)
            self._count_refusal(outcome, items)
            if not isinstance(error, FlowglassError):
                self._errors.report(
                    error,
                    {"component": self._label, "signal": self.signal.value, "transport": self.transport},
                )
            return outcome
        finally:
            gate.leave()
        self._accepted.inc(items)
        return ACCEPTED

    def _count_refusal(self, outcome: Outcome, items: int) -> None:
        if outcome.verdict is Verdict.PARTIAL:
            self._accepted.inc(items - outcome.rejected)
            self._refused[Verdict.PARTIAL].inc(outcome.rejected)
        else:
            self._refused[outcome.verdict].inc(items)
