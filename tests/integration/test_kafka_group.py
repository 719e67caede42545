"""Edge → Kafka keyed by trace id → a gateway tier of two agents in one consumer group (DESIGN §7).

Agent A (otlp → kafka, `partition_traces_by_id`) writes to a topic of four partitions; two
gateway agents (kafka → file) share them in one group. Every span of a trace lands in one
partition (the one Sarama's hash names, as the Collector would pick), each trace is
received by exactly one gateway, together they receive everything, and stopping one moves
its partitions to the other with nothing lost or repeated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.exporters.kafka.records import sarama_partition
from agent.model import Batch, Signal
from agent.testing import AgentProcess, free_port, make_traces, spans_of
from tests.integration import kafka_peer
from tests.integration.helpers import TRACES_METHOD, raw_export, read_otlp_jsonl, wait_until
from tests.integration.kafka_peer import (
    Tansu,
    consume_all,
    create_topic,
)

kafka_broker = kafka_peer.kafka_broker

TOPIC, PARTITIONS = "gateway_spans", 4

EDGE = """
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{grpc}"}}}}}}
exporters:
  kafka:
    brokers: ["{brokers}"]
    partition_traces_by_id: true
    traces: {{topic: {topic}}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{telemetry}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [kafka]}}
"""

GATEWAY = """
receivers:
  kafka:
    brokers: ["{brokers}"]
    group_id: gateway
    initial_offset: earliest
    session_timeout: 2s
    heartbeat_interval: 500ms
    autocommit: {{interval: 200ms}}
    traces: {{topics: [{topic}]}}
exporters:
  file: {{path: "{out}", flush_interval: 20ms}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{telemetry}"}}}}
  pipelines:
    traces: {{receivers: [kafka], exporters: [file]}}
"""


def _agent(template: str, **values: object) -> AgentProcess:
    telemetry = free_port()
    return AgentProcess(template.format(telemetry=telemetry, **values), telemetry_port=telemetry)


def _spans(path: Path) -> list[object]:
    return spans_of([Batch(s, m) for s, m in read_otlp_jsonl(path) if s is Signal.TRACES])


def _assigned(agent: AgentProcess) -> float:
    return agent.metric("flowglass_receiver_kafka_assigned_partitions")


@pytest.fixture
def agents(kafka_broker: Tansu, tmp_path: Path) -> Iterator[dict[str, AgentProcess]]:
    asyncio.run(create_topic(kafka_broker.bootstrap, TOPIC, PARTITIONS))
    grpc = free_port()
    made = {
        "edge": _agent(EDGE, grpc=grpc, brokers=kafka_broker.bootstrap, topic=TOPIC),
        "g1": _agent(GATEWAY, brokers=kafka_broker.bootstrap, topic=TOPIC, out=tmp_path / "g1.jsonl"),
        "g2": _agent(GATEWAY, brokers=kafka_broker.bootstrap, topic=TOPIC, out=tmp_path / "g2.jsonl"),
    }
    made["edge"].grpc = grpc  # type: ignore[attr-defined]
    try:
        for agent in made.values():
            agent.start()
        yield made
    finally:
        for agent in made.values():
            agent.close()


def _send_wave(edge: AgentProcess, tag: str, requests: int = 8) -> set[bytes]:
    """Requests of 4 traces × 5 spans each; the span ids sent."""
    sent: set[bytes] = set()
    for i in range(requests):
        batch = make_traces(20, traces=4, name=f"{tag}-{i}")
        code, details, _ = raw_export(f"127.0.0.1:{edge.grpc}", TRACES_METHOD, batch.serialize())  # type: ignore[attr-defined]
        assert code.name == "OK", details
        sent |= {s.span_id for s in spans_of([batch])}
    return sent


def test_traces_are_split_between_gateways_and_move_when_one_stops(
    agents: dict[str, AgentProcess], kafka_broker: Tansu, tmp_path: Path
) -> None:
    g1, g2, edge = agents["g1"], agents["g2"], agents["edge"]
    wait_until(lambda: _assigned(g1) > 0 and _assigned(g2) > 0 and _assigned(g1) + _assigned(g2) == PARTITIONS,
               timeout=30, what="the group to share the partitions")
    first = _send_wave(edge, "first")
    out1, out2 = tmp_path / "g1.jsonl", tmp_path / "g2.jsonl"
    wait_until(lambda: first <= {s.span_id for s in _spans(out1) + _spans(out2)}, what="the first wave")

    # Keying: one partition per trace id, the one the Collector's default partitioner picks.
    records = asyncio.run(consume_all(kafka_broker.bootstrap, [TOPIC], 32))
    assert len(records) == 32
    for record in records:
        assert record.partition == sarama_partition(record.key, PARTITIONS)
    assert len({r.partition for r in records}) > 1

    # Each trace went to exactly one gateway, and both did some of the work.
    traces1 = {s.trace_id for s in _spans(out1)}
    traces2 = {s.trace_id for s in _spans(out2)}
    assert traces1 and traces2 and not traces1 & traces2

    # Stopping one gateway hands its partitions to the other; nothing is lost or repeated.
    assert g1.stop() == 0, g1.output()
    wait_until(lambda: _assigned(g2) == PARTITIONS, timeout=30, what="g2 to take every partition")
    second = _send_wave(edge, "second")
    wait_until(lambda: second <= {s.span_id for s in _spans(out2)}, what="the second wave at g2")
    every = [s.span_id for s in _spans(out1) + _spans(out2)]
    assert set(every) == first | second
    assert len(every) == len(set(every)), "a span was delivered twice"
