"""OTLP SDK → agent A (otlp → kafka) → tansu → agent B (kafka → file), for every signal and encoding.

Both agents run as processes. A writes each signal with four `kafka` exporters
(`otlp_proto` keyed by trace id, `otlp_json`, and for logs `raw` and `json`) and also to a
file, which is the record of what the SDK sent. B reads each topic set with its own
receiver and writes one file per encoding. Every span, data point and log record must come
out of B unchanged (`otlp_proto`, `otlp_json`), and the `raw` and `json` log encodings must
carry the body, time and severity across.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from agent.model import Signal
from agent.testing import AgentProcess, free_port, from_any_value
from tests.integration.helpers import read_otlp_jsonl, spans_by_id, wait_until
from tests.integration.kafka_peer import Tansu, tansu_path

A_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
exporters:
  kafka/proto:
    brokers: ["{brokers}"]
    partition_traces_by_id: true
    traces: {{topic: rt_p_spans}}
    metrics: {{topic: rt_p_metrics}}
    logs: {{topic: rt_p_logs}}
    retry_on_failure: {{initial_interval: 200ms}}
  kafka/json:
    brokers: ["{brokers}"]
    encoding: otlp_json
    traces: {{topic: rt_j_spans}}
    metrics: {{topic: rt_j_metrics}}
    logs: {{topic: rt_j_logs}}
  kafka/raw:
    brokers: ["{brokers}"]
    logs: {{topic: rt_raw_logs, encoding: raw}}
  kafka/jsonlogs:
    brokers: ["{brokers}"]
    logs: {{topic: rt_jl_logs, encoding: json}}
  file:
    path: {out}/sent.jsonl
    flush_interval: 50ms
service:
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [kafka/proto, kafka/json, file]}}
    metrics: {{receivers: [otlp], exporters: [kafka/proto, kafka/json, file]}}
    logs: {{receivers: [otlp], exporters: [kafka/proto, kafka/json, kafka/raw, kafka/jsonlogs, file]}}
"""

_CONSUMER = "brokers: [\"{brokers}\"], initial_offset: earliest, session_timeout: 2s, heartbeat_interval: 500ms"

B_CONFIG = """
receivers:
  kafka/proto:
    {{CONSUMER, group_id: rt-proto,
     traces: {{topics: [rt_p_spans]}}, metrics: {{topics: [rt_p_metrics]}}, logs: {{topics: [rt_p_logs]}}}}
  kafka/json:
    {{CONSUMER, group_id: rt-json,
     traces: {{topics: [rt_j_spans], encoding: otlp_json}}, metrics: {{topics: [rt_j_metrics], encoding: otlp_json}},
     logs: {{topics: [rt_j_logs], encoding: otlp_json}}}}
  kafka/raw: {{CONSUMER, group_id: rt-raw, logs: {{topics: [rt_raw_logs], encoding: raw}}}}
  kafka/jsonlogs: {{CONSUMER, group_id: rt-jsonlogs, logs: {{topics: [rt_jl_logs], encoding: json}}}}
exporters:
  file/proto: {{path: "{out}/proto.jsonl", flush_interval: 50ms}}
  file/json: {{path: "{out}/json.jsonl", flush_interval: 50ms}}
  file/raw: {{path: "{out}/raw.jsonl", flush_interval: 50ms}}
  file/jsonlogs: {{path: "{out}/jsonlogs.jsonl", flush_interval: 50ms}}
service:
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    traces/proto: {{receivers: [kafka/proto], exporters: [file/proto]}}
    metrics/proto: {{receivers: [kafka/proto], exporters: [file/proto]}}
    logs/proto: {{receivers: [kafka/proto], exporters: [file/proto]}}
    traces/json: {{receivers: [kafka/json], exporters: [file/json]}}
    metrics/json: {{receivers: [kafka/json], exporters: [file/json]}}
    logs/json: {{receivers: [kafka/json], exporters: [file/json]}}
    logs/raw: {{receivers: [kafka/raw], exporters: [file/raw]}}
    logs/jsonlogs: {{receivers: [kafka/jsonlogs], exporters: [file/jsonlogs]}}
""".replace("CONSUMER", _CONSUMER)

SPANS, POINTS_NAMES, LOGS = 34, ("predictions", "latency_ms"), 25


class RoundTrip:
    def __init__(self, tmp: Path, broker: Tansu) -> None:
        self.out = tmp
        self.grpc = free_port()
        ta, tb = free_port(), free_port()
        self.a = AgentProcess(A_CONFIG.format(grpc=self.grpc, brokers=broker.bootstrap, out=tmp, telemetry=ta),
                              telemetry_port=ta)
        self.b = AgentProcess(B_CONFIG.format(brokers=broker.bootstrap, out=tmp, telemetry=tb), telemetry_port=tb)

    def read(self, name: str) -> list[tuple[Signal, Any]]:
        return read_otlp_jsonl(self.out / f"{name}.jsonl")


@pytest.fixture(scope="module")
def roundtrip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoundTrip]:
    tmp = tmp_path_factory.mktemp("kafka-rt")
    broker = Tansu(tansu_path(), tmp / "tansu.log").start()
    rt = RoundTrip(tmp, broker)
    try:
        rt.b.start()
        rt.a.start()
        _send_with_the_sdk(rt.grpc)
        yield rt
        assert rt.a.stop() == 0, rt.a.output()
        assert rt.b.stop() == 0, rt.b.output()
    finally:
        rt.a.close()
        rt.b.close()
        broker.stop()


def _send_with_the_sdk(port: int) -> None:
    endpoint = f"127.0.0.1:{port}"
    resource = Resource.create({"service.name": "resnet-server", "k8s.pod.name": "resnet-0"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True), max_export_batch_size=8))
    tracer = tracer_provider.get_tracer("inference", "1.0")
    for t in range(3):
        with tracer.start_as_current_span(f"request-{t}", kind=trace_api.SpanKind.SERVER) as root:
            root.set_attribute("ml.model.name", "resnet50")
            for i in range(10):
                with tracer.start_as_current_span(f"predict-{i}") as span:
                    span.set_attribute("ml.batch_size", i)
                    span.add_event("tokens", {"count": i})
    with tracer.start_as_current_span("lonely"):
        pass
    tracer_provider.shutdown()

    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True),
                                           export_interval_millis=3_600_000)
    meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
    meter = meter_provider.get_meter("inference.metrics")
    counter = meter.create_counter("predictions", unit="1")
    histogram = meter.create_histogram("latency_ms", unit="ms")
    for i in range(10):
        counter.add(1, {"model": "resnet50"})
        histogram.record(i * 2.5, {"model": "resnet50"})
    meter_provider.shutdown()

    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True)))
    logger = logger_provider.get_logger("inference.logs", "0.1")
    for i in range(LOGS):
        logger.emit(body=f"prediction {i}", severity_number=SeverityNumber.WARN, severity_text="WARN",
                    attributes={"request.id": f"r{i}"})
    logger_provider.shutdown()


def _logs(requests: list[tuple[Signal, Any]]) -> dict[Any, tuple[Any, Any, Any]]:
    out = {}
    for signal, message in requests:
        if signal is Signal.LOGS:
            for rl in message.resource_logs:
                for sl in rl.scope_logs:
                    for lr in sl.log_records:
                        out[from_any_value(lr.body)] = (rl.resource, sl.scope, lr)
    return out


def _metrics(requests: list[tuple[Signal, Any]]) -> dict[str, tuple[Any, Any, Any]]:
    return {m.name: (rm.resource, sm.scope, m) for s, msg in requests if s is Signal.METRICS
            for rm in msg.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_every_span_arrives_unchanged(roundtrip: RoundTrip, encoding: str) -> None:
    wait_until(lambda: len(spans_by_id(roundtrip.read("sent"))) == SPANS, what="A's record of the spans")
    sent = spans_by_id(roundtrip.read("sent"))
    wait_until(lambda: set(sent) <= set(spans_by_id(roundtrip.read(encoding))), what=f"spans over {encoding}")
    got = spans_by_id(roundtrip.read(encoding))
    assert len(got) == SPANS
    for span_id, want in sent.items():
        assert got[span_id] == want


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_every_metric_arrives_unchanged(roundtrip: RoundTrip, encoding: str) -> None:
    wait_until(lambda: set(POINTS_NAMES) <= set(_metrics(roundtrip.read("sent"))), what="A's record of the metrics")
    wait_until(lambda: set(POINTS_NAMES) <= set(_metrics(roundtrip.read(encoding))), what=f"metrics over {encoding}")
    sent, got = _metrics(roundtrip.read("sent")), _metrics(roundtrip.read(encoding))
    for name in POINTS_NAMES:
        assert got[name] == sent[name]
    assert got["predictions"][2].sum.data_points[0].as_int == 10


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_every_log_record_arrives_unchanged(roundtrip: RoundTrip, encoding: str) -> None:
    wait_until(lambda: len(_logs(roundtrip.read("sent"))) == LOGS, what="A's record of the logs")
    sent = _logs(roundtrip.read("sent"))
    wait_until(lambda: len(_logs(roundtrip.read(encoding))) == LOGS, what=f"logs over {encoding}")
    assert _logs(roundtrip.read(encoding)) == sent


def test_raw_logs_carry_the_body(roundtrip: RoundTrip) -> None:
    sent = _logs(roundtrip.read("sent"))
    wait_until(lambda: len(_logs(roundtrip.read("raw"))) == LOGS, what="raw logs")
    got = _logs(roundtrip.read("raw"))
    # A string body is written as JSON text; the receiver keeps the bytes as they came.
    assert set(got) == {json.dumps(body).encode() for body in sent}


def test_json_logs_carry_body_time_and_severity(roundtrip: RoundTrip) -> None:
    sent = {body: lr for body, (_, _, lr) in _logs(roundtrip.read("sent")).items()}

    def got() -> list[tuple[dict[str, Any], Any]]:
        return [(from_any_value(lr.body), lr) for s, m in roundtrip.read("jsonlogs") if s is Signal.LOGS
                for rl in m.resource_logs for sl in rl.scope_logs for lr in sl.log_records]

    wait_until(lambda: len(got()) >= LOGS, what="json logs")
    received = got()
    assert sorted(doc["body"] for doc, _ in received) == sorted(sent)
    for doc, lr in received:
        original = sent[doc["body"]]
        assert lr.time_unix_nano == (original.time_unix_nano or original.observed_time_unix_nano)
        assert lr.severity_text == "WARN" and lr.severity_number == 13
        assert doc["severity"] == "WARN"


def test_both_agents_count_what_they_moved(roundtrip: RoundTrip) -> None:
    wait_until(lambda: roundtrip.a.metric("flowglass_exporter_sent_items_total", component="kafka/proto") >= SPANS + LOGS,
               what="A's kafka/proto sent counter")
    assert roundtrip.b.metric("flowglass_receiver_accepted_items_total", component="kafka/proto",
                              signal="traces", transport="kafka") == SPANS
    assert roundtrip.b.metric("flowglass_receiver_kafka_skipped_records_total") == 0
