"""`memory_limiter`: refuse data while the agent uses too much memory (traces, metrics, logs).

A background check reads the agent's memory in use (the process's resident set size, from
`/proc/self/statm`) every `check_interval`. Above the soft limit (limit − spike) the
processor refuses every batch with `MemoryRefusedError`, which receivers turn into
`RESOURCE_EXHAUSTED` / HTTP 429 with a retry hint, until a later check finds memory under the
soft limit again. Above the hard limit (the limit itself) it also runs `gc.collect()`, at
most once per `min_gc_interval_when_hard_limited`; on entering the refusing state it runs
one when none ran for `min_gc_interval_when_soft_limited`.

The limit is `limit_mib`, or `limit_percentage` of the memory available to the agent: the
cgroup memory limit when one is set (cgroup v2 `/sys/fs/cgroup/memory.max`, v1
`/sys/fs/cgroup/memory/memory.limit_in_bytes`), else the machine's total memory
(`/proc/meminfo`). When both are set, `limit_mib` wins, as in the Collector, and a warning
says so. The spike defaults to 20% of the limit.

    processors:
      memory_limiter:
        check_interval: 1s
        limit_mib: 1500
        spike_limit_mib: 300

Guarantees: a batch is either passed on unchanged (`mutates_data = False`) or refused whole
and counted in `processor_refused{reason="memory_limit"}`. One `memory_limiter` id used in
several pipelines shares one check (one background task, one refusing state); the task
stops when the last of those processors shuts down. Gauges: `memory_limiter_refusing`,
`memory_limiter_limit_bytes{limit=soft|hard}`, `memory_limiter_used_bytes`.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import msgspec

from agent.component import Consumer, ProcessorFactory, Settings, Stability, TaskOwner
from agent.config.types import Duration, format_duration
from agent.errors import MemoryRefusedError, StartError
from agent.model import Batch, Signal
from agent.telemetry.metrics import AgentMetrics

MIB = 1024 * 1024
_Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]
_MiB = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]


class MemoryLimiterConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: Time between memory checks; required, greater than zero.
    check_interval: Duration = Duration(0.0)
    #: Hard limit in MiB. Takes precedence over limit_percentage.
    limit_mib: _MiB = 0
    #: Soft limit = limit_mib − spike_limit_mib; 0 means 20% of limit_mib.
    spike_limit_mib: _MiB = 0
    #: Hard limit as a percentage of the memory available (cgroup limit or machine total).
    limit_percentage: _Percent = 0
    #: Spike as a percentage of the memory available; 0 means 20% of the limit.
    spike_limit_percentage: _Percent = 0
    #: Least time between forced collections when entering the refusing state.
    min_gc_interval_when_soft_limited: Duration = Duration(10.0)
    #: Least time between forced collections above the hard limit.
    min_gc_interval_when_hard_limited: Duration = Duration(0.0)

    def __post_init__(self) -> None:
        if self.check_interval <= 0:
            raise ValueError("check_interval must be greater than zero (for example 1s)")
        if self.min_gc_interval_when_soft_limited < self.min_gc_interval_when_hard_limited:
            raise ValueError(
                "min_gc_interval_when_soft_limited must be larger than or equal to "
                "min_gc_interval_when_hard_limited"
            )
        if self.limit_mib == 0 and self.limit_percentage == 0:
            raise ValueError("set limit_mib or limit_percentage to a value greater than zero")
        if self.limit_mib and self.spike_limit_mib >= self.limit_mib:
            raise ValueError(
                f"spike_limit_mib ({self.spike_limit_mib}) must be smaller than limit_mib ({self.limit_mib})"
            )
        if self.limit_percentage and self.spike_limit_percentage >= self.limit_percentage:
            raise ValueError(
                f"spike_limit_percentage ({self.spike_limit_percentage}) must be smaller than "
                f"limit_percentage ({self.limit_percentage})"
            )


# -- reading memory ----------------------------------------------------------------------

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_rss(statm: str | Path = "/proc/self/statm") -> int:
    """Resident set size of this process in bytes (second field of statm, in pages)."""
    with open(statm, "rb") as f:
        return int(f.read().split()[1]) * _PAGE_SIZE


def machine_memory(meminfo: str | Path = "/proc/meminfo") -> int:
    """Total memory of the machine in bytes, from the `MemTotal:` line."""
    with open(meminfo, encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                parts = line.split()
                scale = 1024 if len(parts) > 2 and parts[2].lower() == "kb" else 1
                return int(parts[1]) * scale
    raise ValueError(f"{meminfo} has no MemTotal line")


def cgroup_memory_limit(root: str | Path = "/sys/fs/cgroup") -> int | None:
    """The cgroup memory limit in bytes (v2, then v1), or None when there is none."""
    base = Path(root)
    v2 = base / "memory.max"
    v1 = base / "memory" / "memory.limit_in_bytes"
    for path in (v2, v1):
        try:
            text = path.read_text(encoding="ascii").strip()
        except OSError:
            continue
        if text == "max":
            return None
        return int(text)
    return None


def available_memory(
    cgroup_root: str | Path = "/sys/fs/cgroup", meminfo: str | Path = "/proc/meminfo"
) -> int:
    """Memory the agent may use: the cgroup limit, capped at the machine's total.

    cgroup v1 writes "no limit" as a huge number; the cap turns that into the machine total.
    """
    total = machine_memory(meminfo)
    limit = cgroup_memory_limit(cgroup_root)
    return min(limit, total) if limit else total


def memory_limits(
    config: MemoryLimiterConfig, available: Callable[[], int] = available_memory
) -> tuple[int, int]:
    """(soft, hard) limits in bytes for `config`."""
    if config.limit_mib:
        hard, spike = config.limit_mib * MIB, config.spike_limit_mib * MIB
    else:
        total = available()
        hard = config.limit_percentage * total // 100
        spike = config.spike_limit_percentage * total // 100
    if spike == 0:
        spike = hard // 5
    return hard - spike, hard


# -- the shared check --------------------------------------------------------------------


class MemoryCheck:
    """The memory check of one `memory_limiter` id, shared by its processors.

    `acquire()` (from each processor's start) starts the background task on first use;
    `release()` (from shutdown) stops it when the last user leaves. `check()` runs one
    check; tests call it directly with an injected `read_used` and `clock`.
    """

    def __init__(
        self,
        settings: Settings,
        config: MemoryLimiterConfig,
        *,
        read_used: Callable[[], int] = read_rss,
        available: Callable[[], int] = available_memory,
        clock: Callable[[], float] = time.monotonic,
        collect: Callable[[], object] | None = None,
    ) -> None:
        self.config = config
        self.refusing = False
        self.soft_limit = 0
        self.hard_limit = 0
        self._logger = settings.logger
        self._label = settings.label
        self._read_used = read_used
        self._available = available
        self._clock = clock
        self._collect = collect
        self._last_gc: float | None = None
        self._read_failed = False
        self._users = 0
        m = settings.metrics
        self._refusing_gauge = m.memory_limiter_refusing.labels(self._label)
        self._used_gauge = m.memory_limiter_used_bytes.labels(self._label)
        self._soft_gauge = m.memory_limiter_limit_bytes.labels(self._label, "soft")
        self._hard_gauge = m.memory_limiter_limit_bytes.labels(self._label, "hard")
        self._tasks = TaskOwner(self._label, self._logger, settings.report_status)
        self.on_release: Callable[[MemoryCheck], None] | None = None

    def resolve_limits(self) -> None:
        """Compute the limits (reads the cgroup or /proc/meminfo for percentages)."""
        try:
            self.soft_limit, self.hard_limit = memory_limits(self.config, self._available)
        except (OSError, ValueError) as exc:
            raise StartError(
                f"memory_limiter {self._label}: cannot tell how much memory the machine has "
                f"({exc}); set limit_mib instead of limit_percentage"
            ) from exc
        self._soft_gauge.set(self.soft_limit)
        self._hard_gauge.set(self.hard_limit)
        if self.config.limit_mib and self.config.limit_percentage:
            self._logger.warning(
                "Both limit_mib and limit_percentage are set; limit_mib is used.",
                extra={"component": self._label, "limit_mib": self.config.limit_mib},
            )
        self._logger.info(
            "Memory limiter configured.",
            extra={
                "component": self._label,
                "soft_limit_mib": self.soft_limit // MIB,
                "hard_limit_mib": self.hard_limit // MIB,
                "check_interval": format_duration(self.config.check_interval),
            },
        )

    def acquire(self) -> None:
        self._users += 1
        if self._users == 1:
            if self.hard_limit == 0:
                self.resolve_limits()
            try:
                self.check()
            except OSError as exc:
                self._users -= 1
                raise StartError(f"memory_limiter {self._label}: cannot read memory in use ({exc})") from exc
            self._tasks.spawn("check", self._run())

    async def release(self) -> None:
        if self._users == 0:
            return
        self._users -= 1
        if self._users == 0:
            await self._tasks.close()
            if self.on_release is not None:
                self.on_release(self)

    @property
    def running(self) -> bool:
        return len(self._tasks) > 0

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.check_interval)
            try:
                self.check()
            except OSError as exc:
                if not self._read_failed:
                    self._read_failed = True
                    self._logger.warning(
                        "Cannot read memory in use; keeping the last state until it can.",
                        extra={"component": self._label, "error": repr(exc)},
                    )
            else:
                self._read_failed = False

    def check(self) -> None:
        """Read memory in use and update the refusing state (raises OSError if unreadable)."""
        used = self._read_used()
        if used >= self.hard_limit and self._gc_due(self.config.min_gc_interval_when_hard_limited):
            used = self._collect_and_read(used, "hard")
        above_soft = used >= self.soft_limit
        if above_soft and not self.refusing and self._gc_due(self.config.min_gc_interval_when_soft_limited):
            used = self._collect_and_read(used, "soft")
            above_soft = used >= self.soft_limit
        self._used_gauge.set(used)
        if above_soft and not self.refusing:
            self._logger.warning(
                "Memory in use is above the soft limit; refusing data until it falls.",
                extra={
                    "component": self._label,
                    "used_mib": used // MIB,
                    "soft_limit_mib": self.soft_limit // MIB,
                },
            )
        elif self.refusing and not above_soft:
            self._logger.info(
                "Memory in use is back under the soft limit; accepting data again.",
                extra={
                    "component": self._label,
                    "used_mib": used // MIB,
                    "soft_limit_mib": self.soft_limit // MIB,
                },
            )
        self.refusing = above_soft
        self._refusing_gauge.set(1 if above_soft else 0)

    def _gc_due(self, min_interval: float) -> bool:
        return self._last_gc is None or self._clock() - self._last_gc >= min_interval

    def _collect_and_read(self, before: int, limit: str) -> int:
        if self._collect is not None:
            self._collect()
        else:
            gc.collect()
        self._last_gc = self._clock()
        after = self._read_used()
        self._logger.debug(
            "Forced a garbage collection.",
            extra={
                "component": self._label,
                "limit": limit,
                "before_mib": before // MIB,
                "after_mib": after // MIB,
            },
        )
        return after


#: Checks shared by the processors of one id, per agent (its metrics object). Weak keys, so
#: an agent that is gone takes its checks with it.
_SHARED: weakref.WeakKeyDictionary[AgentMetrics, dict[str, MemoryCheck]] = weakref.WeakKeyDictionary()


def shared_check(settings: Settings, config: MemoryLimiterConfig) -> MemoryCheck:
    """The check of `settings.id` in this agent, made on first use."""
    checks = _SHARED.setdefault(settings.metrics, {})
    key = settings.label
    check = checks.get(key)
    if check is None or check.config != config:
        # A different config under the same id means a new agent graph (a reload); its
        # processors get a fresh check and the old one lives on with its own users.
        check = MemoryCheck(settings, config)
        checks[key] = check

        def forget(done: MemoryCheck) -> None:
            if checks.get(key) is done:
                del checks[key]

        check.on_release = forget
    return check


# -- the processor -----------------------------------------------------------------------


class MemoryLimiterProcessor:
    """Passes batches on, or refuses them while its shared check says memory is too high."""

    mutates_data = False

    def __init__(
        self, settings: Settings, signal: Signal, next_consumer: Consumer, check: MemoryCheck
    ) -> None:
        self._next = next_consumer
        self._check = check
        self._retry_after = float(check.config.check_interval) or 1.0
        pipeline = str(settings.pipeline) if settings.pipeline is not None else ""
        self._refused = settings.metrics.processor_refused.labels(
            settings.label, pipeline, signal.value, "memory_limit"
        )
        self._started = False

    @property
    def check(self) -> MemoryCheck:
        """The memory check this processor follows (shared by its id's processors)."""
        return self._check

    async def start(self) -> None:
        if not self._started:
            self._check.acquire()
            self._started = True

    async def shutdown(self) -> None:
        if self._started:
            self._started = False
            await self._check.release()

    async def consume(self, batch: Batch) -> None:
        if self._check.refusing:
            self._refused.inc(batch.items)
            raise MemoryRefusedError(
                "the agent is above its memory limit; retry later", retry_after=self._retry_after
            )
        await self._next.consume(batch)


def _create(
    settings: Settings, config: Any, signal: Signal, next_consumer: Consumer
) -> MemoryLimiterProcessor:
    assert isinstance(config, MemoryLimiterConfig)
    return MemoryLimiterProcessor(settings, signal, next_consumer, shared_check(settings, config))


FACTORY = ProcessorFactory(
    type="memory_limiter",
    config_type=MemoryLimiterConfig,
    description="Refuses data while the agent's memory is above a soft limit; forces collections above the hard limit.",
    signals={Signal.TRACES: Stability.BETA, Signal.METRICS: Stability.BETA, Signal.LOGS: Stability.BETA},
    create=_create,
)

__all__ = [
    "FACTORY",
    "MemoryCheck",
    "MemoryLimiterConfig",
    "MemoryLimiterProcessor",
    "available_memory",
    "cgroup_memory_limit",
    "machine_memory",
    "memory_limits",
    "read_rss",
    "shared_check",
]
