"""The dead letter: where documents Elasticsearch refused for good are kept, with the reason.

`path` appends one JSON line per document to a file, rotated by size with the `file`
exporter's `RotatingFile` (`max_megabytes`, `max_backups`, `max_days`, so the dead letter
is bounded on disk); `index` sends the same entries as
documents to an index of the same cluster (the refused document as a JSON string, so the
mapping conflict that refused it cannot refuse the entry). Writing never raises: a dead
letter that cannot be written is counted (`outcome="failed"`) and logged at ERROR, and
without a dead letter the documents are counted as `lost`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from agent.component import Settings
from agent.exporters.elasticsearch import DeadLetterConfig
from agent.exporters.elasticsearch.documents import Timestamps
from agent.exporters.elasticsearch.encode import Doc
from agent.exporters.file import PartialWrite, RotatingFile, RotationConfig


@dataclass
class DeadLetterEntry:
    """One refused document (`doc`, its encoded JSON) or unencodable record (`record`)."""

    index: str
    id: str | None
    status: int
    error_type: str
    reason: str
    doc: bytes | None = None
    record: Any = None


class DeadLetter:
    def __init__(self, settings: Settings, config: DeadLetterConfig | None,
                 post: Callable[[list[Doc]], Awaitable[None]]) -> None:
        self._config = config
        self._post = post
        self._log = settings.logger
        self._label = settings.label
        self._json = msgspec.json.Encoder()
        self._ts = Timestamps()
        self._lock = asyncio.Lock()
        self._file: RotatingFile | None = None
        if config is not None and config.path:
            rotation = RotationConfig(max_megabytes=config.max_megabytes, max_backups=config.max_backups,
                                      max_days=config.max_days)
            self._file = RotatingFile(config.path, rotation, append=True)
        m = settings.metrics.elasticsearch_dead_letter
        self._written = m.labels(self._label, "written")
        self._failed = m.labels(self._label, "failed")
        self._lost = m.labels(self._label, "lost")

    @property
    def enabled(self) -> bool:
        return self._config is not None

    async def write(self, entries: list[DeadLetterEntry]) -> None:
        if not entries:
            return
        config = self._config
        if config is None:
            self._lost.inc(len(entries))
            self._log.error(
                "Elasticsearch refused documents for good and no dead_letter is configured; they are lost.",
                extra={"component": self._label, "documents": len(entries),
                       "error": f"{entries[0].error_type}: {entries[0].reason}"})
            return
        written = 0  # before a failure
        try:
            if self._file is not None:
                # One record a line, so that the file rotates between lines, never inside one.
                lines = [self._json.encode(self._entry(e, raw=True)) + b"\n" for e in entries]
                async with self._lock:  # whole lines, never interleaved
                    try:
                        await asyncio.to_thread(_append, self._file, lines)
                    except PartialWrite as exc:
                        written = exc.done
                        raise exc.cause from None
            else:
                action = self._json.encode({"create": {"_index": config.index}}) + b"\n"
                docs = [Doc(config.index, None, action, self._json.encode(self._entry(e, raw=False)))
                        for e in entries]
                await self._post(docs)
        except Exception as exc:
            self._written.inc(written)
            self._failed.inc(len(entries) - written)
            self._log.error(
                "Documents Elasticsearch refused could not be written to the dead letter; they are lost.",
                extra={"component": self._label, "documents": len(entries) - written,
                       "dead_letter": config.path or config.index, "error": str(exc) or type(exc).__name__})
            return
        self._written.inc(len(entries))
        self._log.warning(
            "Elasticsearch refused documents for good; they were written to the dead letter.",
            extra={"component": self._label, "documents": len(entries),
                   "dead_letter": config.path or config.index,
                   "error": f"{entries[0].error_type}: {entries[0].reason}"})

    def _entry(self, e: DeadLetterEntry, *, raw: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"@timestamp": self._ts(time.time_ns()), "index": e.index}
        if e.id is not None:
            out["id"] = e.id
        out["status"] = e.status
        out["error"] = {"type": e.error_type, "reason": e.reason}
        if e.doc is not None:
            out["document"] = msgspec.Raw(e.doc) if raw else e.doc.decode("utf-8", "replace")
        else:
            out["record"] = e.record if raw else self._json.encode(e.record).decode()
        return out


def _append(file: RotatingFile, lines: list[bytes]) -> None:
    """Append `lines` (rotating as needed); the file is opened for each write, so that it can
    be moved or removed between writes. Blocking: runs in a worker thread."""
    file.open()
    try:
        file.write(lines)
    finally:
        file.close()
