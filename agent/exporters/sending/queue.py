"""The sending queue seam and its bounded in-memory implementation.

`BatchQueue` is what the `Sender` needs from a queue. The in-memory `MemoryQueue` is the
one in use; a persistent (write-ahead log) queue will implement the same Protocol so that
exporters never change. The contract a persistent queue keeps: `put` returns only once the
batch is durable; a batch taken by `get` stays stored until its `ack()`; `nack()` and
`abandon()` keep what is stored for the next start instead of losing it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Protocol

from agent.errors import PermanentError, QueueFullError, ShuttingDownError
from agent.model import Batch


class BatchTooLargeError(PermanentError):
    """The batch alone is larger than the whole queue: it can never be queued."""


class QueuedBatch(Protocol):
    """A batch taken from a queue, with the handle that settles it."""

    @property
    def batch(self) -> Batch: ...

    def ack(self) -> None:
        """The batch is done with (delivered, or given up on and counted): forget it."""

    def nack(self) -> bool:
        """The batch was interrupted before it was done with (shutdown deadline).

        Returns True when the queue keeps it for a later start (persistent queue) and False
        when it is lost (memory queue); the caller counts what is lost.
        """


class BatchQueue(Protocol):
    """A bounded FIFO of batches shared by an exporter's consumer tasks."""

    async def put(self, batch: Batch, *, block: bool = False) -> None:
        """Add a batch.

        Raises `QueueFullError` when it does not fit and `block` is False (with `block`,
        waits for room), `BatchTooLargeError` when it could never fit, and
        `ShuttingDownError` once the queue is closed.
        """

    async def get(self) -> QueuedBatch | None:
        """The oldest batch, waiting for one; None once the queue is closed and empty."""

    @property
    def size(self) -> int:
        """What is queued, in the sizer's unit (not counting batches taken by `get`)."""

    @property
    def capacity(self) -> int:
        """The bound on `size`."""

    def close(self) -> None:
        """Take no more batches; waiting `put`s fail, `get` drains what is left, then None."""

    def abandon(self) -> list[Batch]:
        """The consumers stopped before draining: return the queued batches that are lost.

        The memory queue empties itself and returns them all; a persistent queue keeps them
        on disk and returns an empty list.
        """


class _MemoryItem:
    __slots__ = ("batch",)

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def ack(self) -> None:
        return None

    def nack(self) -> bool:
        return False


class MemoryQueue:
    """`BatchQueue` in memory, bounded by `capacity` (in `sizer` units) and `max_bytes`.

    `sizer(batch)` gives a batch's size; `max_bytes` (0 = no bound) bounds the sum of
    `batch.nbytes`. Sizes are released when a batch is taken by `get`.
    """

    def __init__(self, capacity: int, sizer: Callable[[Batch], int], max_bytes: int = 0) -> None:
        if capacity < 1:
            raise ValueError("a queue needs a capacity of at least 1")
        self._capacity = capacity
        self._sizer = sizer
        self._max_bytes = max_bytes
        self._entries: deque[tuple[Batch, int, int]] = deque()
        self._size = 0
        self._bytes = 0
        self._closed = False
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()

    @property
    def size(self) -> int:
        return self._size

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def nbytes(self) -> int:
        """Encoded bytes queued (counted only when `max_bytes` is set)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def _fits(self, size: int, nbytes: int) -> bool:
        if self._size + size > self._capacity:
            return False
        return not self._max_bytes or self._bytes + nbytes <= self._max_bytes

    async def put(self, batch: Batch, *, block: bool = False) -> None:
        if self._closed:
            raise ShuttingDownError("the sending queue is closed: the exporter is shutting down")
        size = self._sizer(batch)
        nbytes = batch.nbytes if self._max_bytes else 0
        if size > self._capacity or (self._max_bytes and nbytes > self._max_bytes):
            raise BatchTooLargeError(
                f"a batch of {batch.items} items ({nbytes or batch.nbytes} bytes) is larger than "
                f"the whole sending queue (queue_size {self._capacity}, max_bytes {self._max_bytes})"
            )
        while not self._fits(size, nbytes):
            if not block:
                raise QueueFullError("the sending queue is full")
            await self._wait_for_room()
        self._entries.append((batch, size, nbytes))
        self._size += size
        self._bytes += nbytes
        _wake_one(self._getters)

    async def _wait_for_room(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._putters.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()
            try:
                self._putters.remove(waiter)
            except ValueError:
                pass
        if self._closed:
            raise ShuttingDownError("the sending queue closed while waiting for room")

    async def get(self) -> QueuedBatch | None:
        while not self._entries:
            if self._closed:
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                try:
                    self._getters.remove(waiter)
                except ValueError:
                    pass
                # A wake-up this getter will not use goes to the next one.
                if self._entries:
                    _wake_one(self._getters)
                raise
        batch, size, nbytes = self._entries.popleft()
        self._size -= size
        self._bytes -= nbytes
        # Sizes differ, so every blocked putter checks again whether it fits now.
        _wake_all(self._putters)
        return _MemoryItem(batch)

    def close(self) -> None:
        self._closed = True
        _wake_all(self._getters)
        _wake_all(self._putters)

    def abandon(self) -> list[Batch]:
        lost = [entry[0] for entry in self._entries]
        self._entries.clear()
        self._size = 0
        self._bytes = 0
        _wake_all(self._putters)
        return lost


def _wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


def _wake_all(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
