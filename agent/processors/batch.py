"""`batch`: merge small batches into larger ones before they go on (traces, metrics, logs).

Items are spans, metric data points or log records. A merged batch is sent when it holds
`send_batch_size` items or `timeout` after its first item arrived, whichever comes first
(`timeout: 0` sends at once; `send_batch_size: 0` sends every batch as it comes). No merged
batch holds more than `send_batch_max_size` items (0 = no limit): a batch that would not fit
next to what is waiting sends the waiting one first, and a single incoming batch larger than
the limit is split with `agent.model.split`. With `metadata_keys`, batches are merged only
with batches whose client metadata has the same values for those keys (case-insensitive);
the merged batch carries just those values as its client metadata.

    processors:
      batch:
        send_batch_size: 8192
        send_batch_max_size: 10000
        timeout: 200ms

Guarantees, stronger than the Collector's (which accepts into a channel and loses export
errors):

- `consume(batch)` returns only after the merged batch holding the caller's items was
  accepted by the next consumer, and raises what the next consumer raised. Every caller
  whose items were in a failed merged batch gets that error. Nothing accepted is lost and
  nothing is sent twice by this processor.
- A batch that was split waits for all its pieces. If any piece fails, the caller gets that
  error (the first failure in piece order); pieces already accepted downstream stay
  accepted, so a sender that retries may deliver those items twice.
- Merging joins protobuf encodings (`Batch.merge`); nothing is parsed or walked unless a
  batch must be split. Input batches are never changed (`mutates_data = False`).
- Sends run on the processor's own named tasks, at most `max_in_flight` (a Flowglass option,
  default 4) at once. At most about 2 × `send_batch_max_size` (or `send_batch_size`) items
  wait for a send; beyond that `consume` waits, first come first served (backpressure).
- `shutdown()` refuses new data (`ShuttingDownError`), sends what is waiting at once and
  waits for the sends in flight. Cancelled at the service's deadline, it cancels them and
  their callers get `ShuttingDownError`.
- `metadata_cardinality_limit` bounds how many distinct metadata combinations are batching
  at one time (0 = no limit); a new combination beyond it is refused with a retryable error.
  The Collector counts combinations ever seen and refuses permanently; here a combination
  stops counting once its batch is sent.

Because callers wait for their merged batch, a batch fills to `send_batch_size` only when
that many items are outstanding at once (many senders, or large requests); with a few
senders each request waits up to `timeout`, so keep `timeout` short (the default 200ms is).

Items in and out are counted by the pipeline around every processor; this module counts
sends by trigger (`size`, `timeout`, `shutdown`), the items per send, and refusals.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated, Any, NoReturn

import msgspec

from agent.component import Consumer, ProcessorFactory, Settings, Stability, TaskOwner
from agent.config.types import Duration
from agent.errors import PermanentError, RetryableError, ShuttingDownError
from agent.model import Batch, ClientInfo, Signal
from agent.model.batch import NO_CLIENT
from agent.model.split import split

_UINT32_MAX = 2**32 - 1
_Count = Annotated[int, msgspec.Meta(ge=0, le=_UINT32_MAX)]
_MetadataKey = tuple[tuple[str, ...], ...]


class BatchConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: Time after which a merged batch is sent whatever its size; 0 sends at once.
    timeout: Duration = Duration(0.2)
    #: Items after which a merged batch is sent whatever the timeout.
    send_batch_size: _Count = 8192
    #: Most items in one sent batch; larger incoming batches are split. 0 = no limit.
    send_batch_max_size: _Count = 0
    #: Client metadata keys whose values separate batches (case-insensitive).
    metadata_keys: list[str] = msgspec.field(default_factory=list)
    #: Most distinct metadata value combinations batching at one time; 0 = no limit.
    metadata_cardinality_limit: _Count = 1000
    #: Flowglass option: most merged batches being sent at once.
    max_in_flight: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 4

    def __post_init__(self) -> None:
        if self.send_batch_max_size and self.send_batch_max_size < self.send_batch_size:
            raise ValueError(
                f"send_batch_max_size ({self.send_batch_max_size}) must be greater than or equal "
                f"to send_batch_size ({self.send_batch_size}), or 0 for no limit"
            )
        seen: set[str] = set()
        for key in self.metadata_keys:
            lower = key.lower()
            if lower in seen:
                raise ValueError(f"duplicate entry in metadata_keys: {lower!r} (keys are case-insensitive)")
            seen.add(lower)


@dataclass(eq=False)
class _Merged:
    """A merged batch being filled or waiting for a send slot, and the callers awaiting it."""

    key: _MetadataKey
    parts: list[Batch] = field(default_factory=list)
    items: int = 0
    callers: list[asyncio.Future[None]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Waiter:
    """A caller waiting for room; `placed` resolves once its batch is in a merged batch."""

    batch: Batch
    key: _MetadataKey
    result: asyncio.Future[None]
    placed: asyncio.Future[None]


class BatchProcessor:
    """Merges batches of one pipeline and signal; see the module docstring for guarantees."""

    mutates_data = False

    def __init__(
        self, settings: Settings, config: BatchConfig, signal: Signal, next_consumer: Consumer
    ) -> None:
        self._next = next_consumer
        self._logger = settings.logger
        self._timeout = float(config.timeout)
        self._size = config.send_batch_size
        self._max_size = config.send_batch_max_size
        self._keys = tuple(k.lower() for k in config.metadata_keys)
        self._cardinality = config.metadata_cardinality_limit
        self._max_in_flight = config.max_in_flight
        #: Items that may wait (open or ready merged batches) before `consume` waits.
        self._max_waiting = 2 * max(self._max_size or self._size, 1)
        self._retry_after = max(self._timeout, 0.1)

        self._open: dict[_MetadataKey, _Merged] = {}
        self._ready: deque[_Merged] = deque()
        self._waiters: deque[_Waiter] = deque()
        self._waiting_items = 0
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._waking = False
        self._closing = False
        self._aborted = False

        label = settings.label
        pipeline = str(settings.pipeline) if settings.pipeline is not None else ""
        labels = (label, pipeline, signal.value)
        m = settings.metrics
        self._send_size = m.batch_send_size.labels(*labels)
        self._triggers = {t: m.batch_triggers.labels(*labels, t) for t in ("size", "timeout", "shutdown")}
        self._refused_shutdown = m.processor_refused.labels(*labels, "shutting_down")
        self._refused_cardinality = m.processor_refused.labels(*labels, "metadata_cardinality")
        self._tasks = TaskOwner(f"{label}/{pipeline}", self._logger, settings.report_status)

    # -- the consumer side ---------------------------------------------------------------

    @property
    def waiting_items(self) -> int:
        """Items in merged batches that are not being sent yet."""
        return self._waiting_items

    @property
    def in_flight(self) -> int:
        """Merged batches being sent now."""
        return self._in_flight

    @property
    def blocked_callers(self) -> int:
        """Callers waiting for room (backpressure)."""
        return len(self._waiters)

    async def start(self) -> None:
        return None

    async def consume(self, batch: Batch) -> None:
        if self._closing:
            self._refuse_shutting_down(batch.items)
        if self._max_size and batch.items > self._max_size:
            await self._consume_split(batch)
            return
        result = await self._enter(batch)
        await _caller_outcome(result, batch.items)

    async def _consume_split(self, batch: Batch) -> None:
        accepted: list[tuple[asyncio.Future[None], int]] = []
        error: BaseException | None = None
        for piece in split(batch, self._max_size):
            try:
                accepted.append((await self._enter(piece), piece.items))
            except Exception as exc:
                # Later pieces are not offered; earlier ones are already on their way.
                error = exc
                break
        outcomes = await asyncio.gather(
            *(_caller_outcome(fut, n) for fut, n in accepted), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        if error is not None:
            raise error

    async def _enter(self, batch: Batch) -> asyncio.Future[None]:
        """Place `batch` in a merged batch, waiting for room; the future resolves on its send."""
        if self._closing:
            self._refuse_shutting_down(batch.items)
        key = self._key_of(batch)
        result: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._waiters and self._fits(batch.items):
            self._place(batch, key, result)
            return result
        waiter = _Waiter(batch, key, result, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter.placed
        except asyncio.CancelledError:
            if waiter.placed.cancelled() or not waiter.placed.done():
                self._discard_waiter(waiter)  # not placed yet: withdraw
            elif waiter.placed.exception() is None:
                # Placed just before the cancellation: the items go out, nobody waits.
                result.cancel()
            raise
        return result

    def _refuse_shutting_down(self, items: int) -> NoReturn:
        self._refused_shutdown.inc(items)
        raise ShuttingDownError("the batch processor is shutting down", retry_after=1.0)

    def _discard_waiter(self, waiter: _Waiter) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass

    def _key_of(self, batch: Batch) -> _MetadataKey:
        if not self._keys:
            return ()
        return tuple(batch.client.get(k) for k in self._keys)

    def _fits(self, items: int) -> bool:
        # A batch larger than the whole bound still goes when nothing else waits.
        return self._waiting_items == 0 or self._waiting_items + items <= self._max_waiting

    # -- merging -------------------------------------------------------------------------

    def _place(self, batch: Batch, key: _MetadataKey, result: asyncio.Future[None]) -> None:
        """Add `batch` to the open merged batch of its key (raises when refused)."""
        items = batch.items
        merged = self._open.get(key)
        if merged is not None and self._max_size and merged.items + items > self._max_size:
            self._seal(merged, "size")
            merged = None
        if merged is None:
            if self._keys and self._cardinality and len(self._open) >= self._cardinality:
                self._refused_cardinality.inc(items)
                raise RetryableError(
                    "too many distinct metadata combinations are batching at once "
                    f"(metadata_cardinality_limit is {self._cardinality})",
                    retry_after=self._retry_after,
                )
            merged = self._open[key] = _Merged(key)
            if self._timeout > 0:
                merged.timer = asyncio.get_running_loop().call_later(self._timeout, self._on_timeout, merged)
        merged.parts.append(batch)
        merged.items += items
        merged.callers.append(result)
        self._waiting_items += items
        if merged.items >= self._size or self._timeout <= 0:
            self._seal(merged, "size")

    def _on_timeout(self, merged: _Merged) -> None:
        if self._open.get(merged.key) is merged:
            merged.timer = None
            self._seal(merged, "timeout")

    def _seal(self, merged: _Merged, trigger: str) -> None:
        """Close `merged` to new items and queue it for sending."""
        del self._open[merged.key]
        if merged.timer is not None:
            merged.timer.cancel()
            merged.timer = None
        self._triggers[trigger].inc()
        self._ready.append(merged)
        self._dispatch()

    # -- sending -------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start sends while slots are free, then let waiting callers in."""
        freed = False
        while self._ready and self._in_flight < self._max_in_flight and not self._aborted:
            merged = self._ready.popleft()
            self._in_flight += 1
            self._waiting_items -= merged.items
            freed = True
            self._tasks.spawn("send", self._send(merged))
        if self._in_flight or self._ready:
            self._idle.clear()
        else:
            self._idle.set()
        if freed:
            self._wake()

    def _wake(self) -> None:
        """Place waiting callers, first come first served, while they fit."""
        if self._waking:
            return  # the outer call's loop sees the room this call would have used
        self._waking = True
        try:
            while self._waiters and self._fits(self._waiters[0].batch.items):
                waiter = self._waiters.popleft()
                if waiter.placed.done():
                    continue  # cancelled while waiting
                try:
                    self._place(waiter.batch, waiter.key, waiter.result)
                except RetryableError as exc:
                    waiter.placed.set_exception(exc)
                else:
                    waiter.placed.set_result(None)
        finally:
            self._waking = False

    async def _send(self, merged: _Merged) -> None:
        parts = merged.parts
        # A batch that was not merged goes on as it came, with its sender's client info.
        if len(parts) == 1:
            batch = parts[0]
        else:
            client = (
                ClientInfo(metadata=dict(zip(self._keys, merged.key, strict=True)))
                if self._keys
                else NO_CLIENT
            )
            batch = Batch.merge(parts, client=client)
        self._send_size.observe(merged.items)
        error: BaseException | None = None
        try:
            await self._next.consume(batch)
        except Exception as exc:
            error = exc
        except BaseException:
            # Cancelled at the shutdown deadline (or the process is exiting).
            error = ShuttingDownError(
                "the batch processor stopped before the next component accepted the batch", retry_after=1.0
            )
            raise
        finally:
            _resolve(merged.callers, error)
            self._in_flight -= 1
            self._dispatch()

    # -- shutdown ------------------------------------------------------------------------

    async def shutdown(self) -> None:
        if not self._closing:
            self._closing = True
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.placed.done():
                    self._refused_shutdown.inc(waiter.batch.items)
                    waiter.placed.set_exception(
                        ShuttingDownError("the batch processor is shutting down", retry_after=1.0)
                    )
            for merged in list(self._open.values()):
                self._seal(merged, "shutdown")
        try:
            await self._idle.wait()
        except asyncio.CancelledError:
            self._abort()
            await self._tasks.close()
            raise
        await self._tasks.close()

    def _abort(self) -> None:
        """Give up on what was not sent: its callers are told to retry."""
        self._aborted = True
        unsent = sum(m.items for m in self._ready)
        while self._ready:
            merged = self._ready.popleft()
            _resolve(
                merged.callers, ShuttingDownError("the batch processor stopped before sending the batch")
            )
        self._waiting_items = 0
        if unsent or self._in_flight:
            self._logger.warning(
                "The batch processor was stopped before everything it held was sent; "
                "the senders of those items were told to retry.",
                extra={"unsent_items": unsent, "sends_cancelled": self._in_flight},
            )


def _resolve(callers: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for fut in callers:
        if fut.done():
            continue  # the caller was cancelled
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)


async def _caller_outcome(result: asyncio.Future[None], items: int) -> None:
    """Wait for a caller's merged batch; narrow a partial rejection to the caller's items."""
    try:
        await result
    except PermanentError as exc:
        if exc.rejected is not None and exc.rejected > items:
            raise PermanentError(str(exc), rejected=items) from exc
        raise


def _create(settings: Settings, config: Any, signal: Signal, next_consumer: Consumer) -> BatchProcessor:
    assert isinstance(config, BatchConfig)
    return BatchProcessor(settings, config, signal, next_consumer)


FACTORY = ProcessorFactory(
    type="batch",
    config_type=BatchConfig,
    description=(
        "Merges batches until send_batch_size items or timeout, splitting batches above "
        "send_batch_max_size; callers wait for the merged batch to be accepted."
    ),
    signals={Signal.TRACES: Stability.BETA, Signal.METRICS: Stability.BETA, Signal.LOGS: Stability.BETA},
    create=_create,
)

__all__ = ["FACTORY", "BatchConfig", "BatchProcessor"]
