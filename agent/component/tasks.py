"""Task ownership: every background task has a name and an owner (CONVENTIONS §8).

`TaskOwner` creates named tasks, logs and reports a task that dies with an exception (the
agent keeps running), and cancels and awaits all of them on `close()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any


class TaskOwner:
    def __init__(
        self,
        owner: str,
        logger: logging.Logger,
        on_death: Callable[[str, BaseException | None], None] | None = None,
    ) -> None:
        self._owner = owner
        self._logger = logger
        self._on_death = on_death
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self._owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._logger.error(
                "A background task died; the component may have stopped working.",
                extra={"component": self._owner, "task": task.get_name(), "error": repr(exc)},
                exc_info=exc,
            )
            if self._on_death is not None:
                self._on_death(self._owner, exc)

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self, timeout: float | None = None) -> None:
        """Cancel every task and wait for them (at most `timeout` seconds)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for every task to end by itself; True when they all did in time."""
        tasks = list(self._tasks)
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return not pending
