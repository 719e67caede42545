"""The dead-letter file: one JSON line per refused document, rotated by size like the `file`
exporter's output, with bounded backups."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from agent.component import Kind, Settings
from agent.exporters.elasticsearch import DeadLetterConfig
from agent.exporters.elasticsearch.deadletter import DeadLetter, DeadLetterEntry
from agent.exporters.elasticsearch.encode import Doc
from tests.unit.exporters.helpers import metric

MIB = 1024 * 1024


async def _no_post(docs: list[Doc]) -> None:
    raise AssertionError("a file dead letter does not post")


def dead_letter(path: Path, **options: Any) -> tuple[DeadLetter, Settings]:
    settings = Settings.for_test("elasticsearch", Kind.EXPORTER)
    return DeadLetter(settings, DeadLetterConfig(path=str(path), **options), _no_post), settings


def entry(i: int, size: int) -> DeadLetterEntry:
    body = json.dumps({"n": i, "pad": "x" * size}).encode()
    return DeadLetterEntry("logs-a", f"id-{i}", 400, "mapper_parsing_exception", "bad", doc=body)


def backups(directory: Path) -> list[Path]:
    """The rotated files, oldest first."""
    return sorted(directory.glob("dead-*.jsonl"))


def sizes(paths: list[Path]) -> list[int]:
    return [os.path.getsize(p) for p in paths]


def lines_of(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(line) for p in paths for line in p.read_text().splitlines()]


async def test_the_file_rotates_at_max_megabytes_and_keeps_max_backups(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    dl, settings = dead_letter(path, max_megabytes=1, max_backups=2)
    for i in range(12):  # 12 lines of about 300 KiB: 3 a file, so 4 files' worth
        await dl.write([entry(i, 300 * 1024)])
    rotated = backups(tmp_path)
    assert len(rotated) == 2  # the oldest backup was removed
    assert all(0 < size <= MIB for size in sizes([*rotated, path]))
    kept = lines_of([*rotated, path])
    # Whole lines only, the newest kept, in order.
    assert [e["document"]["n"] for e in kept] == list(range(3, 12))
    assert all(e["id"] == f"id-{e['document']['n']}" and e["status"] == 400 for e in kept)
    assert metric(settings, "flowglass_exporter_elasticsearch_dead_letter_documents_total", outcome="written") == 12


async def test_one_write_of_many_lines_rotates_between_lines(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    dl, _ = dead_letter(path, max_megabytes=1, max_backups=0)  # 0: every backup is kept
    await dl.write([entry(i, 200 * 1024) for i in range(12)])
    files = [*backups(tmp_path), path]
    assert len(files) == 3
    assert all(size <= MIB for size in sizes(files))
    assert [e["document"]["n"] for e in lines_of(files)] == list(range(12))


async def test_an_existing_file_is_continued_and_counted_towards_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    path.write_bytes(b'{"old": true}\n' + b" " * (MIB - 100) + b"\n")
    dl, _ = dead_letter(path, max_megabytes=1)
    await dl.write([entry(0, 1000)])
    [backup] = backups(tmp_path)
    assert backup.read_bytes().startswith(b'{"old": true}\n')
    assert [e["document"]["n"] for e in lines_of([path])] == [0]


async def test_a_file_that_cannot_be_written_is_counted_as_failed(tmp_path: Path) -> None:
    dl, settings = dead_letter(tmp_path / "missing" / "dead.jsonl")
    await dl.write([entry(0, 10), entry(1, 10)])
    assert metric(settings, "flowglass_exporter_elasticsearch_dead_letter_documents_total", outcome="failed") == 2
    assert metric(settings, "flowglass_exporter_elasticsearch_dead_letter_documents_total", outcome="written") == 0


async def test_a_rotation_that_fails_keeps_what_was_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dead.jsonl"
    dl, settings = dead_letter(path, max_megabytes=1)
    await dl.write([entry(0, 600 * 1024)])

    def refuse(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied", src)

    monkeypatch.setattr(os, "rename", refuse)  # the file can be appended to, not renamed
    await dl.write([entry(1, 100 * 1024), entry(2, 600 * 1024)])
    assert [e["document"]["n"] for e in lines_of([path])] == [0, 1]
    assert backups(tmp_path) == []
    assert metric(settings, "flowglass_exporter_elasticsearch_dead_letter_documents_total", outcome="written") == 2
    assert metric(settings, "flowglass_exporter_elasticsearch_dead_letter_documents_total", outcome="failed") == 1
