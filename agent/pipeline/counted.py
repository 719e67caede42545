"""Counting wrappers the graph puts around processors and connectors.

A processor gets `processor_incoming` counted on the way in and `processor_outgoing` on the
way out (through the consumer it was created with), so no processor has to count its own
throughput. Each wrapper binds its label children once.
"""

from __future__ import annotations

from agent.component import Consumer
from agent.model import Batch


class CountedConsumer:
    """Counts the items of every batch that the wrapped consumer is given, then passes it on.

    Counting happens before the call: it measures what was offered. Refusals are counted by
    the component that refuses (it knows why).
    """

    __slots__ = ("_counter", "_inner", "mutates_data")

    def __init__(self, inner: Consumer, counter: object) -> None:
        self._inner = inner
        self._counter = counter
        self.mutates_data = inner.mutates_data

    async def consume(self, batch: Batch) -> None:
        self._counter.inc(batch.items)  # type: ignore[attr-defined]
        await self._inner.consume(batch)
