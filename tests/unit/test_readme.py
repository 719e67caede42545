"""The README's component table matches the registry (type, kind, signals, stability)."""

from __future__ import annotations

import re
from pathlib import Path

from agent.component import ConnectorFactory
from agent.components import default_registry

README = Path(__file__).resolve().parents[2] / "README.md"


def _rows() -> dict[tuple[str, str], tuple[str, str]]:
    rows = {}
    for line in README.read_text().splitlines():
        m = re.match(r"^\| `([a-z_0-9]+)`[^|]*\| (\w+) \| ([^|]+) \| (\w+)", line)
        if m:
            rows[(m.group(1), m.group(2))] = (m.group(3).strip(), m.group(4))
    return rows


def test_every_component_has_a_true_row() -> None:
    rows = _rows()
    for f in default_registry():
        key = (f.type, f.kind.value)
        assert key in rows, f"README has no row for {f.kind.value} {f.type}"
        signals, stability = rows[key]
        if isinstance(f, ConnectorFactory):
            want = ", ".join(f"{a.value} → {b.value}" for a, b in f.signals)
        else:
            want = ", ".join(s.value for s in f.signals)
        assert signals == want, f"README signals for {f.type}: {signals!r} != {want!r}"
        assert {st.value for st in f.signals.values()} == {stability}, f.type
        for alias in f.aliases:
            assert f"alias `{alias}`" in README.read_text()


def test_no_row_for_a_component_that_does_not_exist() -> None:
    known = {(f.type, f.kind.value) for f in default_registry()}
    assert set(_rows()) <= known
