"""A scripted stand-in for aiokafka's consumer and producer, and a pipeline that holds batches."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from agent.model import Batch


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = 1_700_000_000_000


class FakeConsumer:
    """Serves `records` to `getmany` for assigned, unpaused partitions; records every call."""

    def __init__(self) -> None:
        self.options: dict[str, Any] = {}
        self.start_errors: list[BaseException] = []
        self.starts = 0
        self.stopped = False
        self.listener: Any = None
        self.topics: list[str] = []
        self.assignment: set[TopicPartition] = set()
        self.pending: dict[TopicPartition, list[Record]] = {}
        self.paused: set[TopicPartition] = set()
        self.pause_calls: list[TopicPartition] = []
        self.resume_calls: list[TopicPartition] = []
        self.commits: list[dict[TopicPartition, int]] = []
        self.highwaters: dict[TopicPartition, int] = {}
        self.max_records_seen: list[int] = []
        self.subscribed = asyncio.Event()

    def __call__(self, **options: Any) -> FakeConsumer:
        self.options = options
        return self

    async def start(self) -> None:
        self.starts += 1
        if self.start_errors:
            raise self.start_errors.pop(0)

    async def stop(self) -> None:
        self.stopped = True

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.topics = list(topics)
        self.listener = listener
        self.subscribed.set()

    async def rebalance(self, assigned: list[TopicPartition]) -> None:
        """What the coordinator does: revoke everything, then assign `assigned`."""
        await self.listener.on_partitions_revoked(set(self.assignment))
        self.assignment = set(assigned)
        self.paused.clear()
        await self.listener.on_partitions_assigned(set(assigned))

    def add(self, *records: Record) -> None:
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            self.pending.setdefault(tp, []).append(r)
            self.highwaters[tp] = max(self.highwaters.get(tp, 0), r.offset + 1)

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Record]]:
        self.max_records_seen.append(max_records or 0)
        out: dict[TopicPartition, list[Record]] = {}
        budget = max_records or 10**9
        for tp in sorted(self.assignment):
            if tp in self.paused or budget <= 0:
                continue
            queue = self.pending.get(tp, [])
            take, self.pending[tp] = queue[:budget], queue[budget:]
            if take:
                out[tp] = take
                budget -= len(take)
        if not out:
            await asyncio.sleep(0.005)
        return out

    def pause(self, tp: TopicPartition) -> None:
        self.paused.add(tp)
        self.pause_calls.append(tp)

    def resume(self, tp: TopicPartition) -> None:
        self.paused.discard(tp)
        self.resume_calls.append(tp)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def committed_offset(self, tp: TopicPartition) -> int | None:
        for commit in reversed(self.commits):
            if tp in commit:
                return commit[tp]
        return None

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        self.errors: list[BaseException] = []
        self.stopped = False

    def __call__(self, **options: Any) -> FakeProducer:
        return self

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    async def send_and_wait(self, topic: str, value: bytes | None, key: bytes | None = None,
                            headers: Any = None) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append((topic, value, key, list(headers or ())))


class HeldSink:
    """A pipeline whose `consume` waits until the test releases that batch (by its first span name)."""

    mutates_data = False

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.entered: list[str] = []
        self.accepted: list[Batch] = []
        self.concurrent = 0
        self.max_concurrent = 0

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def consume(self, batch: Batch) -> None:
        name = batch.message.resource_spans[0].scope_spans[0].spans[0].name  # type: ignore[union-attr]
        self.entered.append(name)
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            await self.gate(name).wait()
        finally:
            self.concurrent -= 1
        self.accepted.append(batch)


async def until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110  (polls a plain condition)
            await asyncio.sleep(0.002)
