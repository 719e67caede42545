"""Tail sampling scaled out through Kafka: two edges, two gateways, one consumer group (issue 5).

Two edge agents (`otlp → batch → kafka`, `partition_traces_by_id`) write to one topic of
four partitions; two gateway agents (`kafka → tail_sampling → file`) read it in one
consumer group, and a fifth agent — a single gateway in a group of its own — reads the
same topic with the same policies. The spans of every trace are sent half to each edge.

The workload is built so that a gateway can only decide right when it holds the whole
trace: a slow trace is slow only from the first span of one half to the last span of the
other (every span alone is well under the threshold), and an error is in one half only.
The test asserts that the group receives every span once and decides every trace once,
both gateways taking part, with no span arriving after its trace was decided; that each
kept trace is kept by exactly one gateway, with every span from both edges, exactly once;
and that the kept set equals a plain reference selection (any ERROR span, or first start
to last end ≥ 500 ms) and equals what the single gateway kept. Agents are stopped by their
process ids; waits have deadlines and nothing asserts on wall-clock time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agent.model import Batch, Signal
from agent.testing import AgentProcess, free_port, key_values, spans_of
from tests.integration import kafka_peer
from tests.integration.helpers import TRACES_METHOD, raw_export, read_otlp_jsonl, wait_until
from tests.integration.kafka_peer import Tansu, create_topic

kafka_broker = kafka_peer.kafka_broker

TOPIC, PARTITIONS = "scaleout_spans", 4
TRACES = 3000
THRESHOLD_MS = 500
#: Traces per OTLP request: each request to one edge holds one half of each of them.
CHUNK = 150
MS = 1_000_000

EDGE = """
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{grpc}"}}}}}}
processors:
  batch: {{send_batch_size: 2048, timeout: 50ms}}
exporters:
  kafka:
    brokers: ["{brokers}"]
    partition_traces_by_id: true
    traces: {{topic: {topic}}}
    # Without a queue an export returns once Kafka has the records, so the two halves of a
    # trace are in Kafka within one chunk's round trip of each other.
    sending_queue: {{enabled: false}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{telemetry}"}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [kafka]}}
"""

GATEWAY = """
receivers:
  kafka:
    brokers: ["{brokers}"]
    group_id: {group}
    initial_offset: earliest
    session_timeout: 2s
    heartbeat_interval: 500ms
    autocommit: {{interval: 200ms}}
    traces: {{topics: [{topic}]}}
processors:
  tail_sampling:
    decision_wait: 6s
    num_traces: 20000
    policies:
      - {{name: errors, type: status_code, status_code: {{status_codes: [ERROR]}}}}
      - {{name: slow, type: latency, latency: {{threshold_ms: {threshold}}}}}
exporters:
  file: {{path: "{out}", flush_interval: 20ms}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{telemetry}"}}}}
  pipelines:
    traces: {{receivers: [kafka], processors: [tail_sampling], exporters: [file]}}
"""



# ---- the workload ------------------------------------------------------------------------------

@dataclass
class Trace:
    trace_id: bytes
    #: The spans sent to edge 1 and to edge 2.
    halves: tuple[list[Span], list[Span]] = field(default_factory=lambda: ([], []))

    @property
    def spans(self) -> list[Span]:
        return self.halves[0] + self.halves[1]

    @property
    def span_ids(self) -> set[bytes]:
        return {s.span_id for s in self.spans}


def _span(rng: random.Random, trace_id: bytes, parent: bytes, start: int, duration: int, name: str) -> Span:
    span = Span(trace_id=trace_id, span_id=rng.getrandbits(64).to_bytes(8, "big"), parent_span_id=parent,
                name=name, kind=Span.SPAN_KIND_SERVER if not parent else Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=start, end_time_unix_nano=start + duration)
    span.status.code = Status.STATUS_CODE_OK
    span.attributes.extend(key_values({"ml.model.name": "resnet", "ml.batch_size": rng.randrange(1, 33)}))
    return span


def make_workload(n: int, seed: int = 5) -> list[Trace]:
    """`n` traces of 2–7 spans, about 10% with one ERROR span and 10% slow, split in two halves.

    Every span lasts at most 400 ms, so no half alone is slow: a slow trace's first half
    starts at t0 and its second half ends 600–1500 ms later. Fast traces end by t0 + 300 ms,
    far from the threshold on both sides.
    """
    rng = random.Random(seed)
    base = time.time_ns()
    traces: list[Trace] = []
    for i in range(n):
        trace = Trace(rng.getrandbits(128).to_bytes(16, "big"))
        count = rng.randrange(2, 8)
        first = (count + 1) // 2
        t0 = base + i * MS
        slow = rng.random() < 0.10
        total = rng.randrange(600, 1500) * MS if slow else rng.randrange(20, 300) * MS
        # The first half lies within [t0, t0 + window], the second within the last window.
        window = min(total, 400 * MS)
        root = b""
        for k in range(count):
            half = 0 if k < first else 1
            if k == 0:
                start, duration = t0, window
            elif k == count - 1:
                duration = rng.randrange(5, window // MS) * MS
                start = t0 + total - duration
            else:
                duration = rng.randrange(1, 10) * MS
                offset = rng.randrange(0, window - duration)
                start = t0 + offset if half == 0 else t0 + total - window + offset
            span = _span(rng, trace.trace_id, root, start, duration, f"step-{k}")
            root = root or span.span_id
            trace.halves[half].append(span)
        if rng.random() < 0.10:
            failing = rng.choice(trace.spans)
            failing.status.code = Status.STATUS_CODE_ERROR
            failing.status.message = "inference failed"
        traces.append(trace)
    return traces


def duration(spans: list[Span]) -> int:
    """From the first start to the last end, in nanoseconds (the `latency` policy's measure)."""
    return max(s.end_time_unix_nano for s in spans) - min(s.start_time_unix_nano for s in spans)


def reference_kept(traces: list[Trace]) -> set[bytes]:
    """What the policies keep, written out plainly: any ERROR span, or a long enough trace."""
    kept: set[bytes] = set()
    for trace in traces:
        spans = trace.spans
        error = any(s.status.code == Status.STATUS_CODE_ERROR for s in spans)
        if error or duration(spans) >= THRESHOLD_MS * MS:
            kept.add(trace.trace_id)
    return kept


def _request(spans: list[Span], service: str) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(key_values({"service.name": service}))
    ss = rs.scope_spans.add()
    ss.scope.name = "flowglass.scaleout"
    ss.spans.extend(spans)
    return req.SerializeToString()


def send_halves(traces: list[Trace], edges: tuple[str, str]) -> None:
    """Chunk by chunk, one half of each trace to each edge at the same time, so that the two
    halves of a trace reach Kafka well within `decision_wait` of each other."""
    def send(target: str, payload: bytes) -> None:
        code, details, _ = raw_export(target, TRACES_METHOD, payload)
        assert code.name == "OK", f"{target}: {code.name} {details}"

    with ThreadPoolExecutor(2) as pool:
        for at in range(0, len(traces), CHUNK):
            chunk = traces[at:at + CHUNK]
            futures = [
                pool.submit(send, edges[half], _request([s for t in chunk for s in t.halves[half]], service))
                for half, service in ((0, "frontend"), (1, "model-server"))
            ]
            for future in futures:
                future.result()


# ---- the agents --------------------------------------------------------------------------------

def _agent(template: str, **values: object) -> AgentProcess:
    telemetry = free_port()
    return AgentProcess(template.format(telemetry=telemetry, **values), telemetry_port=telemetry)


def _assigned(agent: AgentProcess) -> float:
    return agent.metric("flowglass_receiver_kafka_assigned_partitions")


@dataclass
class Tier:
    edges: list[AgentProcess]
    edge_targets: tuple[str, str]
    gateways: list[AgentProcess]
    single: AgentProcess
    outputs: list[Path]
    single_output: Path

    def all(self) -> list[AgentProcess]:
        return [*self.edges, *self.gateways, self.single]


@pytest.fixture
def tier(kafka_broker: Tansu, tmp_path: Path) -> Iterator[Tier]:
    asyncio.run(create_topic(kafka_broker.bootstrap, TOPIC, PARTITIONS))
    brokers = kafka_broker.bootstrap
    ports = (free_port(), free_port())
    edges = [_agent(EDGE, grpc=port, brokers=brokers, topic=TOPIC) for port in ports]
    outputs = [tmp_path / "gateway-1.jsonl", tmp_path / "gateway-2.jsonl"]
    gateways = [_agent(GATEWAY, brokers=brokers, topic=TOPIC, group="gateways", out=out,
                       threshold=THRESHOLD_MS) for out in outputs]
    single_output = tmp_path / "single.jsonl"
    single = _agent(GATEWAY, brokers=brokers, topic=TOPIC, group="single-gateway", out=single_output,
                    threshold=THRESHOLD_MS)
    made = Tier(edges, (f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"), gateways, single, outputs,
                single_output)
    try:
        for agent in made.all():
            agent.start()
        yield made
    finally:
        for agent in made.all():
            agent.close()


def _received(agent: AgentProcess) -> float:
    """Spans the agent's kafka receiver handed on and had accepted."""
    return agent.metric("flowglass_receiver_accepted_items_total", component="kafka", signal="traces")


def _kept_spans(path: Path) -> list[Span]:
    return spans_of([Batch(s, m) for s, m in read_otlp_jsonl(path) if s is Signal.TRACES])


def _by_trace(spans: list[Span]) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for span in spans:
        out.setdefault(span.trace_id, []).append(span.span_id)
    return out


def test_two_gateways_keep_exactly_what_one_gateway_keeps(tier: Tier) -> None:
    traces = make_workload(TRACES)
    expected = reference_kept(traces)
    by_id = {t.trace_id: t for t in traces}
    # The workload is what the test claims: both policies keep traces, no half of a trace is
    # slow on its own, and many traces are kept only for the latency of both halves together.
    assert 0.1 * TRACES < len(expected) < 0.3 * TRACES
    assert all(duration(half) < THRESHOLD_MS * MS for t in traces for half in t.halves)
    slow_only = [t for t in traces if t.trace_id in expected
                 and all(s.status.code != Status.STATUS_CODE_ERROR for s in t.spans)]
    assert len(slow_only) > 0.05 * TRACES

    # Both gateways of the group hold partitions before any data flows (no rebalance during the test).
    g1, g2 = tier.gateways
    wait_until(lambda: _assigned(g1) > 0 and _assigned(g2) > 0 and _assigned(g1) + _assigned(g2) == PARTITIONS,
               timeout=30, what="the two gateways to share the partitions")
    wait_until(lambda: _assigned(tier.single) == PARTITIONS, timeout=30, what="the single gateway's partitions")

    send_halves(traces, tier.edge_targets)

    # Every span reaches the group exactly once, and the single gateway once as well.
    total = sum(len(t.spans) for t in traces)
    wait_until(lambda: _received(g1) + _received(g2) >= total and _received(tier.single) >= total,
               timeout=45, what="every span at the gateways")
    received = [_received(g1), _received(g2)]
    assert sum(received) == total and _received(tier.single) == total
    assert all(received), f"a gateway of the group received nothing: {received}"

    # Every trace is decided once, on the decision timer: by one gateway of the group, and
    # by the single gateway. No span came after its trace was decided; nothing was evicted.
    def decided(agent: AgentProcess, **labels: str) -> float:
        return agent.metric("flowglass_processor_tail_sampling_traces_total", **labels)

    wait_until(lambda: decided(g1) + decided(g2) >= TRACES and decided(tier.single) >= TRACES,
               timeout=45, what="every trace to be decided")
    by_gateway = [decided(g1), decided(g2)]
    assert sum(by_gateway) == TRACES, f"the group made {by_gateway} decisions for {TRACES} traces"
    assert decided(tier.single) == TRACES
    assert all(by_gateway), f"a gateway of the group decided nothing: {by_gateway}"
    sampled = [decided(agent, decision="sampled") for agent in (g1, g2, tier.single)]
    assert sampled[0] + sampled[1] == len(expected) == sampled[2]
    for agent in (g1, g2, tier.single):
        assert agent.metric("flowglass_processor_tail_sampling_late_spans_total") == 0
        assert agent.metric("flowglass_processor_tail_sampling_evicted_traces_total") == 0

    # Every trace is decided: stopping the agents (edges first) flushes the files, which
    # from here on do not change.
    for agent in tier.all():
        assert agent.stop() == 0, agent.output()

    kept = [_by_trace(_kept_spans(path)) for path in tier.outputs]
    single = _by_trace(_kept_spans(tier.single_output))

    # Each trace is decided by one gateway: none is in both outputs, and each gateway kept some.
    assert kept[0] and kept[1], "a gateway of the group kept nothing"
    both = kept[0].keys() & kept[1].keys()
    assert not both, f"{len(both)} traces were kept by both gateways"

    # The tier keeps exactly the reference selection, and exactly what one gateway keeps.
    tiered = {**kept[0], **kept[1]}
    for name, got in (("the two gateways", set(tiered)), ("the single gateway", set(single))):
        assert got == expected, (f"{name} kept {len(got - expected)} traces the policies drop and "
                                 f"dropped {len(expected - got)} they keep")

    # Every kept trace is whole (both edges' halves) and no span came twice.
    for outputs in (tiered, single):
        for trace_id, span_ids in outputs.items():
            assert len(span_ids) == len(set(span_ids)), f"trace {trace_id.hex()}: a span came twice"
            assert set(span_ids) == by_id[trace_id].span_ids, f"trace {trace_id.hex()} is incomplete"
