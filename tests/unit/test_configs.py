"""Every YAML under config/ loads and validates (the README promises they run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import default_config_text
from agent.components import default_registry
from agent.config import load, load_text

ROOT = Path(__file__).resolve().parents[2]
YAMLS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "config").rglob("*.y*ml"))


def test_there_are_configs() -> None:
    assert "config/default.yaml" in YAMLS
    assert len(YAMLS) >= 3


@pytest.mark.parametrize("path", YAMLS)
def test_config_validates(path: str) -> None:
    config = load([ROOT / path], default_registry(), environ={})
    assert config.pipelines


def test_embedded_default_is_config_default_yaml() -> None:
    assert default_config_text() == (ROOT / "config" / "default.yaml").read_text()
    config = load_text(default_config_text(), registry=default_registry(), environ={})
    assert {str(p) for p in config.pipelines} == {"traces", "metrics", "logs"}
