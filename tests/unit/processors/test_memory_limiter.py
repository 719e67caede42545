"""The `memory_limiter` processor: config, limits, refusing and recovering, GC, sharing."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.component import Kind, PipelineID, Settings
from agent.config.types import dec_hook
from agent.errors import MemoryRefusedError, StartError
from agent.model import Signal
from agent.processors import memory_limiter as ml
from agent.processors.memory_limiter import (
    FACTORY,
    MIB,
    MemoryCheck,
    MemoryLimiterConfig,
    MemoryLimiterProcessor,
    available_memory,
    cgroup_memory_limit,
    machine_memory,
    memory_limits,
    read_rss,
)
from agent.testing import Sink, make_logs, make_traces

ID = "memory_limiter/test"
assert FACTORY.create is not None
create = FACTORY.create


def convert(raw: dict[str, Any]) -> MemoryLimiterConfig:
    return msgspec.convert(raw, MemoryLimiterConfig, dec_hook=dec_hook)


def settings(pipeline: str = "traces") -> Settings:
    return Settings.for_test(ID, Kind.PROCESSOR, pipeline)


def gauge(s: Settings, name: str, **labels: str) -> float | None:
    return s.metrics.registry.get_sample_value(name, {"component": ID, **labels})


class Memory:
    """An injectable memory reader, a clock and a GC counter."""

    def __init__(self, used: int) -> None:
        self.used = used
        self.now = 1000.0
        self.collections = 0
        #: What memory reads as after a forced collection (None: unchanged).
        self.after_gc: int | None = None

    def read(self) -> int:
        return self.used

    def clock(self) -> float:
        return self.now

    def collect(self) -> int:
        self.collections += 1
        if self.after_gc is not None:
            self.used = self.after_gc
        return 0


def limiter(
    memory: Memory, s: Settings | None = None, sink: Sink | None = None, **raw: Any
) -> tuple[MemoryLimiterProcessor, MemoryCheck, Sink, Settings]:
    s = s or settings()
    config = convert({"check_interval": "1s", "limit_mib": 100, **raw})
    check = MemoryCheck(s, config, read_used=memory.read, clock=memory.clock, collect=memory.collect)
    check.resolve_limits()
    sink = sink or Sink()
    return MemoryLimiterProcessor(s, Signal.TRACES, sink, check), check, sink, s


# -- config ----------------------------------------------------------------------------


def test_config_defaults() -> None:
    config = convert({"check_interval": "1s", "limit_mib": 1000})
    assert config.spike_limit_mib == 0
    assert config.limit_percentage == 0
    assert config.spike_limit_percentage == 0
    assert config.min_gc_interval_when_soft_limited == 10.0
    assert config.min_gc_interval_when_hard_limited == 0.0
    assert memory_limits(config) == (800 * MIB, 1000 * MIB), "spike defaults to 20% of the limit"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"limit_mib": 100}, "check_interval must be greater than zero"),
        ({"check_interval": "0s", "limit_mib": 100}, "check_interval must be greater than zero"),
        ({"check_interval": "1s"}, "set limit_mib or limit_percentage"),
        (
            {"check_interval": "1s", "limit_mib": 100, "spike_limit_mib": 100},
            "spike_limit_mib (100) must be smaller than limit_mib (100)",
        ),
        (
            {"check_interval": "1s", "limit_percentage": 50, "spike_limit_percentage": 60},
            "spike_limit_percentage (60) must be smaller than limit_percentage (50)",
        ),
        (
            {"check_interval": "1s", "limit_percentage": 101},
            "Expected `int` <= 100 - at `$.limit_percentage`",
        ),
        (
            {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 101},
            "at `$.spike_limit_percentage`",
        ),
        ({"check_interval": "1s", "limit_mib": -1}, "at `$.limit_mib`"),
        (
            {
                "check_interval": "1s",
                "limit_mib": 100,
                "min_gc_interval_when_soft_limited": "1s",
                "min_gc_interval_when_hard_limited": "5s",
            },
            "min_gc_interval_when_soft_limited must be larger",
        ),
        (
            {"check_interval": "1s", "limit_mib": 100, "ballast_size_mib": 10},
            "unknown field `ballast_size_mib`",
        ),
    ],
)
def test_config_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        convert(raw)
    assert message in str(info.value)


def test_limits_from_mib_and_from_percentages() -> None:
    assert memory_limits(convert({"check_interval": "1s", "limit_mib": 1000, "spike_limit_mib": 300})) == (
        700 * MIB,
        1000 * MIB,
    )
    total = 10_000 * MIB
    pct = convert({"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 25})
    assert memory_limits(pct, lambda: total) == (5500 * MIB, 8000 * MIB)
    pct_default_spike = convert({"check_interval": "1s", "limit_percentage": 50})
    assert memory_limits(pct_default_spike, lambda: total) == (4000 * MIB, 5000 * MIB)
    both = convert({"check_interval": "1s", "limit_mib": 100, "limit_percentage": 50})
    assert memory_limits(both, lambda: total) == (80 * MIB, 100 * MIB), "limit_mib wins"


def test_both_limits_set_warns_that_limit_mib_wins(caplog: pytest.LogCaptureFixture) -> None:
    s = settings()
    check = MemoryCheck(s, convert({"check_interval": "1s", "limit_mib": 100, "limit_percentage": 50}))
    with caplog.at_level(logging.WARNING, logger=s.logger.name):
        check.resolve_limits()
    assert [r.getMessage() for r in caplog.records] == [
        "Both limit_mib and limit_percentage are set; limit_mib is used."
    ]


# -- reading memory --------------------------------------------------------------------


def test_cgroup_v2_limit(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("536870912\n")
    assert cgroup_memory_limit(tmp_path) == 512 * MIB


def test_cgroup_v2_without_limit(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("max\n")
    assert cgroup_memory_limit(tmp_path) is None


def test_cgroup_v1_limit(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("1073741824\n")
    assert cgroup_memory_limit(tmp_path) == 1024 * MIB


def test_no_cgroup(tmp_path: Path) -> None:
    assert cgroup_memory_limit(tmp_path) is None


MEMINFO = "MemTotal:       16318412 kB\nMemFree:         1234567 kB\nMemAvailable:    8000000 kB\n"


def test_meminfo_total(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text(MEMINFO)
    assert machine_memory(tmp_path / "meminfo") == 16318412 * 1024


def test_meminfo_without_total(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text("MemFree: 1 kB\n")
    with pytest.raises(ValueError, match="no MemTotal"):
        machine_memory(tmp_path / "meminfo")


def test_available_memory_is_the_cgroup_limit_capped_at_the_machine(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text(MEMINFO)
    cg = tmp_path / "cg"
    cg.mkdir()
    assert available_memory(cg, tmp_path / "meminfo") == 16318412 * 1024
    (cg / "memory.max").write_text("1073741824")
    assert available_memory(cg, tmp_path / "meminfo") == 1024 * MIB
    # cgroup v1 writes "no limit" as a huge number.
    (cg / "memory.max").unlink()
    (cg / "memory").mkdir()
    (cg / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712")
    assert available_memory(cg, tmp_path / "meminfo") == 16318412 * 1024


def test_read_rss_from_statm(tmp_path: Path) -> None:
    (tmp_path / "statm").write_text("5000 1200 300 10 0 900 0\n")
    assert read_rss(tmp_path / "statm") == 1200 * ml._PAGE_SIZE
    assert read_rss() > 0, "this process's own resident set"


def test_percentages_without_meminfo_fail_at_start() -> None:
    def broken() -> int:
        raise OSError("no /proc/meminfo")

    s = settings()
    check = MemoryCheck(s, convert({"check_interval": "1s", "limit_percentage": 50}), available=broken)
    with pytest.raises(StartError, match="set limit_mib instead"):
        check.resolve_limits()


# -- refusing and recovering -----------------------------------------------------------


async def test_refuses_above_the_soft_limit_and_recovers_below(caplog: pytest.LogCaptureFixture) -> None:
    memory = Memory(used=10 * MIB)
    proc, check, sink, s = limiter(memory, min_gc_interval_when_soft_limited="0s")
    assert gauge(s, "flowglass_processor_memory_limiter_limit_bytes", limit="soft") == 80 * MIB
    assert gauge(s, "flowglass_processor_memory_limiter_limit_bytes", limit="hard") == 100 * MIB

    check.check()
    await proc.consume(make_traces(3))
    assert sink.items == 3
    assert gauge(s, "flowglass_processor_memory_limiter_refusing") == 0

    memory.used = 85 * MIB  # above soft (80), under hard (100)
    with caplog.at_level(logging.INFO, logger=s.logger.name):
        for _ in range(3):
            check.check()
        assert check.refusing
        with pytest.raises(MemoryRefusedError) as info:
            await proc.consume(make_traces(4))
        assert info.value.retry_after == 1.0
        with pytest.raises(MemoryRefusedError):
            await proc.consume(make_traces(2))
        assert sink.items == 3
        assert gauge(s, "flowglass_processor_memory_limiter_refusing") == 1
        assert gauge(s, "flowglass_processor_memory_limiter_used_bytes") == 85 * MIB
        refused = s.metrics.registry.get_sample_value(
            "flowglass_processor_refused_items_total",
            {"component": ID, "pipeline": "traces", "signal": "traces", "reason": "memory_limit"},
        )
        assert refused == 6

        memory.used = 50 * MIB
        check.check()
        check.check()
    assert not check.refusing
    assert gauge(s, "flowglass_processor_memory_limiter_refusing") == 0
    await proc.consume(make_traces(1))
    assert sink.items == 4
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert levels == [
        (logging.WARNING, "Memory in use is above the soft limit; refusing data until it falls."),
        (logging.INFO, "Memory in use is back under the soft limit; accepting data again."),
    ]


async def test_passes_batches_unchanged() -> None:
    memory = Memory(used=10 * MIB)
    proc, check, sink, _ = limiter(memory)
    check.check()
    batch = make_logs(5)
    before = batch.serialize()
    await proc.consume(batch)
    assert sink.batches == [batch]
    assert batch.serialize() == before
    assert proc.mutates_data is False


# -- garbage collection ----------------------------------------------------------------


def test_hard_limit_forces_a_collection_rate_limited() -> None:
    memory = Memory(used=120 * MIB)
    _, check, _, _ = limiter(
        memory, min_gc_interval_when_hard_limited="5s", min_gc_interval_when_soft_limited="5s"
    )
    check.check()
    assert memory.collections == 1
    check.check()
    assert memory.collections == 1, "not again within min_gc_interval_when_hard_limited"
    memory.now += 5
    check.check()
    assert memory.collections == 2
    assert check.refusing


def test_hard_limit_collects_with_the_real_gc(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_collect(*args: Any) -> int:
        calls.append(1)
        return 0

    monkeypatch.setattr(gc, "collect", fake_collect)
    memory = Memory(used=120 * MIB)
    s = settings()
    check = MemoryCheck(s, convert({"check_interval": "1s", "limit_mib": 100}), read_used=memory.read)
    check.resolve_limits()
    check.check()
    assert calls, "gc.collect() ran above the hard limit"


def test_a_collection_on_entering_the_soft_limit_can_avoid_refusing() -> None:
    memory = Memory(used=85 * MIB)
    memory.after_gc = 60 * MIB
    _, check, _, _ = limiter(memory)
    check.check()
    assert memory.collections == 1
    assert not check.refusing, "the collection brought memory under the soft limit"


def test_no_collection_between_soft_and_hard_when_one_ran_recently() -> None:
    memory = Memory(used=120 * MIB)
    memory.after_gc = 90 * MIB  # still above soft after the hard-limit collection
    _, check, _, _ = limiter(memory, min_gc_interval_when_soft_limited="10s")
    check.check()
    assert memory.collections == 1
    assert check.refusing
    memory.used = 50 * MIB
    check.check()
    memory.used = 85 * MIB
    memory.now += 1
    check.check()
    assert memory.collections == 1, "the soft-limit collection waits min_gc_interval_when_soft_limited"
    assert check.refusing


# -- the background check and sharing --------------------------------------------------


async def test_the_background_check_follows_memory() -> None:
    memory = Memory(used=10 * MIB)
    s = settings()
    config = convert({"check_interval": "10ms", "limit_mib": 100})
    check = MemoryCheck(s, config, read_used=memory.read, clock=memory.clock, collect=memory.collect)
    proc = MemoryLimiterProcessor(s, Signal.TRACES, Sink(), check)
    await proc.start()
    assert check.running
    memory.used = 90 * MIB
    await until(lambda: check.refusing)
    memory.used = 10 * MIB
    await until(lambda: not check.refusing)
    await proc.shutdown()
    assert not check.running
    await proc.shutdown()  # idempotent


async def test_one_id_in_several_pipelines_shares_one_check() -> None:
    s_traces = Settings.for_test(ID, Kind.PROCESSOR, "traces")
    s_logs = dataclasses.replace(s_traces, pipeline=PipelineID.parse("logs"))
    config = convert({"check_interval": "1h", "limit_mib": 1_000_000})
    a = create(s_traces, config, Signal.TRACES, Sink())
    b = create(s_logs, config, Signal.LOGS, Sink())
    assert isinstance(a, MemoryLimiterProcessor) and isinstance(b, MemoryLimiterProcessor)
    assert a.check is b.check
    other_agent = create(settings(), config, Signal.TRACES, Sink())
    assert isinstance(other_agent, MemoryLimiterProcessor)
    assert other_agent.check is not a.check, "another agent (metrics registry) has its own"

    await a.start()
    await b.start()
    assert a.check.running
    await a.shutdown()
    assert b.check.running, "the check runs while one user is left"
    await b.shutdown()
    assert not b.check.running
    again = create(s_traces, config, Signal.TRACES, Sink())
    assert isinstance(again, MemoryLimiterProcessor)
    assert again.check is not a.check, "the last shutdown forgot the shared check"


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while True:
            if condition():
                return
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout)
