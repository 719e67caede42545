"""`file` exporter: writes batches to a local file, one record per batch.

Signals: traces, metrics, logs — batches of every signal go to the same file, as in the
Collector. `format: json` (default) writes one OTLP/JSON export request per line;
`format: proto` writes each request's protobuf encoding preceded by its length as a 4-byte
big-endian unsigned integer. With `rotation`, the file at `path` is renamed to
`<name>-<UTC timestamp>.<ext>` once it would grow past `max_megabytes`, a new one is started,
and backups beyond `max_backups` or older than `max_days` are removed (lumberjack's rules:
0 means no limit).

```yaml
exporters:
  file:
    path: ./data/telemetry.jsonl
    rotation:
      max_megabytes: 50
      max_backups: 5
```

Differences from the Collector: missing parent directories are created by default
(`create_directory: true`) so that `./data/...` works on a fresh checkout; `compression`,
`encoding` and `group_by` (when enabled) are refused with a message.

Guarantees: the event loop never waits on the disk — encoding large JSON batches and every
write run in a worker thread, one write at a time, through a buffer of at most
`BUFFER_BYTES` plus one batch that is written when full or every `flush_interval`. A batch
is accepted once it is in that buffer; when the buffer is full and cannot be written
(disk full, permissions), `consume` raises `RetryableError` and the batch is counted as
failed. Records are never written twice or torn: a partial write is resumed where it stopped.
`shutdown()` writes what is buffered and closes the file, so everything accepted is in the
OS when it returns (what cannot be written then is counted and logged as lost).
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from agent.component import ExporterFactory, Settings, Stability, TaskOwner
from agent.config.types import Duration
from agent.errors import RetryableError, ShuttingDownError, StartError
from agent.model import Batch, Signal, otlp_json

#: Bytes buffered before consumers wait for a write (plus at most one batch).
BUFFER_BYTES = 256 * 1024
_MEGABYTE = 1024 * 1024
_BACKUP_TIME_FORMAT = "%Y-%m-%dT%H-%M-%S"
_LENGTH = struct.Struct(">I")

# -- config -----------------------------------------------------------------------------------


class RotationConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: Size in MiB at which the file is rotated; 0 means the default, 100.
    max_megabytes: Annotated[int, msgspec.Meta(ge=0)] = 100
    #: Remove backups older than this many days; 0 keeps them whatever their age.
    max_days: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: Backups kept; 0 keeps every backup.
    max_backups: Annotated[int, msgspec.Meta(ge=0)] = 100
    #: Timestamps in backup names in local time instead of UTC.
    localtime: bool = False


class GroupByConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Accepted so that a Collector config with `group_by.enabled: false` runs unchanged."""

    enabled: bool = False
    resource_attribute: str = "fileexporter.path_segment"
    max_open_files: Annotated[int, msgspec.Meta(ge=1)] = 100


class FileConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: The Collector's options Flowglass does not implement (an encoding extension).
    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"encoding"})

    path: str
    format: Literal["json", "proto"] = "json"
    #: Absent: the file grows without limit, as in the Collector.
    rotation: RotationConfig | None = None
    #: How often buffered records are written (0 means the default, 1s).
    flush_interval: Duration = Duration(1.0)
    #: False truncates an existing file at start; true appends to it.
    append: bool = False
    #: Only "" (none): the Collector's zstd is refused with a sentence.
    compression: str = ""
    group_by: GroupByConfig | None = None
    create_directory: bool = True
    #: Octal mode of directories created for `path` (before the umask), e.g. "0750".
    directory_permissions: str = ""

    def __post_init__(self) -> None:
        if not self.path.strip():
            raise ValueError("path must not be empty")
        if self.compression == "zstd":
            raise ValueError("compression zstd is not supported by Flowglass; remove it (files are written uncompressed)")
        if self.compression:
            raise ValueError(f"compression {self.compression!r} is not supported by Flowglass; remove it")
        if self.group_by is not None and self.group_by.enabled:
            raise ValueError("group_by is not supported by Flowglass; use one file exporter per file")
        if self.append and self.rotation is not None:
            raise ValueError("append and rotation cannot be used together (with rotation the file is always continued)")
        if not self.flush_interval:
            self.flush_interval = Duration(1.0)
        if self.directory_permissions:
            if not self.create_directory:
                raise ValueError("directory_permissions needs create_directory: true")
            self.directory_mode()

    def directory_mode(self) -> int:
        """The mode for created directories (0o755 unless `directory_permissions` says)."""
        if not self.directory_permissions:
            return 0o755
        try:
            mode = int(self.directory_permissions, 8)
        except ValueError:
            raise ValueError(
                f"directory_permissions must be an octal mode like 0755, got {self.directory_permissions!r}"
            ) from None
        if mode & 0o777 != mode:
            raise ValueError(f"directory_permissions {self.directory_permissions!r} holds bits other than rwx permissions")
        return mode


# -- the file, in a worker thread -------------------------------------------------------------


class PartialWrite(Exception):
    """A write failed after `done` whole records and `offset` bytes of the next one."""

    def __init__(self, done: int, offset: int, cause: OSError) -> None:
        super().__init__(str(cause))
        self.done = done
        self.offset = offset
        self.cause = cause


class RotatingFile:
    """The output file with lumberjack-style size rotation. Blocking: call from a thread."""

    def __init__(
        self, path: str, rotation: RotationConfig | None, append: bool, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self._rotation = rotation
        # With rotation the current file is continued, as lumberjack does.
        self._append = append or rotation is not None
        self._clock = clock
        self._fd: int | None = None
        self.size = 0
        directory, name = os.path.split(path)
        self._dir = directory or "."
        stem, self._ext = os.path.splitext(name)
        self._prefix = stem + "-"
        self._backup_re = re.compile(
            re.escape(self._prefix) + r"(\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3})" + re.escape(self._ext) + "$"
        )

    @property
    def max_bytes(self) -> int | None:
        if self._rotation is None:
            return None
        return (self._rotation.max_megabytes or 100) * _MEGABYTE

    def open(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if self._append else os.O_TRUNC)
        self._fd = os.open(self.path, flags, 0o644)
        self.size = os.fstat(self._fd).st_size
        if self._rotation is not None:
            self._prune()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def write(self, records: list[bytes], offset: int = 0) -> None:
        """Write whole records (the first from `offset` on); raises `PartialWrite`."""
        assert self._fd is not None, "the file is not open"
        done = 0
        position = offset
        try:
            for data in records:
                if position == 0:
                    self._rotate_for(len(data))
                view = memoryview(data)[position:]
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
                    position += n
                    self.size += n
                done += 1
                position = 0
        except OSError as exc:
            raise PartialWrite(done, position, exc) from exc

    def _rotate_for(self, length: int) -> None:
        limit = self.max_bytes
        if limit is not None and self.size > 0 and self.size + length > limit:
            self.rotate()

    def backup_name(self, when: float) -> str:
        assert self._rotation is not None
        tz = None if self._rotation.localtime else UTC
        stamp = datetime.fromtimestamp(when, tz)
        text = stamp.strftime(_BACKUP_TIME_FORMAT) + f".{stamp.microsecond // 1000:03d}"
        return os.path.join(self._dir, f"{self._prefix}{text}{self._ext}")

    def rotate(self) -> None:
        """Rename the current file to a timestamped backup, start a new one, prune backups."""
        when = self._clock()
        backup = self.backup_name(when)
        # Two rotations within a millisecond would share a name: move the later one on.
        while os.path.exists(backup):
            when += 0.001
            backup = self.backup_name(when)
        os.rename(self.path, backup)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        except OSError:
            os.rename(backup, self.path)  # keep writing the file we have
            raise
        self.close()
        self._fd = fd
        self.size = 0
        self._prune()

    def backups(self) -> list[tuple[float, str]]:
        """(time encoded in the name, path) of every backup, newest first."""
        assert self._rotation is not None
        tz = None if self._rotation.localtime else UTC
        found: list[tuple[float, str]] = []
        for entry in os.listdir(self._dir):
            m = self._backup_re.match(entry)
            if m is None:
                continue
            try:
                stamp = datetime.strptime(m.group(1), _BACKUP_TIME_FORMAT + ".%f")
            except ValueError:
                continue
            found.append((stamp.replace(tzinfo=tz).timestamp(), os.path.join(self._dir, entry)))
        found.sort(reverse=True)
        return found

    def _prune(self) -> None:
        """Remove backups beyond `max_backups` or older than `max_days` (best effort)."""
        assert self._rotation is not None
        rotation = self._rotation
        if not rotation.max_backups and not rotation.max_days:
            return
        try:
            backups = self.backups()
        except OSError:
            return
        doomed = set(backups[rotation.max_backups:] if rotation.max_backups else [])
        if rotation.max_days:
            cutoff = self._clock() - timedelta(days=rotation.max_days).total_seconds()
            doomed.update(b for b in backups if b[0] < cutoff)
        for _, path in doomed:
            try:
                os.remove(path)
            except OSError:
                pass  # gone already, or not ours to remove: the next rotation tries again


# -- the exporter -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    data: bytes
    signal: Signal
    items: int


def _reason(exc: OSError) -> str:
    """A bounded `reason` label for a write error."""
    return {
        errno.ENOSPC: "disk_full",
        errno.EDQUOT: "quota_exceeded",
        errno.EACCES: "permission_denied",
        errno.EPERM: "permission_denied",
        errno.EROFS: "read_only",
    }.get(exc.errno or 0, "io_error")


def _json_record(message: Any) -> bytes:
    return otlp_json.encode(message) + b"\n"


class FileExporter:
    """Writes batches to `config.path`; see the module docstring."""

    mutates_data = False

    def __init__(
        self,
        settings: Settings,
        config: FileConfig,
        *,
        clock: Callable[[], float] = time.time,
        buffer_bytes: int = BUFFER_BYTES,
    ) -> None:
        self._settings = settings
        self._config = config
        self._label = settings.label
        self._status_name = f"{settings.kind.value}:{settings.label}"
        self._log = settings.logger
        self._file = RotatingFile(config.path, config.rotation, config.append, clock)
        self._buffer_bytes = buffer_bytes
        self._pending: deque[_Record] = deque()
        self._pending_bytes = 0
        self._head_offset = 0
        self._inflight: asyncio.Task[OSError | None] | None = None
        self._tasks = TaskOwner(self._status_name, self._log, settings.report_status)
        self._ticker: asyncio.Task[Any] | None = None
        self._started = False
        self._closing = False
        self._failing = False
        metrics = settings.metrics
        self._sent = {s: metrics.exporter_sent.labels(component=self._label, signal=s.value) for s in Signal}
        self._failed: dict[tuple[Signal, str], Any] = {}

    # -- lifecycle --

    def _open(self) -> None:
        parent = os.path.dirname(self._config.path)
        if parent and self._config.create_directory:
            os.makedirs(parent, mode=self._config.directory_mode(), exist_ok=True)
        self._file.open()

    async def start(self) -> None:
        if self._started:
            return
        try:
            await asyncio.to_thread(self._open)
        except OSError as exc:
            raise StartError(
                f"The file exporter {self._label} cannot open {self._config.path}: {exc.strerror or exc}."
            ) from exc
        self._started = True
        self._ticker = self._tasks.spawn("flush", self._flush_every())
        self._log.info(
            "The file exporter is writing.",
            extra={"component": self._label, "path": self._config.path, "format": self._config.format},
        )

    async def shutdown(self) -> None:
        """Stop intake, write what is buffered, close the file. Idempotent."""
        if self._closing:
            return
        self._closing = True
        if not self._started:
            return
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        error: OSError | None = None
        while self._pending and error is None:
            error = await asyncio.shield(self._flush())
        if self._pending:
            self._lose_pending(error)
        await asyncio.to_thread(self._file.close)
        await self._tasks.close()

    def _lose_pending(self, error: OSError | None) -> None:
        reason = _reason(error) if error is not None else "io_error"
        lost = 0
        for record in self._pending:
            self._failed_counter(record.signal, reason).inc(record.items)
            lost += record.items
        self._pending.clear()
        self._pending_bytes = 0
        self._log.error(
            "The file exporter could not write what it held at shutdown; those items are lost.",
            extra={"component": self._label, "path": self._config.path, "items": lost, "error": str(error)},
        )

    # -- data --

    async def consume(self, batch: Batch) -> None:
        if self._closing or not self._started:
            raise ShuttingDownError(f"the file exporter {self._label} is not running")
        record = await self._encode(batch)
        while self._pending_bytes >= self._buffer_bytes:
            if self._closing:
                raise ShuttingDownError(f"the file exporter {self._label} is shutting down")
            error = await asyncio.shield(self._flush())
            if error is not None:
                self._failed_counter(batch.signal, _reason(error)).inc(record.items)
                raise RetryableError(
                    f"the file exporter {self._label} cannot write to {self._config.path}: {error.strerror or error}"
                ) from error
        if self._closing:
            raise ShuttingDownError(f"the file exporter {self._label} is shutting down")
        self._pending.append(record)
        self._pending_bytes += len(record.data)
        if self._pending_bytes >= self._buffer_bytes:
            # Write a full buffer now rather than at the next tick; a failure leaves the
            # records buffered (accepted) and the next batch is refused until writes work.
            await asyncio.shield(self._flush())

    async def _encode(self, batch: Batch) -> _Record:
        if self._config.format == "proto":
            data = batch.serialize()
            return _Record(_LENGTH.pack(len(data)) + data, batch.signal, batch.items)
        message = batch.message  # parsed here, on the loop, so the thread only reads it
        if batch.items > 64:
            # About 60 µs a span: a large batch would hold the loop for tens of milliseconds.
            data = await asyncio.to_thread(_json_record, message)
        else:
            data = _json_record(message)
        return _Record(data, batch.signal, batch.items)

    # -- writing --

    def _flush(self) -> asyncio.Task[OSError | None]:
        """The write in flight, or a new one for everything buffered; one at a time."""
        if self._inflight is None or self._inflight.done():
            self._inflight = self._tasks.spawn("write", self._write_pending())
        return self._inflight

    async def _write_pending(self) -> OSError | None:
        if not self._pending:
            return None
        records = list(self._pending)
        try:
            await asyncio.to_thread(self._file.write, [r.data for r in records], self._head_offset)
            done, offset, error = len(records), 0, None
        except PartialWrite as partial:
            done, offset, error = partial.done, partial.offset, partial.cause
        for _ in range(done):
            record = self._pending.popleft()
            self._pending_bytes -= len(record.data)
            self._sent[record.signal].inc(record.items)
        self._head_offset = offset
        self._note(error)
        return error

    def _note(self, error: OSError | None) -> None:
        """Log and report the first failure of a streak and the recovery, nothing between."""
        if error is not None and not self._failing:
            self._failing = True
            self._log.warning(
                "The file exporter cannot write; it keeps what it holds and refuses new data while its buffer is full.",
                extra={"component": self._label, "path": self._config.path, "error": str(error)},
            )
            self._settings.report_status(self._status_name, error)
        elif error is None and self._failing:
            self._failing = False
            self._log.info("The file exporter writes again.", extra={"component": self._label, "path": self._config.path})
            self._settings.report_status(self._status_name, None)

    async def _flush_every(self) -> None:
        interval = float(self._config.flush_interval)
        while True:
            await asyncio.sleep(interval)
            if self._pending:
                await asyncio.shield(self._flush())

    def _failed_counter(self, signal: Signal, reason: str) -> Any:
        counter = self._failed.get((signal, reason))
        if counter is None:
            counter = self._failed[(signal, reason)] = self._settings.metrics.exporter_failed.labels(
                component=self._label, signal=signal.value, reason=reason
            )
        return counter


def _create(settings: Settings, config: FileConfig) -> FileExporter:
    return FileExporter(settings, config)


FACTORY = ExporterFactory(
    type="file",
    config_type=FileConfig,
    description="Writes batches to a local file as OTLP/JSON lines or length-prefixed protobuf.",
    signals={Signal.TRACES: Stability.BETA, Signal.METRICS: Stability.BETA, Signal.LOGS: Stability.BETA},
    create=_create,
)
