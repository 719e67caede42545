"""The seams between components (DESIGN §4).

Any object with the right methods is a component; tests use plain classes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from agent.model import Batch


@runtime_checkable
class Consumer(Protocol):
    """Takes batches.

    Returning means accepted. `agent.errors.PermanentError` means never accepted (count, drop,
    never retry). Any other exception means it may succeed later. A consumer that changes the
    batches it is given says so with `mutates_data = True`; a fan-out then gives it a copy.
    """

    mutates_data: bool

    async def consume(self, batch: Batch) -> None: ...


@runtime_checkable
class Component(Protocol):
    """Has a lifecycle.

    `start()` returns quickly and owns the background tasks it creates. `shutdown()` is
    idempotent: it stops intake first, flushes what it holds downstream, then ends its tasks
    within the deadline the service gives it (by cancelling the awaiting call).
    """

    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...


class Receiver(Component, Protocol):
    """Takes data from outside and hands it to the consumers it was created with.

    A receiver may also have `async stop_intake()`: refuse new requests but keep answering
    those in flight. The graph calls it first at shutdown, drains the processors and
    exporters (which completes the in-flight requests), then calls `shutdown()`.
    """


class Processor(Component, Consumer, Protocol):
    """Sits in one pipeline, takes batches and passes (changed) batches to the next consumer."""


class Exporter(Component, Consumer, Protocol):
    """Sends batches out of the agent. One instance serves every pipeline that names it."""


class Connector(Component, Consumer, Protocol):
    """Is an exporter in one pipeline and a receiver in another (traces → metrics, ...)."""
