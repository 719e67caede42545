"""Fan-out: one batch to several consumers, copying only for those that change it.

Consumers that do not mutate share the original batch. Each consumer that mutates gets its
own copy — except that when no consumer only reads, the last mutating one may take the
original. Copies are made before any consumer runs, so nobody sees another's changes.

Outcome: the fan-out returns when every consumer accepted. If any consumer raised a
non-permanent error, that error is raised (the sender retries, and consumers that had
accepted will see the data again — the Collector behaves the same way); otherwise, if any
raised `PermanentError`, that is raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from agent.component import Consumer
from agent.errors import PermanentError
from agent.model import Batch


class FanOut:
    def __init__(self, consumers: Sequence[Consumer]) -> None:
        if not consumers:
            raise ValueError("a fan-out needs at least one consumer")
        self._readers = [c for c in consumers if not c.mutates_data]
        self._writers = [c for c in consumers if c.mutates_data]
        self.consumers = tuple(consumers)
        # The fan-out itself never changes data: it hands mutators their own copies.
        self.mutates_data = False

    async def consume(self, batch: Batch) -> None:
        calls = [c.consume(batch) for c in self._readers]
        writers = self._writers
        if writers:
            last_takes_original = not self._readers
            for i, w in enumerate(writers):
                own = batch if (last_takes_original and i == len(writers) - 1) else batch.copy()
                calls.append(w.consume(own))
        if len(calls) == 1:
            await calls[0]
            return
        results = await asyncio.gather(*calls, return_exceptions=True)
        permanent: BaseException | None = None
        for r in results:
            if isinstance(r, BaseException):
                if isinstance(r, asyncio.CancelledError):
                    raise r
                if not isinstance(r, PermanentError):
                    raise r
                permanent = permanent or r
        if permanent is not None:
            raise permanent


def fan_out(consumers: Sequence[Consumer]) -> Consumer:
    """The consumer itself when there is one, else a `FanOut`."""
    if len(consumers) == 1:
        return consumers[0]
    return FanOut(consumers)
