"""Shared doubles for the exporter tests: a clock that does not wait, a scripted send, counters."""

from __future__ import annotations

import asyncio

from agent.component import Settings
from agent.model import Batch


class FakeClock:
    """Time that moves only when something sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class ScriptedSend:
    """A `send(batch)` that raises the scripted errors in order, then succeeds.

    `gate` (open by default) makes every attempt wait, to hold batches in flight.
    """

    def __init__(self, *outcomes: BaseException | None) -> None:
        self.outcomes = list(outcomes)
        self.attempts = 0
        self.delivered: list[Batch] = []
        self.gate = asyncio.Event()
        self.gate.set()
        #: Set when an attempt has started (and, with the gate closed, is held).
        self.entered = asyncio.Event()

    async def __call__(self, batch: Batch) -> None:
        self.attempts += 1
        self.entered.set()
        await self.gate.wait()
        if self.outcomes:
            outcome = self.outcomes.pop(0)
            if outcome is not None:
                raise outcome
        self.delivered.append(batch)

    @property
    def items(self) -> int:
        return sum(b.items for b in self.delivered)


def metric(settings: Settings, name: str, **labels: str) -> float:
    """A sample of the settings' registry, labelled with the component; 0 when absent."""
    value = settings.metrics.registry.get_sample_value(name, {"component": settings.label, **labels})
    return value or 0.0
