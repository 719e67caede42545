"""deploy/grafana/dashboards/ml-service.json: valid, laid out as promised, every query sound.

Every panel has a PromQL target; every expression parses (checked by promtool, as recording
rules, with Grafana's variables replaced); every Flowglass metric it names exists in the
agent's registry; the span-metric names are those the connector's output gets in Prometheus.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from agent.connectors.spanmetrics import DEFAULT_NAMESPACE
from agent.telemetry.metrics import AgentMetrics
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ml-service.json"
RULES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yaml"))

#: Metric families that other issues will add; names agreed here, checked when they land.
PLANNED_AGENT_METRICS = {"flowglass_processor_tail_sampling_evicted_traces_total"}
#: Names of the span metrics after OTLP → Prometheus translation (namespace `traces.span.metrics`,
#: `calls` a monotonic sum → `_total`, `duration` a histogram with unit `ms` → `_milliseconds`).
_PREFIX = DEFAULT_NAMESPACE.replace(".", "_")
SPAN_METRICS = {
    f"{_PREFIX}_calls_total",
    f"{_PREFIX}_duration_milliseconds_bucket",
    f"{_PREFIX}_duration_milliseconds_sum",
    f"{_PREFIX}_duration_milliseconds_count",
}
_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
_METRIC_RE = re.compile(r"\b((?:flowglass|traces_span_metrics)_[a-zA-Z0-9_]+)")


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def expressions() -> list[str]:
    return [t["expr"] for p in panels() for t in p["targets"]]


def rule_expressions() -> list[str]:
    out = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            out.extend(rule["expr"] for rule in group["rules"])
    return out


def concrete(expr: str) -> str:
    """The expression with Grafana's variables replaced by values PromQL accepts."""
    for name, value in _VARIABLES.items():
        expr = expr.replace(name, value)
    return re.sub(r"\$\{?[a-z_]+\}?", ".*", expr)


def test_the_dashboard_is_valid_json_with_an_id() -> None:
    d = dashboard()
    assert d["uid"] == "flowglass-ml-service" and d["title"]
    assert d["schemaVersion"] >= 30
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))


def test_rows_follow_the_seed_layout() -> None:
    rows: list[tuple[str, list[str]]] = []
    for p in dashboard()["panels"]:
        if p["type"] == "row":
            rows.append((p["title"], []))
        else:
            rows[-1][1].append(p["title"].lower())
    assert len(rows) == 3
    top, middle, bottom = (" | ".join(titles) for _, titles in rows)
    for word in ("requests / s", "error rate", "average latency", "p95 / p99"):
        assert word in top
    assert "quality" in middle and "drift" in middle
    for word in ("cpu", "memory", "gpu", "agent"):
        assert word in bottom
    # The top row's first four panels sit side by side in the first line.
    first = panels()[:4]
    assert [p["gridPos"]["y"] for p in first] == [1, 1, 1, 1]


def test_every_panel_has_a_promql_target_and_fits_the_grid() -> None:
    taken: set[tuple[int, int]] = set()
    for p in panels():
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].strip(), p["title"]
            assert t["datasource"]["type"] == "prometheus"
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, f"{p['title']} overlaps another panel"
        taken |= cells


def test_every_variable_used_is_defined() -> None:
    defined = {v["name"] for v in dashboard()["templating"]["list"]}
    used = set()
    for text in [*expressions(), *(t["datasource"]["uid"] for p in panels() for t in p["targets"])]:
        used |= set(re.findall(r"\$\{?([a-z_]+)\}?", text))
    assert used - {"__rate_interval", "__interval", "__range"} <= defined


def test_every_expression_parses(tmp_path: Path) -> None:
    """promtool parses each dashboard expression (as a recording rule's expr)."""
    promtool = require_tool("promtool")
    rules = [{"record": f"dashboard:panel_{i}", "expr": concrete(e)} for i, e in enumerate(expressions())]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(rules)} rules found" in r.stdout


def test_a_broken_expression_is_caught(tmp_path: Path) -> None:
    """The check above can fail: promtool rejects a malformed expression."""
    promtool = require_tool("promtool")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"record": "x:y", "expr": concrete("sum by (a (rate(m[$__rate_interval]))")}]}]}))
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0


def _agent_metric_names() -> set[str]:
    metrics = AgentMetrics(process=True)
    names = set()
    for family in metrics.registry.collect():
        kind = family.type
        names.add(family.name)
        if kind == "counter":
            names.add(f"{family.name}_total")
        elif kind == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
        elif kind == "info":
            names.add(f"{family.name}_info")
        for sample in family.samples:
            names.add(sample.name)
    return names


def test_agent_metric_names_exist_in_the_agent() -> None:
    known = _agent_metric_names() | PLANNED_AGENT_METRICS
    for expr in [*expressions(), *rule_expressions()]:
        for name in _METRIC_RE.findall(expr):
            if name.startswith("flowglass_"):
                assert name in known, f"{name} is not a metric of the agent"


def test_span_metric_names_are_the_translated_connector_output() -> None:
    used = {n for e in [*expressions(), *rule_expressions()] for n in _METRIC_RE.findall(e)
            if n.startswith("traces_span_metrics_")}
    assert used and used <= SPAN_METRICS
    labels = {"service_name", "span_kind", "status_code"}
    text = " ".join([*expressions(), *rule_expressions()])
    for label in labels:
        assert label in text
    assert "SPAN_KIND_SERVER" in text and "STATUS_CODE_ERROR" in text
