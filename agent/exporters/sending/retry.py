"""Backoff between send attempts, and the clock it waits on (injectable for tests)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Protocol

from agent.exporters.sending.config import RetryConfig


class Clock(Protocol):
    """Time as the retry loop sees it. Tests pass one whose `sleep` returns at once."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """`time.monotonic` and `asyncio.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class Backoff:
    """The delays before each retry of one batch, as the Collector computes them.

    The interval starts at `initial_interval` and grows by `multiplier` up to
    `max_interval`; each delay is the interval spread uniformly by `± randomization_factor`.
    """

    __slots__ = ("_config", "_interval", "_rng")

    def __init__(self, config: RetryConfig, rng: random.Random | None = None) -> None:
        self._config = config
        self._interval = float(config.initial_interval)
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        interval = self._interval
        spread = self._config.randomization_factor * interval
        delay = interval - spread + self._rng.random() * 2 * spread
        self._interval = min(interval * self._config.multiplier, float(self._config.max_interval))
        return delay
