from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
import re
import struct
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.component import Kind, Settings
from agent.config.convert import convert
from agent.config.types import dec_hook
from agent.errors import RetryableError, ShuttingDownError, StartError
from agent.exporters.file import FACTORY, FileConfig, FileExporter
from agent.model import Batch, Signal, otlp_json
from agent.model.batch import REQUEST_TYPES
from agent.testing import make_logs, make_metrics, make_traces

BACKUP = re.compile(r"^out-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}\.bin$")


class StepClock:
    """A wall clock that moves one second each time it is read."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def _config(**options: Any) -> FileConfig:
    return msgspec.convert(options, FileConfig, dec_hook=dec_hook)


def _exporter(path: Path, settings: Settings | None = None, **options: Any) -> FileExporter:
    kwargs = {k: options.pop(k) for k in ("clock", "buffer_bytes") if k in options}
    config = _config(path=str(path), **options)
    return FileExporter(settings or Settings.for_test("file", Kind.EXPORTER), config, **kwargs)


def _read_proto(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        out.append(data[pos + 4 : pos + 4 + length])
        pos += 4 + length
    assert pos == len(data), "a record is torn"
    return out


def _sent(settings: Settings, signal: str) -> float | None:
    return settings.metrics.registry.get_sample_value(
        "flowglass_exporter_sent_items_total", {"component": "file", "signal": signal}
    )


# -- config ---------------------------------------------------------------------------------


def test_config_defaults() -> None:
    config = _config(path="out.jsonl")
    assert config.format == "json"
    assert config.rotation is None
    assert config.flush_interval == 1.0
    assert config.append is False
    assert config.create_directory is True
    rotation = _config(path="x", rotation={}).rotation
    assert rotation is not None
    assert (rotation.max_megabytes, rotation.max_days, rotation.max_backups, rotation.localtime) == (100, 0, 100, False)
    assert _config(path="x", flush_interval=0).flush_interval == 1.0  # as in the Collector
    assert _config(path="x", flush_interval="250ms").flush_interval == 0.25
    assert _config(path="x", group_by={"enabled": False}).group_by is not None
    assert FACTORY.type == "file"
    assert set(FACTORY.signals) == set(Signal)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "missing required field `path`"),
        ({"path": " "}, "path must not be empty"),
        ({"path": "x", "compression": "zstd"}, "zstd is not supported by Flowglass"),
        ({"path": "x", "compression": "gzip"}, "not supported by Flowglass"),
        ({"path": "x", "group_by": {"enabled": True}}, "group_by is not supported by Flowglass"),
        ({"path": "x", "append": True, "rotation": {}}, "append and rotation"),
        ({"path": "x", "format": "csv"}, "format"),
        ({"path": "x", "rotation": {"max_backups": -1}}, "max_backups"),
        ({"path": "x", "directory_permissions": "0999"}, "octal"),
        ({"path": "x", "directory_permissions": "7777"}, "bits other than"),
        ({"path": "x", "create_directory": False, "directory_permissions": "0700"}, "needs create_directory"),
        ({"path": "x", "flush": "1s"}, "unknown field"),
    ],
)
def test_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        _config(**options)


def test_upstream_options_are_named_as_not_supported() -> None:
    _, problem = convert({"path": "x", "encoding": "otlp_json"}, FileConfig, ("exporters", "file"))
    assert problem is not None
    assert "encoding" in str(problem) and "not supported by Flowglass" in str(problem)
    _, problem = convert({"path": "x", "compression": "zstd"}, FileConfig, ("exporters", "file"))
    assert problem is not None and "not supported by Flowglass" in str(problem)


# -- writing --------------------------------------------------------------------------------


async def test_json_lines_round_trip_every_signal(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    settings = Settings.for_test("file", Kind.EXPORTER)
    exporter = _exporter(path, settings)
    batches = [make_traces(100), make_metrics(9), make_logs(5), make_traces(3)]
    await exporter.start()
    for batch in batches:
        await exporter.consume(batch)
    await exporter.shutdown()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert len(lines) == len(batches) + 1
    for batch, line in zip(batches, lines, strict=False):
        assert otlp_json.decode(batch.signal, line) == batch.message
    assert _sent(settings, "traces") == 103
    assert _sent(settings, "metrics") == 9
    assert _sent(settings, "logs") == 5


async def test_proto_records_read_back(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    exporter = _exporter(path, format="proto")
    batches = [make_traces(5), make_logs(4), make_metrics(3)]
    await exporter.start()
    for batch in batches:
        await exporter.consume(batch)
    await exporter.shutdown()
    records = _read_proto(path)
    assert len(records) == 3
    for batch, data in zip(batches, records, strict=True):
        message = REQUEST_TYPES[batch.signal]()
        message.ParseFromString(data)
        assert message == batch.message


async def test_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "data" / "nested" / "traces.jsonl"
    exporter = _exporter(path, directory_permissions="0750")
    await exporter.start()
    await exporter.consume(make_traces(1))
    await exporter.shutdown()
    assert path.read_bytes().count(b"\n") == 1
    assert (tmp_path / "data" / "nested").stat().st_mode & 0o777 == 0o750 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


async def test_without_create_directory_a_missing_directory_fails_start(tmp_path: Path) -> None:
    exporter = _exporter(tmp_path / "missing" / "x.jsonl", create_directory=False)
    with pytest.raises(StartError, match="cannot open"):
        await exporter.start()


async def test_a_path_that_is_a_directory_fails_start(tmp_path: Path) -> None:
    exporter = _exporter(tmp_path)
    with pytest.raises(StartError, match="cannot open"):
        await exporter.start()


async def test_append_false_truncates_and_append_true_keeps(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"old line\n")
    exporter = _exporter(path)
    await exporter.start()
    await exporter.consume(make_logs(1))
    await exporter.shutdown()
    assert b"old line" not in path.read_bytes()
    assert path.read_bytes().count(b"\n") == 1

    exporter = _exporter(path, append=True)
    await exporter.start()
    await exporter.consume(make_logs(1))
    await exporter.shutdown()
    assert path.read_bytes().count(b"\n") == 2


async def test_shutdown_writes_what_is_buffered(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    exporter = _exporter(path, flush_interval="1h")
    await exporter.start()
    await exporter.consume(make_traces(2))
    assert path.stat().st_size == 0  # still in the buffer: the interval is long, the buffer not full
    await exporter.shutdown()
    assert path.read_bytes().count(b"\n") == 1
    await exporter.shutdown()  # idempotent
    with pytest.raises(ShuttingDownError):
        await exporter.consume(make_traces(1))


async def test_flush_interval_writes_without_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    exporter = _exporter(path, flush_interval="10ms")
    await exporter.start()
    await exporter.consume(make_traces(2))
    for _ in range(500):
        if path.stat().st_size:
            break
        await asyncio.sleep(0.01)
    assert path.read_bytes().count(b"\n") == 1
    await exporter.shutdown()


async def test_full_buffer_is_written_by_consume(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    exporter = _exporter(path, format="proto", flush_interval="1h", buffer_bytes=1)
    await exporter.start()
    batch = make_traces(3)
    await exporter.consume(batch)
    assert path.stat().st_size == 4 + batch.nbytes
    await exporter.shutdown()


async def test_consume_before_start_is_refused(tmp_path: Path) -> None:
    exporter = _exporter(tmp_path / "x.jsonl")
    with pytest.raises(ShuttingDownError):
        await exporter.consume(make_traces(1))


async def test_batches_are_not_changed(tmp_path: Path) -> None:
    exporter = _exporter(tmp_path / "x.jsonl")
    await exporter.start()
    batch = Batch(Signal.TRACES, make_traces(80, seed=3).message)
    before = batch.message.SerializeToString()
    await exporter.consume(batch)
    await exporter.shutdown()
    assert batch.message.SerializeToString() == before
    assert FileExporter.mutates_data is False


# -- rotation -------------------------------------------------------------------------------


def _big_traces(kib: int) -> Batch:
    return make_traces(1, span_attrs={"blob": "x" * (kib * 1024)})


async def test_rotation_by_size_keeps_max_backups(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    exporter = _exporter(
        path, format="proto", rotation={"max_megabytes": 1, "max_backups": 2}, clock=StepClock()
    )
    await exporter.start()
    for _ in range(12):  # about 400 KiB each: two per file, six files written in all
        await exporter.consume(_big_traces(400))
    await exporter.shutdown()
    names = sorted(os.listdir(tmp_path))
    backups = [n for n in names if n != "out.bin"]
    assert "out.bin" in names
    assert len(backups) == 2
    assert all(BACKUP.match(n) for n in backups), backups
    for name in names:
        records = _read_proto(tmp_path / name)
        assert 1 <= len(records) <= 2
        assert (tmp_path / name).stat().st_size <= 1024 * 1024


async def test_rotation_continues_the_current_file(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    exporter = _exporter(path, format="proto", rotation={})
    await exporter.start()
    await exporter.consume(make_traces(1))
    await exporter.shutdown()
    exporter = _exporter(path, format="proto", rotation={})
    await exporter.start()
    await exporter.consume(make_traces(1))
    await exporter.shutdown()
    assert len(_read_proto(path)) == 2


async def test_old_backups_are_removed_by_max_days(tmp_path: Path) -> None:
    clock = StepClock(start=1_800_000_000.0)
    old = tmp_path / "out-2026-01-01T00-00-00.000.bin"  # long before the clock
    recent = tmp_path / "out-2027-01-15T08-00-00.000.bin"  # the day of the clock
    unrelated = tmp_path / "other-2026-01-01T00-00-00.000.bin"
    for p in (old, recent, unrelated):
        p.write_bytes(b"")
    exporter = _exporter(tmp_path / "out.bin", format="proto", rotation={"max_days": 1}, clock=clock)
    await exporter.start()
    await exporter.shutdown()
    assert not old.exists()
    assert recent.exists()
    assert unrelated.exists()


# -- write errors ---------------------------------------------------------------------------


def _is_file(fd: int, path: Path) -> bool:
    """Whether `fd` is open on `path` (the fake disk errors touch no other descriptor)."""
    try:
        return os.path.samestat(os.fstat(fd), path.stat())
    except OSError:
        return False


async def test_disk_full_refuses_when_the_buffer_is_full_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    statuses: list[tuple[str, BaseException | None]] = []
    settings = dataclasses.replace(
        Settings.for_test("file", Kind.EXPORTER), report_status=lambda n, e: statuses.append((n, e))
    )
    path = tmp_path / "out.bin"
    exporter = _exporter(path, settings, format="proto", flush_interval="1h", buffer_bytes=1)
    await exporter.start()

    real_write = os.write
    budget = {"bytes": 10}  # the disk fills up 10 bytes into the first record

    def write(fd: int, data: Any) -> int:
        if not _is_file(fd, path):
            return real_write(fd, data)
        if budget["bytes"] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real_write(fd, bytes(data[: budget["bytes"]]))
        budget["bytes"] -= n
        return n

    monkeypatch.setattr(os, "write", write)
    first, second, third = make_traces(2), make_traces(3), make_traces(4)
    await exporter.consume(first)  # accepted into the buffer; its write fails part way
    with pytest.raises(RetryableError, match="No space left"):
        await exporter.consume(second)
    failed = settings.metrics.registry.get_sample_value(
        "flowglass_exporter_send_failed_items_total",
        {"component": "file", "signal": "traces", "reason": "disk_full"},
    )
    assert failed == 3
    assert statuses and statuses[0][0] == "exporter:file"
    assert isinstance(statuses[0][1], OSError)

    budget["bytes"] = 10**9  # space again
    await exporter.consume(third)
    await exporter.shutdown()
    assert statuses[-1] == ("exporter:file", None)
    records = _read_proto(path)  # the torn record was resumed, not rewritten
    assert [REQUEST_TYPES[Signal.TRACES].FromString(r) for r in records] == [first.message, third.message]
    assert _sent(settings, "traces") == 6


async def test_what_cannot_be_written_at_shutdown_is_counted_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.for_test("file", Kind.EXPORTER)
    exporter = _exporter(tmp_path / "out.jsonl", settings, flush_interval="1h")
    await exporter.start()
    await exporter.consume(make_logs(4))

    real_write = os.write
    path = tmp_path / "out.jsonl"

    def write(fd: int, data: Any) -> int:
        if not _is_file(fd, path):
            return real_write(fd, data)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "write", write)
    await exporter.shutdown()
    failed = settings.metrics.registry.get_sample_value(
        "flowglass_exporter_send_failed_items_total",
        {"component": "file", "signal": "logs", "reason": "io_error"},
    )
    assert failed == 4
    assert any("lost" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
