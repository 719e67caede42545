"""`PartitionState`: which records of one assigned partition are done, and what may be committed.

Records are started in offset order and may finish in any order. The commit point is the
offset of the oldest record not yet finished — or, when every started record finished, the
offset after the last one started — so committing it never passes over a record whose
`consume()` has not returned. Offsets need not be contiguous (compaction, transaction
markers): the point moves over gaps only through records that were started.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class PartitionState:
    """Offsets in flight and the commit point of one topic partition; `tasks` run its records."""

    __slots__ = ("_done", "_started", "committed", "lag", "next_offset", "partition",
                 "retrying", "revoked", "tasks", "topic", "tp")

    def __init__(self, tp: Any, committed: int | None = None) -> None:
        self.tp = tp
        self.topic: str = tp.topic
        self.partition: int = tp.partition
        #: The offset last committed (the next record the group reads), when known.
        self.committed = committed
        #: The offset after the last record started, once one was.
        self.next_offset: int | None = None
        self._started: deque[int] = deque()
        self._done: set[int] = set()
        #: Records of this partition waiting out a backoff: while above 0 the partition is paused.
        self.retrying = 0
        #: Set when the partition was taken away or the receiver stops: start nothing more.
        self.revoked = False
        self.tasks: set[asyncio.Task[Any]] = set()
        #: The lag gauge child of this partition (set by the receiver).
        self.lag: Any = None

    def start(self, offset: int) -> None:
        """A record was handed to the pipeline; offsets must come in increasing order."""
        if self.next_offset is not None and offset < self.next_offset:
            raise ValueError(f"offset {offset} started after {self.next_offset - 1}")
        if self.next_offset is None and self.committed is None:
            # Fetching starts at the group's committed offset (or where initial_offset
            # put it): there is nothing to commit until a record at or after it finishes.
            self.committed = offset
        self._started.append(offset)
        self.next_offset = offset + 1

    def finish(self, offset: int) -> None:
        """The record's `consume()` returned (or it was passed over for good)."""
        self._done.add(offset)
        started, done = self._started, self._done
        while started and started[0] in done:
            done.discard(started.popleft())

    @property
    def in_flight(self) -> int:
        """Records started and not finished."""
        return len(self._started) - len(self._done)

    def commit_point(self) -> int | None:
        """The offset that may be committed now, or None before any record was started."""
        if self._started:
            return self._started[0]
        return self.next_offset

    def pending_commit(self) -> int | None:
        """The commit point when it is ahead of what was committed, else None."""
        point = self.commit_point()
        if point is None or (self.committed is not None and point <= self.committed):
            return None
        return point
