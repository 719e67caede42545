"""The real OpenTelemetry SDK → agent A (otlp → batch → otlp_grpc) → agent B (otlp → file).

Both agents run as processes (`python -m agent run`). Every item must arrive at B's file with
resource, scope, attributes, events, links and status intact.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Status, StatusCode

from agent.model import Signal, otlp_json
from agent.testing import AgentProcess, free_port, from_any_value
from tests.integration.helpers import read_otlp_jsonl, spans_by_id, wait_until

B_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
processors:
  batch:
    timeout: 20ms
exporters:
  file:
    path: {path}
    flush_interval: 50ms
service:
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [file]}}
    metrics: {{receivers: [otlp], processors: [batch], exporters: [file]}}
    logs: {{receivers: [otlp], processors: [batch], exporters: [file]}}
"""

A_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: 2000
  batch:
    timeout: 20ms
exporters:
  otlp/b:
    endpoint: 127.0.0.1:{b}
    tls: {{insecure: true}}
    retry_on_failure:
      initial_interval: 100ms
service:
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    traces: {{receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlp/b]}}
    metrics: {{receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlp/b]}}
    logs: {{receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlp/b]}}
"""


class Chain:
    def __init__(self, tmp: Path) -> None:
        self.out = tmp / "b" / "out.jsonl"
        self.b_port, self.grpc, self.http = free_port(), free_port(), free_port()
        tb, ta = free_port(), free_port()
        self.b = AgentProcess(B_CONFIG.format(port=self.b_port, path=self.out, telemetry=tb), telemetry_port=tb)
        self.a = AgentProcess(A_CONFIG.format(grpc=self.grpc, http=self.http, b=self.b_port, telemetry=ta),
                              telemetry_port=ta)

    def received(self) -> list[tuple[Signal, object]]:
        return read_otlp_jsonl(self.out)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    c = Chain(tmp_path_factory.mktemp("chain"))
    c.b.start()
    c.a.start()
    try:
        yield c
    finally:
        assert c.a.stop() == 0, c.a.output()
        assert c.b.stop() == 0, c.b.output()
        c.a.close()
        c.b.close()


def _make_spans(tag: str, exporter: object) -> list[object]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "resnet-server", "deployment": tag}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=10_000))  # type: ignore[arg-type]
    tracer = provider.get_tracer("inference", "1.2.3")
    with tracer.start_as_current_span("request", kind=trace_api.SpanKind.SERVER) as root:
        root.set_attribute("ml.model.name", "resnet50")
        root.set_attribute("http.response.status_code", 200)
        for i in range(20):
            link = Link(root.get_span_context(), {"link.kind": "parent-request"})
            with tracer.start_as_current_span(f"predict-{i}", links=[link]) as span:
                span.set_attribute("ml.batch_size", i)
                span.set_attribute("ml.scores", [0.1, 0.2])
                span.add_event("tokens", {"count": i * 3})
                if i % 5 == 0:
                    span.set_status(Status(StatusCode.ERROR, "bad input tensor"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def _assert_spans_arrived(chain: Chain, finished: list[object]) -> None:
    expected = encode_spans(finished)  # type: ignore[arg-type]
    want = spans_by_id([(Signal.TRACES, expected)])
    wait_until(lambda: set(want) <= set(spans_by_id(chain.received())), what="spans at agent B")
    got = spans_by_id(chain.received())
    for span_id, (resource, scope, span) in want.items():
        g_resource, g_scope, g_span = got[span_id]
        assert g_span == span
        assert g_scope == scope
        assert g_resource == resource
    assert any(len(s.events) == 1 and len(s.links) == 1 for _, _, s in got.values())
    assert any(s.status.code == 2 for _, _, s in got.values())


def test_sdk_traces_over_grpc_arrive_intact(chain: Chain) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    spans = _make_spans("grpc", OTLPSpanExporter(endpoint=f"127.0.0.1:{chain.grpc}", insecure=True))
    _assert_spans_arrived(chain, spans)


def test_sdk_traces_over_http_protobuf_arrive_intact(chain: Chain) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    spans = _make_spans("http", OTLPSpanExporter(endpoint=f"http://127.0.0.1:{chain.http}/v1/traces"))
    _assert_spans_arrived(chain, spans)


def test_traces_over_http_json_arrive_intact(chain: Chain) -> None:
    spans = _make_spans("json", InMemorySpanExporter())
    body = otlp_json.encode(encode_spans(spans))  # type: ignore[arg-type]
    req = urllib.request.Request(f"http://127.0.0.1:{chain.http}/v1/traces", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    _assert_spans_arrived(chain, spans)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_logs_arrive_intact(chain: Chain, transport: str) -> None:
    from opentelemetry._logs import SeverityNumber

    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        exporter = OTLPLogExporter(endpoint=f"127.0.0.1:{chain.grpc}", insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HTTPLogExporter
        exporter = HTTPLogExporter(endpoint=f"http://127.0.0.1:{chain.http}/v1/logs")
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": f"logs-{transport}"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logger = provider.get_logger("inference.logs", "0.1")
    for i in range(15):
        logger.emit(body=f"prediction {i} {transport}", severity_number=SeverityNumber.WARN,
                    severity_text="WARN", attributes={"request.id": f"r{i}", "latency_ms": i * 1.5})
    provider.shutdown()
    expected = encode_logs(memory.get_finished_logs())
    want = {lr.body.string_value: lr for rl in expected.resource_logs for sl in rl.scope_logs for lr in sl.log_records}

    def got() -> dict[str, object]:
        return {lr.body.string_value: (rl.resource, sl.scope, lr)
                for s, m in chain.received() if s is Signal.LOGS
                for rl in m.resource_logs for sl in rl.scope_logs for lr in sl.log_records}  # type: ignore[union-attr]

    wait_until(lambda: set(want) <= set(got()), what="log records at agent B")
    received = got()
    for body, record in want.items():
        resource, scope, lr = received[body]  # type: ignore[misc]
        assert lr == record
        assert scope.name == "inference.logs" and scope.version == "0.1"
        assert {kv.key: from_any_value(kv.value) for kv in resource.attributes}["service.name"] == f"logs-{transport}"


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_metrics_arrive_intact(chain: Chain, transport: str) -> None:
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        exporter = OTLPMetricExporter(endpoint=f"127.0.0.1:{chain.grpc}", insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HTTPMetricExporter,
        )
        exporter = HTTPMetricExporter(endpoint=f"http://127.0.0.1:{chain.http}/v1/metrics")
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(metric_readers=[reader],
                             resource=Resource.create({"service.name": f"metrics-{transport}"}))
    meter = provider.get_meter("inference.metrics")
    counter = meter.create_counter(f"predictions_{transport}", unit="1")
    hist = meter.create_histogram(f"latency_{transport}", unit="ms")
    for i in range(10):
        counter.add(1, {"model": "resnet50"})
        hist.record(i * 10.0, {"model": "resnet50"})
    provider.shutdown()

    def metrics() -> dict[str, object]:
        return {m.name: m for s, msg in chain.received() if s is Signal.METRICS
                for rm in msg.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}  # type: ignore[union-attr]

    wait_until(lambda: {f"predictions_{transport}", f"latency_{transport}"} <= set(metrics()), what="metrics at B")
    got = metrics()
    c = got[f"predictions_{transport}"]
    assert c.sum.data_points[0].as_int == 10 and c.sum.is_monotonic  # type: ignore[attr-defined]
    h = got[f"latency_{transport}"]
    assert h.histogram.data_points[0].count == 10  # type: ignore[attr-defined]
    assert h.histogram.data_points[0].sum == pytest.approx(450.0)  # type: ignore[attr-defined]
    assert {kv.key: from_any_value(kv.value) for kv in h.histogram.data_points[0].attributes} == {"model": "resnet50"}  # type: ignore[attr-defined]


def test_agents_count_what_they_moved(chain: Chain) -> None:
    wait_until(lambda: chain.a.metric("flowglass_exporter_sent_items_total", signal="traces") >= 63,
               what="A's exporter counter")
    assert chain.a.metric("flowglass_receiver_accepted_items_total", signal="traces") >= 63
    assert chain.b.metric("flowglass_receiver_accepted_items_total", signal="traces") >= 63
