"""Real OpenTelemetry SDK traces → agent (spanmetrics → prometheusremotewrite) → Prometheus 2.42.

One agent process, one Prometheus (remote-write receiver, scraping the agent's own metrics,
evaluating a short-window copy of the error-rate alert) and one Alertmanager, shared by the
tests of this module:

- the P95 from `histogram_quantile` over the written buckets lies in the bucket of the true
  P95 of the generated latencies; call and error counts are exactly what was sent, per model
  version (the canary and the stable version side by side);
- every PromQL expression of the rules and of the dashboard runs against that Prometheus
  and returns data (alerts: the value they compare), from real situations: failing
  pipelines of the same agent (tests/integration/expression_data.py) make the agent-health
  alerts' conditions hold, and series named as cAdvisor, DCGM and the ML-signals work name
  theirs stand in for those exporters;
- the error-rate alert fires for the service above 2% errors and reaches Alertmanager, and
  not for the one without errors.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from grpc import StatusCode as RpcStatus
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from agent.connectors.spanmetrics import DEFAULT_BUCKETS_MS
from agent.testing import AgentProcess, free_port, stop_process
from tests.conftest import require_tool
from tests.integration.expression_data import FAILING, failing_traffic, send_stand_in_metrics
from tests.integration.helpers import wait_until
from tests.integration.prometheus_peer import Prometheus

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ml-service.json"

#: Spans per service; the SDK makes about 8k spans/s here.
N = 2000
ERROR_SHARE = {"ranker": 0.03, "embedder": 0.0}
VERSIONS = ("1.4", "1.5-canary")

AGENT = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
connectors:
  spanmetrics:
    metrics_flush_interval: 500ms
    dimensions:
      - name: ml.model.name
      - name: ml.model.version
exporters:
  prometheusremotewrite:
    endpoint: {write_url}
service:
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [spanmetrics]
    metrics:
      receivers: [spanmetrics, otlp]
      exporters: [prometheusremotewrite]
"""

#: A service that sends two bursts and then stops: MLServiceThroughputDrop, evaluated an hour
#: later, sees it serve nothing after serving PROBE_SPANS spans.
PROBE = "throughput-probe"
PROBE_SPANS = 200


def agent_config(grpc_port: int, failing: int, closed: int, write_url: str, telemetry: int, sink: Path) -> str:
    """The module's agent: span metrics to Prometheus, plus the failing pipelines."""
    doc = yaml.safe_load(AGENT.format(grpc=grpc_port, write_url=write_url, telemetry=telemetry))
    extra = yaml.safe_load(FAILING.format(failing=failing, closed=closed, sink=sink))
    for section in ("receivers", "processors", "connectors", "exporters"):
        doc.setdefault(section, {}).update(extra[section])
    doc["service"]["pipelines"].update(extra["pipelines"])
    return str(yaml.safe_dump(doc))


class Alertmanager:
    """Debian `prometheus-alertmanager` on a free port, stopped by its process id."""

    def __init__(self, binary: str) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="flowglass-alertmanager-")
        self.dir = Path(self._dir.name)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {"route": {"receiver": "null", "group_wait": "1s"}, "receivers": [{"name": "null"}]}
        (self.dir / "alertmanager.yml").write_text(json.dumps(config))
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Alertmanager:
        log = open(self.dir / "alertmanager.log", "wb")
        self.proc = subprocess.Popen([
            self.binary, f"--config.file={self.dir / 'alertmanager.yml'}",
            f"--storage.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ], stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        log.close()
        wait_until(self._ready, 30, "alertmanager ready")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"alertmanager exited: {(self.dir / 'alertmanager.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.url + "/api/v2/alerts", timeout=5) as r:
            return list(json.loads(r.read()))

    def close(self) -> None:
        stop_process(self.proc)
        self._dir.cleanup()


def short_window_error_rule() -> dict[str, Any]:
    """MLServiceHighErrorRate as written in deploy/, with a 30s window and a 1s `for`."""
    doc = yaml.safe_load((RULES / "ml-service.yaml").read_text())
    rule = next(r for g in doc["groups"] for r in g["rules"] if r.get("alert") == "MLServiceHighErrorRate")
    assert "[5m]" in rule["expr"]
    rule = {**rule, "expr": rule["expr"].replace("[5m]", "[30s]"), "for": "1s"}
    return {"groups": [{"name": "short-window", "interval": "1s", "rules": [rule]}]}


@dataclass
class Sent:
    """What the SDK sent, per service: durations (ms) and error counts per model version."""

    durations: dict[str, list[float]]
    calls: dict[tuple[str, str], int]
    errors: dict[tuple[str, str], int]


@dataclass
class Stack:
    prometheus: Prometheus
    alertmanager: Alertmanager
    agent: AgentProcess
    sent: Sent
    grpc_port: int


def send_probe_bursts(grpc_port: int, prom: Prometheus) -> None:
    """Two bursts of server spans, the second once the first is in Prometheus."""
    provider = TracerProvider(resource=Resource.create({"service.name": PROBE}))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True), schedule_delay_millis=50))
    tracer = provider.get_tracer("flowglass.test")
    query = f'sum(traces_span_metrics_calls_total{{service_name="{PROBE}"}})'
    try:
        for burst in (1, 2):
            for _ in range(PROBE_SPANS // 2):
                tracer.start_span("predict", kind=SpanKind.SERVER).end()
            assert provider.force_flush(30_000)
            wait_until(lambda n=burst: prom.value(query) == n * PROBE_SPANS // 2, 30,  # type: ignore[misc]
                       f"burst {burst} of {PROBE} in Prometheus")
    finally:
        provider.shutdown()


def send_spans(grpc_port: int) -> Sent:
    """Real SDK spans with known durations (log-normal, median 120 ms) and error shares."""
    rng = random.Random(7)
    durations: dict[str, list[float]] = {}
    calls: dict[tuple[str, str], int] = {}
    errors: dict[tuple[str, str], int] = {}
    for service, share in ERROR_SHARE.items():
        provider = TracerProvider(resource=Resource.create(
            {"service.name": service, "service.instance.id": f"{service}-0"}))
        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True),
            max_queue_size=N * 2, max_export_batch_size=512, schedule_delay_millis=50))
        tracer = provider.get_tracer("flowglass.test")
        durations[service] = []
        for i in range(N):
            ms = rng.lognormvariate(math.log(120), 0.8)
            version = VERSIONS[i % 2]
            failed = rng.random() < share
            start = time.time_ns()
            span = tracer.start_span("predict", kind=SpanKind.SERVER, start_time=start,
                                     attributes={"ml.model.name": service, "ml.model.version": version})
            if failed:
                span.set_status(Status(StatusCode.ERROR, "inference failed"))
            span.end(end_time=start + int(ms * 1e6))
            durations[service].append(ms)
            calls[(service, version)] = calls.get((service, version), 0) + 1
            errors[(service, version)] = errors.get((service, version), 0) + int(failed)
        assert provider.force_flush(30_000)
        provider.shutdown()
    return Sent(durations, calls, errors)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    am = Alertmanager(require_tool("prometheus-alertmanager")).start()
    telemetry, grpc = free_port(), free_port()
    prom = Prometheus(require_tool("prometheus"), scrape_configs=[{
        "job_name": "flowglass", "scrape_interval": "1s",
        "static_configs": [{"targets": [f"127.0.0.1:{telemetry}"]}],
    }])
    (prom.dir / "short-window.yaml").write_text(yaml.safe_dump(short_window_error_rule()))
    config = json.loads((prom.dir / "prometheus.yml").read_text())
    config["rule_files"] = [str(prom.dir / "short-window.yaml")]
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am.port}"]}]}]}
    (prom.dir / "prometheus.yml").write_text(json.dumps(config))
    agent: AgentProcess | None = None
    try:
        prom.start()
        failing, closed = free_port(), free_port()  # nothing ever listens on `closed`
        agent = AgentProcess(agent_config(grpc, failing, closed, prom.write_url, telemetry,
                                          prom.dir / "sink.jsonl"), telemetry)
        agent.start()
        sent = send_spans(grpc)
        total = sum(sent.calls.values())
        wait_until(lambda: prom.value(
            f'sum(traces_span_metrics_calls_total{{service_name=~"{"|".join(ERROR_SHARE)}"}})') == total, 60,
                   f"{total} calls in Prometheus")
        # Once Prometheus holds the agent's counters at 0, so that rate() sees them increase.
        wait_until(lambda: bool(prom.query(
            'flowglass_exporter_send_failed_items_total{component="otlp_grpc/unreachable"} == 0')), 30,
                   "the agent's counters at 0 in Prometheus")
        codes = failing_traffic(failing)
        # Accepted at first, refused once the stuck exporter's queue is full.
        assert codes[0] is RpcStatus.OK and codes[-1] is RpcStatus.UNAVAILABLE, codes
        send_stand_in_metrics(grpc)
        send_probe_bursts(grpc, prom)
        yield Stack(prom, am, agent, sent, grpc)
    finally:
        if agent is not None:
            agent.close()
        prom.close()
        am.close()


def _bucket_of(value: float) -> tuple[float, float]:
    bounds = [0.0, *map(float, DEFAULT_BUCKETS_MS), math.inf]
    for lo, hi in itertools.pairwise(bounds):
        if lo < value <= hi:
            return lo, hi
    raise AssertionError(value)


def _true_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1]


@pytest.mark.timeout(240)
def test_p95_from_the_buckets_is_in_the_bucket_of_the_true_p95(stack: Stack) -> None:
    for service, values in stack.sent.durations.items():
        for q in (0.5, 0.95, 0.99):
            estimate = stack.prometheus.value(
                f'histogram_quantile({q}, sum by (le) '
                f'(traces_span_metrics_duration_milliseconds_bucket{{service_name="{service}"}}))')
            assert estimate is not None
            lo, hi = _bucket_of(_true_quantile(values, q))
            assert lo <= estimate <= hi, f"{service} P{q * 100:g}: {estimate} not in ({lo}, {hi}]"
        total_ms = stack.prometheus.value(
            f'sum(traces_span_metrics_duration_milliseconds_sum{{service_name="{service}"}})')
        assert total_ms == pytest.approx(sum(values), rel=1e-6)
        count = stack.prometheus.value(
            f'sum(traces_span_metrics_duration_milliseconds_count{{service_name="{service}"}})')
        assert count == len(values)


@pytest.mark.timeout(240)
def test_calls_and_errors_per_model_version_are_what_was_sent(stack: Stack) -> None:
    prom = stack.prometheus
    rows = prom.query('sum by (service_name, ml_model_version, span_kind, status_code, job) '
                      '(traces_span_metrics_calls_total)')
    got: dict[tuple[str, str, str], float] = {}
    for row in rows:
        m = row["metric"]
        if m["service_name"] == PROBE:
            continue
        assert m["span_kind"] == "SPAN_KIND_SERVER"
        assert m["job"] == m["service_name"]  # job comes from service.name
        got[(m["service_name"], m["ml_model_version"], m["status_code"])] = float(row["value"][1])
    for (service, version), n in stack.sent.calls.items():
        errors = stack.sent.errors[(service, version)]
        assert got.get((service, version, "STATUS_CODE_UNSET"), 0) == n - errors
        assert got.get((service, version, "STATUS_CODE_ERROR"), 0) == errors
    assert sum(stack.sent.errors[("ranker", v)] for v in VERSIONS) > 0
    # The error ratio the alert computes, over everything sent, matches the sent share.
    ratio = prom.value('sum(traces_span_metrics_calls_total{service_name="ranker", status_code="STATUS_CODE_ERROR"})'
                       ' / sum(traces_span_metrics_calls_total{service_name="ranker"})')
    sent_ratio = sum(stack.sent.errors[("ranker", v)] for v in VERSIONS) / N
    assert ratio == pytest.approx(sent_ratio)


def _concrete(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "1m")
    return re.sub(r"\$\{?[a-z_]+\}?", ".*", expr)


def _dashboard_expressions() -> list[tuple[str, str]]:
    doc = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in doc["panels"] if p["type"] != "row" for t in p["targets"]]


def _rule_expressions() -> list[tuple[str, str]]:
    out = []
    for path in sorted(RULES.glob("*.yaml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            out.extend((rule.get("alert") or rule["record"], rule["expr"]) for rule in group["rules"])
    return out


def _value_expression(expr: str) -> str:
    """An alert's expression without its trailing threshold: the value it compares."""
    return re.sub(r"\)\s*>\s*[0-9.]+\s*$", ")", expr.strip())


#: Alerts whose condition the module's stack makes hold (the others compare values that
#: depend on the latency and error shares sent; the error-rate alert fires in its own test).
HOLDING = ("FlowglassExporterFailing", "FlowglassComponentDown", "FlowglassExporterQueueNearlyFull",
           "FlowglassItemsRefused", "FlowglassTailSamplingEvictedEarly", "MLServiceThroughputDrop")


@pytest.mark.timeout(240)
def test_every_rule_and_dashboard_expression_runs_and_returns_data(stack: Stack) -> None:
    prom = stack.prometheus
    # MLServiceThroughputDrop compares with the rate of an hour earlier: it is evaluated an hour
    # after now, when the traffic sent by this module is "an hour ago" and none is current.
    later = time.time() + 3600
    rules = _rule_expressions()
    for title, expr in [*_dashboard_expressions(), *rules]:
        at = later if "offset 1h" in expr else None
        prom.query(_concrete(expr), at)  # raises on a PromQL error
        value_expr = _concrete(_value_expression(expr))
        # rate() needs two samples of a series in its window: the connector re-sends its
        # cumulative totals every 500ms and Prometheus scrapes the agent every second.
        wait_until(lambda e=value_expr, t=at: bool(prom.query(e, t)), 20,  # type: ignore[misc]
                   f"data for {title}: {value_expr}")
    for name, expr in rules:
        if name in HOLDING:
            at = later if "offset 1h" in expr else None
            wait_until(lambda e=expr, t=at: bool(prom.query(e, t)), 20,  # type: ignore[misc]
                       f"{name} holds: {expr}")
    # Which components and services made them hold.
    failed = prom.query("sum by (component) (flowglass_exporter_send_failed_items_total) > 0")
    assert {r["metric"]["component"] for r in failed} == {"otlp_grpc/unreachable"}
    down = prom.query("flowglass_component_up == 0")
    assert {(r["metric"]["kind"], r["metric"]["component"]) for r in down} == {("exporter", "file/full")}
    drop = prom.query(_concrete(dict(rules)["MLServiceThroughputDrop"]), later)
    assert PROBE in {r["metric"]["service_name"] for r in drop}
    refused = prom.query("sum by (component, reason) (flowglass_receiver_refused_items_total) > 0")
    assert {(r["metric"]["component"], r["metric"]["reason"]) for r in refused} == {("otlp/failing", "retryable")}
    assert (prom.value("sum(flowglass_connector_spanmetrics_overflow_spans_total)") or 0) > 0
    for family, labels in (("container_cpu_usage_seconds_total", {"container", "cpu", "id", "image", "name",
                                                                  "namespace", "pod"}),
                           ("container_memory_working_set_bytes", {"container", "id", "image", "name",
                                                                   "namespace", "pod"}),
                           ("DCGM_FI_DEV_GPU_UTIL", {"gpu", "UUID", "device", "modelName", "Hostname",
                                                     "container", "namespace", "pod"})):
        (row,) = prom.query(family)
        assert set(row["metric"]) - {"__name__", "job", "instance"} == labels, row
    # The agent's own metrics the dashboard shows are scraped from the agent.
    for family in ("flowglass_receiver_accepted_items_total", "flowglass_exporter_sent_items_total",
                   "flowglass_process_cpu_seconds_total", "flowglass_component_up",
                   "flowglass_connector_spanmetrics_series"):
        wait_until(lambda f=family: bool(prom.query(f)), 20, f"{family} scraped")  # type: ignore[misc]


@pytest.mark.timeout(240)
def test_the_error_rate_alert_fires_into_alertmanager_only_for_the_failing_service(stack: Stack) -> None:
    """Steady traffic (ranker 10% errors, embedder none) until the alert reaches Alertmanager."""

    def firing() -> list[dict[str, Any]]:
        return [a for a in stack.alertmanager.alerts() if a["labels"].get("alertname") == "MLServiceHighErrorRate"]

    rng = random.Random(11)
    providers = {}
    for service in ("ranker", "embedder"):
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"127.0.0.1:{stack.grpc_port}", insecure=True),
            max_queue_size=10_000, schedule_delay_millis=50))
        providers[service] = provider
    try:
        deadline = time.monotonic() + 90
        alerts: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not alerts:
            # The 30s rate() sees increases between the connector's flushes (every 500ms).
            for service, provider in providers.items():
                tracer = provider.get_tracer("flowglass.test")
                for _ in range(50):
                    start = time.time_ns()
                    span = tracer.start_span("predict", kind=SpanKind.SERVER, start_time=start)
                    if service == "ranker" and rng.random() < 0.1:
                        span.set_status(Status(StatusCode.ERROR))
                    span.end(end_time=start + 5_000_000)
            time.sleep(0.2)
            alerts = firing()
    finally:
        for provider in providers.values():
            provider.shutdown()
    assert alerts, "MLServiceHighErrorRate did not reach Alertmanager within 90s"
    # Rule evaluations go on: the healthy service never fires.
    time.sleep(2)
    alerts = firing()
    assert {a["labels"]["service_name"] for a in alerts} == {"ranker"}
    alert = alerts[0]
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == "ranker: more than 2% of requests fail"
    assert alert["status"]["state"] == "active"
