"""Shared fixtures: every async test runs on asyncio and on uvloop (CONVENTIONS §16)."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    """Each async test runs once per event loop (ids `[asyncio]` and `[uvloop]`)."""
    factories: dict[str, object] = {"asyncio": asyncio.new_event_loop}
    if uvloop is not None:
        factories["uvloop"] = uvloop.new_event_loop
    return factories


def require_tool(name: str) -> str:
    """Path of an executable the test needs: skipped locally when missing, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed; run `make test` (it installs every peer)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path
