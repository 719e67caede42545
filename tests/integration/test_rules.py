"""deploy/prometheus/rules: promtool checks the rule files and runs their unit tests.

Each alert must have at least one test where it fires and one where it must not (an
evaluation expecting no alert), so a threshold that drifts is caught either way.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_tool

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yaml"))
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.yaml"))


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool")
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=RULES_DIR)


def _alerts(path: Path) -> set[str]:
    return {r["alert"] for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"] if "alert" in r}


def test_there_are_rules_and_tests() -> None:
    assert {p.name for p in RULE_FILES} >= {"ml-service.yaml", "flowglass-agent.yaml"}
    assert len(TEST_FILES) >= len(RULE_FILES)


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    r = _promtool("check", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(path: Path) -> None:
    r = _promtool("test", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    alerts: set[str] = set()
    for path in RULE_FILES:
        alerts |= _alerts(path)
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alerts, "no alerts found"
    assert alerts <= firing, f"alerts never tested firing: {sorted(alerts - firing)}"
    assert alerts <= quiet, f"alerts never tested quiet: {sorted(alerts - quiet)}"


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """promtool test rules really fails when an alert does not behave as a test expects."""
    rules = tmp_path / "rules.yaml"
    rules.write_text((RULES_DIR / "ml-service.yaml").read_text().replace(") > 0.02", ") > 0.5"))
    test = yaml.safe_load((RULES_DIR / "tests" / "ml-service_test.yaml").read_text())
    test["rule_files"] = [str(rules)]
    test_path = tmp_path / "test.yaml"
    test_path.write_text(yaml.safe_dump(test))
    r = _promtool("test", "rules", str(test_path))
    assert r.returncode != 0
    assert "MLServiceHighErrorRate" in r.stdout + r.stderr
