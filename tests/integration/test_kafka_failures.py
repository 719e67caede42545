"""The Kafka receiver and exporter when things break: a killed agent, a broker that is not there.

At-least-once: the receiving agent is SIGKILLed while it hands records to a slow OTLP
server; after a restart every produced record reaches the server (duplicates are allowed
and counted, losses are not). Broker down at start and mid-stream: the exporter's queue
holds and retries, the receiver reconnects, both say so in one log line each way, and
nothing crashes. The broker keeps everything in memory, so the crash test restarts the
agent, and the outage test expects the restarted broker to start empty.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from agent.model import Batch, Signal
from agent.testing import AgentProcess, free_port, make_traces, spans_of
from tests.integration.helpers import TRACES_METHOD, raw_export, read_otlp_jsonl, wait_until
from tests.integration.kafka_peer import Tansu, TcpProxy, create_topic, produce, tansu_path

RECEIVER = """
receivers:
  kafka:
    brokers: ["{brokers}"]
    group_id: slow
    initial_offset: earliest
    session_timeout: 2s
    heartbeat_interval: 500ms
    max_in_flight: 4
    autocommit: {{interval: 100ms}}
    traces: {{topics: [alo_spans]}}
exporters:
  otlp:
    endpoint: 127.0.0.1:{server}
    tls: {{insecure: true}}
    sending_queue: {{enabled: false}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 200ms}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{telemetry}"}}}}
  pipelines:
    traces: {{receivers: [kafka], exporters: [otlp]}}
"""


class SlowServer:
    """An OTLP/gRPC traces endpoint that takes `delay` seconds per request and records span names."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.names: list[str] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handler = grpc.unary_unary_rpc_method_handler(self._export)
        service, method = TRACES_METHOD.strip("/").split("/")
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {method: handler}),))
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")

    def _export(self, body: bytes, context: object) -> bytes:
        time.sleep(self.delay)
        names = [s.name for s in spans_of([Batch.parse(Signal.TRACES, body)])]
        with self._lock:
            self.names.extend(names)
        return b""

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.names)


@pytest.fixture
def slow_server() -> Iterator[SlowServer]:
    server = SlowServer(delay=0.03)
    server.server.start()
    try:
        yield server
    finally:
        server.server.stop(0)


def test_a_killed_receiver_loses_nothing(tmp_path: Path, slow_server: SlowServer) -> None:
    broker = Tansu(tansu_path(), tmp_path / "tansu.log").start()
    records = 150
    try:
        asyncio.run(create_topic(broker.bootstrap, "alo_spans", 2))
        values = [make_traces(1, traces=1, name=f"record-{i}").serialize() for i in range(records)]
        asyncio.run(produce(broker.bootstrap, "alo_spans", values))
        telemetry = free_port()
        config = RECEIVER.format(brokers=broker.bootstrap, server=slow_server.port, telemetry=telemetry)
        first = AgentProcess(config, telemetry_port=telemetry).start()
        try:
            wait_until(lambda: slow_server.requests >= 40, what="the first records at the server")
            assert first.stop(sig=signal.SIGKILL) == -signal.SIGKILL
        finally:
            first.close()
        assert slow_server.requests < records, "the agent finished before it was killed"
        second = AgentProcess(config, telemetry_port=telemetry).start()
        try:
            wanted = {f"record-{i}" for i in range(records)}
            wait_until(lambda: wanted <= set(slow_server.names), timeout=60, what="every record at the server")
            assert second.stop() == 0, second.output()
        finally:
            second.close()
    finally:
        broker.stop()
    counts = Counter(slow_server.names)
    duplicates = sum(n - 1 for n in counts.values())
    print(f"at-least-once: {records} records, {duplicates} delivered twice after the kill, 0 lost")
    assert set(counts) == wanted
    # Only records in flight or finished-but-uncommitted at the kill come twice.
    assert duplicates <= 4 + 40


EDGE = """
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{grpc}"}}}}}}
exporters:
  kafka:
    brokers: ["127.0.0.1:{port}"]
    timeout: 1s
    retry_on_failure: {{initial_interval: 200ms, max_interval: 500ms}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{telemetry}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [kafka]}}
"""

GATEWAY = """
receivers:
  kafka:
    brokers: ["127.0.0.1:{port}"]
    initial_offset: earliest
    session_timeout: 2s
    heartbeat_interval: 500ms
    metadata: {{refresh_interval: 1s}}
exporters:
  file: {{path: "{out}", flush_interval: 20ms}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{telemetry}"}}}}
  pipelines:
    traces: {{receivers: [kafka], exporters: [file]}}
"""


def _names(path: Path) -> set[str]:
    return {s.name for s in spans_of([Batch(sig, m) for sig, m in read_otlp_jsonl(path) if sig is Signal.TRACES])}


def _send(grpc_port: int, tag: str, count: int) -> set[str]:
    for i in range(count):
        batch = make_traces(2, traces=1, name=f"{tag}-{i}")
        code, details, _ = raw_export(f"127.0.0.1:{grpc_port}", TRACES_METHOD, batch.serialize())
        assert code.name == "OK", details
    return {f"{tag}-{i}" for i in range(count)}


def test_broker_down_at_start_and_mid_stream(tmp_path: Path) -> None:
    # The agents reach the broker through a relay that can fail: the broker itself keeps its
    # topics (a restarted tansu starts empty, and acknowledges records for topics it lost).
    proxy = TcpProxy(target_port=free_port())
    broker = Tansu(tansu_path(), tmp_path / "tansu.log", port=proxy.target_port, advertised_port=proxy.port)
    grpc_port, out = free_port(), tmp_path / "out.jsonl"
    ta, tg = free_port(), free_port()
    edge = AgentProcess(EDGE.format(grpc=grpc_port, port=proxy.port, telemetry=ta), telemetry_port=ta)
    gateway = AgentProcess(GATEWAY.format(port=proxy.port, out=out, telemetry=tg), telemetry_port=tg)
    try:
        edge.start()
        gateway.start()
        # No broker yet: the edge accepts and queues, both agents say they cannot reach it.
        before = _send(grpc_port, "before", 5)
        wait_until(lambda: "cannot reach its brokers" in edge.output(), what="the edge's log line")
        wait_until(lambda: "cannot reach its brokers" in gateway.output(), what="the gateway's log line")
        wait_until(lambda: edge.metric("flowglass_exporter_retries_total") >= 1, what="the edge to retry")
        assert edge.metric("flowglass_exporter_sent_items_total") == 0
        broker.start()
        proxy.up()
        wait_until(lambda: before <= _names(out), timeout=30, what="the queued batches at the gateway")
        assert "reaches its brokers again" in edge.output()
        assert "reaches its brokers again" in gateway.output()

        # Mid-stream: the broker cannot be reached for a while; nothing sent meanwhile is lost.
        proxy.down()
        retries = edge.metric("flowglass_exporter_retries_total")
        during = _send(grpc_port, "during", 5)
        wait_until(lambda: edge.metric("flowglass_exporter_retries_total") > retries, what="the edge to retry")
        assert edge.output().count("cannot reach its brokers") == 2
        proxy.up()
        wait_until(lambda: during <= _names(out), timeout=45, what="the batches sent during the outage")
        assert edge.proc is not None and edge.proc.poll() is None
        assert gateway.proc is not None and gateway.proc.poll() is None
        assert edge.metric("flowglass_exporter_send_failed_items_total") == 0
        assert edge.stop() == 0, edge.output()
        assert gateway.stop() == 0, gateway.output()
        for agent in (edge, gateway):
            assert "Traceback" not in agent.output()
            # aiokafka's reconnect chatter is held back: a few lines, not one per attempt.
            assert sum("aiokafka" in line for line in agent.output().splitlines()) < 40, agent.output()
    finally:
        edge.close()
        gateway.close()
        proxy.close()
        broker.stop()
