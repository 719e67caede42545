"""Config problems: a path into the YAML and a sentence, collected and then reported at once.

A path is a tuple of mapping keys (str) and list indexes (int); it renders as
`service.pipelines.traces.exporters[1]`. A key that would read ambiguously in that form
(it holds a dot, a space or a bracket, or is empty) is quoted: `attributes["http.method"]`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Segment = str | int
Path = tuple[Segment, ...]
#: Where a path's key or item was written: (source index, line, column), 1-based lines.
Position = tuple[int, int, int]

_PLAIN_KEY = re.compile(r"^[^.\s\[\]\"]+$")


def segment(key: Any) -> str:
    """The path segment of a mapping key (YAML allows non-string keys; the path shows them)."""
    return key if isinstance(key, str) else str(key)


def format_path(path: Path) -> str:
    out: list[str] = []
    for seg in path:
        if isinstance(seg, int):
            out.append(f"[{seg}]")
        elif _PLAIN_KEY.match(seg):
            out.append(f".{seg}" if out else seg)
        else:
            out.append(f"[{json.dumps(seg, ensure_ascii=False)}]")
    return "".join(out)


def describe(value: Any) -> str:
    """What a YAML value is, for sentences: `a mapping`, `a list`, `a string`, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{format_path(self.path)}: {self.message}" if self.path else self.message


class Problems:
    """Problems in the order they were found."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, path: Path, message: str) -> None:
        self.items.append(Problem(path, message))

    def extend(self, problems: Iterable[Problem]) -> None:
        self.items.extend(problems)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)


def in_order(problems: Iterable[Problem], positions: Mapping[Path, Position]) -> list[str]:
    """Messages sorted by where their path appears in the sources.

    Problems whose path appears nowhere (a section left out entirely) come last; ties keep
    the order in which they were found. Duplicates are reported once.
    """

    def where(p: Problem) -> tuple[int, Position]:
        if p.path in positions:
            return (0, positions[p.path])
        # A path that is not written (a missing option) sorts at the end of the nearest
        # block that is: after everything written inside it.
        for n in range(len(p.path) - 1, 0, -1):
            prefix = p.path[:n]
            if prefix in positions:
                return (0, max(pos for path, pos in positions.items() if path[:n] == prefix))
        return (1, (0, 0, 0))

    seen: set[str] = set()
    out: list[str] = []
    for problem in sorted(problems, key=where):
        text = str(problem)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out
