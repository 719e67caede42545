"""What Flowglass writes to and reads from Kafka is what the OpenTelemetry Collector writes and reads.

For `otlp_proto` a record's value is exactly the serialized `Export*ServiceRequest`: the
bytes an OTLP sender sent are the bytes on the topic (not even re-encoded), and a record a
plain aiokafka producer wrote with such bytes is consumed as that request. A JSON log line
becomes a log record. A poison record among good ones is counted, dead-lettered with its
reason, and passed over without stopping its partition. Agents run in this process here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc.aio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent.model import Signal
from agent.testing import free_port, make_logs, make_traces, running_agent, spans_of
from tests.integration import kafka_peer
from tests.integration.helpers import TRACES_METHOD, read_otlp_jsonl
from tests.integration.kafka_peer import (
    Tansu,
    committed,
    consume_all,
    create_topic,
    produce,
    wait_for,
)

kafka_broker = kafka_peer.kafka_broker

EDGE = """
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
exporters:
  kafka:
    brokers: ["{brokers}"]
    partition_traces_by_id: {keyed}
    traces: {{topic: {topic}}}
service:
  telemetry: {{metrics: {{address: ""}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [kafka]}}
"""

GATEWAY = """
receivers:
  kafka:
    brokers: ["{brokers}"]
    initial_offset: earliest
    session_timeout: 2s
    heartbeat_interval: 500ms
    group_id: {group}
    traces: {{topics: [{topic}]}}
    logs: {{topics: [{logs_topic}], encoding: {logs_encoding}}}
    dead_letter_topic: {dead_letters}
exporters:
  file: {{path: "{out}", flush_interval: 20ms}}
service:
  telemetry: {{metrics: {{address: ""}}}}
  pipelines:
    traces: {{receivers: [kafka], exporters: [file]}}
    logs: {{receivers: [kafka], exporters: [file]}}
"""


async def _export(port: int, payload: bytes) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await channel.unary_unary(TRACES_METHOD)(payload, timeout=10)


async def test_otlp_proto_records_are_the_bytes_the_sender_sent(kafka_broker: Tansu) -> None:
    one_trace = make_traces(6, traces=1).serialize()
    two_traces = make_traces(8, traces=2)
    grpc_port = free_port()
    config = EDGE.format(grpc=grpc_port, brokers=kafka_broker.bootstrap, keyed="true", topic="interop")
    async with running_agent(config):
        await _export(grpc_port, one_trace)
        await _export(grpc_port, two_traces.serialize())
        records = await consume_all(kafka_broker.bootstrap, ["interop"], 3)
    assert len(records) == 3
    # A batch of one trace is forwarded as it came: the value is the sender's own bytes.
    exact = [r for r in records if r.value == one_trace]
    assert len(exact) == 1
    trace_id = ExportTraceServiceRequest.FromString(one_trace).resource_spans[0].scope_spans[0].spans[0].trace_id
    assert exact[0].key == trace_id.hex().encode()
    # The split batch: each record is a whole export request holding one trace, keyed by it.
    split = [ExportTraceServiceRequest.FromString(r.value) for r in records if r.value != one_trace]
    spans = [s for req in split for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sorted(s.span_id for s in spans) == sorted(s.span_id for s in spans_of([two_traces]))
    for record, request in zip([r for r in records if r.value != one_trace], split, strict=True):
        ids = {s.trace_id for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans}
        assert len(ids) == 1 and record.key == next(iter(ids)).hex().encode()


async def test_records_from_a_plain_producer_are_consumed(kafka_broker: Tansu, tmp_path: Path) -> None:
    request = make_traces(12, traces=3)
    log_line = (b'{"message": "model loaded", "level": "warn", "timestamp": "2025-03-04T05:06:07.123456789Z",'
                b' "model": {"name": "resnet50", "version": 3}}')
    await produce(kafka_broker.bootstrap, "plain_spans", [request.serialize()])
    await produce(kafka_broker.bootstrap, "plain_logs", [log_line])
    out = tmp_path / "out.jsonl"
    config = GATEWAY.format(brokers=kafka_broker.bootstrap, group="plain", topic="plain_spans",
                            logs_topic="plain_logs", logs_encoding="json", dead_letters="dead", out=out)
    async with running_agent(config):
        await wait_for(lambda: len(read_otlp_jsonl(out)) >= 2, what="both records in the file")
    got = dict(read_otlp_jsonl(out))
    assert got[Signal.TRACES] == request.message
    record = got[Signal.LOGS].resource_logs[0].scope_logs[0].log_records[0]  # type: ignore[union-attr]
    assert record.severity_text == "warn" and record.severity_number == 13
    assert record.time_unix_nano == 1741064767_123456789
    body = {kv.key: kv.value for kv in record.body.kvlist_value.values}
    assert body["message"].string_value == "model loaded"
    assert body["model"].kvlist_value.values[0].value.string_value == "resnet50"


async def test_a_poison_record_is_counted_dead_lettered_and_passed_over(kafka_broker: Tansu, tmp_path: Path) -> None:
    await create_topic(kafka_broker.bootstrap, "poisoned", 1)
    good = [make_traces(3, traces=1, name=f"good-{i}").serialize() for i in range(4)]
    poison = b"\xff\xfe this is not protobuf \x00\x01"
    await produce(kafka_broker.bootstrap, "poisoned", [good[0], good[1]])
    await produce(kafka_broker.bootstrap, "poisoned", [poison], headers=[("origin", b"test")])
    await produce(kafka_broker.bootstrap, "poisoned", [good[2], good[3]])
    out = tmp_path / "out.jsonl"
    config = GATEWAY.format(brokers=kafka_broker.bootstrap, group="poison", topic="poisoned",
                            logs_topic="poison_logs", logs_encoding="otlp_proto", dead_letters="dead", out=out)
    async with running_agent(config) as service:
        metrics = service.metrics.registry

        def sample(name: str, **labels: str) -> float:
            return metrics.get_sample_value(name, {"component": "kafka", **labels}) or 0.0

        await wait_for(lambda: len(spans_of([_batch(r) for _, r in read_otlp_jsonl(out)])) == 12,
                       what="the good records")
        await wait_for(lambda: sample("flowglass_receiver_kafka_dead_letter_records_total",
                                      topic="poisoned", outcome="written") == 1, what="the dead letter")
        assert sample("flowglass_receiver_kafka_skipped_records_total", topic="poisoned", reason="poison") == 1
    # The partition kept moving: everything up to the last record is committed (at the latest
    # when the agent shut down).
    assert (await committed(kafka_broker.bootstrap, "poison", "poisoned", 1)) == {0: 5}
    names = sorted(s.name for s in spans_of([_batch(r) for _, r in read_otlp_jsonl(out)]))
    assert names == sorted(f"good-{i}" for i in range(4) for _ in range(3))
    dead = await consume_all(kafka_broker.bootstrap, ["dead"], 1)
    assert [r.value for r in dead] == [poison]
    headers = dict(dead[0].headers)
    assert headers["origin"] == b"test"
    assert headers["flowglass.dead_letter.reason"].startswith(b"poison: not a protobuf traces export request")
    assert headers["flowglass.dead_letter.topic"] == b"poisoned"
    assert headers["flowglass.dead_letter.offset"] == b"2"


def _batch(message: Any) -> Any:
    from agent.model import Batch

    return Batch(Signal.TRACES, message)


async def test_logs_by_trace_id_keep_a_traces_logs_together(kafka_broker: Tansu) -> None:
    await create_topic(kafka_broker.bootstrap, "keyed_logs", 4)
    config = f"""
exporters:
  kafka:
    brokers: ["{kafka_broker.bootstrap}"]
    partition_logs_by_trace_id: true
    logs: {{topic: keyed_logs}}
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{free_port()}"}}}}}}
service:
  telemetry: {{metrics: {{address: ""}}}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [kafka]}}
"""
    logs = make_logs(20)
    async with running_agent(config) as service:
        await service.graph.entry("logs").consume(logs)
        records = await consume_all(kafka_broker.bootstrap, ["keyed_logs"], 20)
    assert len(records) == 20  # every record has its own random trace id
    partitions: dict[bytes, set[int]] = {}
    for r in records:
        partitions.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) > 1
