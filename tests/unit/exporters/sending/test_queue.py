"""MemoryQueue: FIFO, bounds, close/drain, abandon, and hand-off when a getter is cancelled."""

from __future__ import annotations

import asyncio

import pytest

from agent.errors import QueueFullError, ShuttingDownError
from agent.exporters.sending import BatchQueue, MemoryQueue
from agent.testing import make_traces


def _requests(batch: object) -> int:
    return 1


async def test_fifo_and_sizes() -> None:
    q: BatchQueue = MemoryQueue(3, _requests)
    batches = [make_traces(i + 1) for i in range(3)]
    for b in batches:
        await q.put(b)
    assert (q.size, q.capacity) == (3, 3)
    with pytest.raises(QueueFullError):
        await q.put(make_traces(1))
    got = []
    for _ in range(3):
        item = await q.get()
        assert item is not None
        got.append(item.batch)
        item.ack()
    assert got == batches
    assert q.size == 0


async def test_close_drains_then_returns_none_and_refuses_puts() -> None:
    q = MemoryQueue(2, _requests)
    await q.put(make_traces(1))
    q.close()
    with pytest.raises(ShuttingDownError):
        await q.put(make_traces(1))
    first = await q.get()
    assert first is not None and not first.nack()  # memory queue: an interrupted batch is lost
    assert await q.get() is None


async def test_close_wakes_a_waiting_getter() -> None:
    q = MemoryQueue(2, _requests)
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.close()
    assert await asyncio.wait_for(getter, 5) is None


async def test_abandon_returns_what_is_queued() -> None:
    q = MemoryQueue(5, _requests)
    a, b = make_traces(1), make_traces(2)
    await q.put(a)
    await q.put(b)
    assert q.abandon() == [a, b]
    assert q.size == 0


async def test_a_cancelled_getter_passes_its_wakeup_on() -> None:
    q = MemoryQueue(5, _requests)
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    await q.put(make_traces(1))  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it takes the batch
    item = await asyncio.wait_for(second, 5)
    assert item is not None and item.batch.items == 1
