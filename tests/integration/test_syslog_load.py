"""The syslog receiver in a running agent under bad input and backpressure: senders feel a
full pipeline, nothing read is lost, bad streams are counted, SIGTERM delivers what is held."""

from __future__ import annotations

import bisect
import concurrent.futures
import itertools
import select
import socket
import time
from pathlib import Path

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from agent.testing import AgentProcess, free_port
from tests.integration.helpers import wait_until
from tests.integration.syslog_peers import records_with

SINK = """
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{port}"}}
exporters:
  file: {{path: "{out}", flush_interval: 50ms, format: {format}}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{telemetry}"}}}}
  pipelines:
    logs: {{receivers: [otlp], exporters: [file]}}
"""

FORWARDER = """
receivers:
  syslog:
    protocol: rfc5424
    tcp: {{listen_address: "127.0.0.1:{port}"}}
processors:
  batch: {{timeout: 10ms, send_batch_size: 2000}}
exporters:
  otlp/down:
    endpoint: 127.0.0.1:{down}
    tls: {{insecure: true}}
    timeout: 1s
    sending_queue: {{queue_size: 2, num_consumers: 1}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 200ms, max_elapsed_time: 0}}
service:
  shutdown_timeout: 30s
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    logs: {{receivers: [syslog], processors: [batch], exporters: [otlp/down]}}
"""


def frames(mark: str, n: int, start: int = 0) -> bytes:
    out = []
    for i in range(start, start + n):
        m = f"<14>1 2024-05-06T07:08:09.000001Z host app - - - {mark} {i} " + "x" * 100
        out.append(f"{len(m)} {m}")
    return "".join(out).encode()


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * 4096


def agents(tmp_path: Path, sink_format: str = "json") -> tuple[AgentProcess, AgentProcess, Path, int]:
    port, down, t1, t2 = free_port(), free_port(), free_port(), free_port()
    out = tmp_path / f"sink.{sink_format}"
    forwarder = AgentProcess(FORWARDER.format(port=port, down=down, telemetry=t1), telemetry_port=t1)
    sink = AgentProcess(SINK.format(port=down, out=out, telemetry=t2, format=sink_format), telemetry_port=t2)
    return forwarder, sink, out, port


def proto_records(path: Path) -> list[LogRecord]:
    """The log records of a `file` exporter with `format: proto` (length-prefixed requests)."""
    data = path.read_bytes()
    out: list[LogRecord] = []
    pos = 0
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        request = ExportLogsServiceRequest()
        request.ParseFromString(data[pos + 4:pos + 4 + size])
        out.extend(lr for rl in request.resource_logs for sl in rl.scope_logs for lr in sl.log_records)
        pos += 4 + size
    return out


def test_a_full_pipeline_stops_the_sender_and_everything_read_arrives_once(tmp_path: Path) -> None:
    forwarder, sink, out, port = agents(tmp_path, sink_format="proto")
    framed = [frames("bp", 1, i) for i in range(300_000)]
    ends = list(itertools.accumulate(map(len, framed)))
    stream = b"".join(framed)
    with forwarder:
        rss_before = rss_bytes(forwarder.proc.pid)  # type: ignore[union-attr]
        conn = socket.create_connection(("127.0.0.1", port))
        conn.setblocking(False)
        offset = 0
        while offset < len(stream):
            _, writable, _ = select.select([], [conn], [], 2.0)
            if not writable:
                break  # the receiver stopped reading: the sender feels the full pipeline
            offset += conn.send(stream[offset:offset + 65536])
        assert offset < len(stream), "the sender was never stopped"
        wait_until(lambda: forwarder.metric("flowglass_exporter_enqueue_failed_items_total") > 0,
                   what="the full sending queue refusing")
        assert rss_bytes(forwarder.proc.pid) - rss_before < 200 << 20  # type: ignore[union-attr]
        with sink:
            # Finish the frame the sender was in, then stop: every frame sent must arrive once.
            expected = bisect.bisect_left(ends, offset) + 1
            conn.setblocking(True)
            conn.sendall(stream[offset:ends[expected - 1]])
            conn.close()
            wait_until(lambda: forwarder.metric("flowglass_receiver_accepted_items_total") >= expected,
                       timeout=120, what="every record accepted")
            wait_until(lambda: sink.metric("flowglass_exporter_sent_items_total") >= expected,
                       timeout=120, what="every accepted record at the sink")
            time.sleep(0.2)  # the sink's file buffer is written every 50ms
            numbers = sorted(int(lr.body.string_value.split()[8]) for lr in proto_records(out))
            assert numbers == list(range(expected)), "every record sent arrives exactly once"
            assert forwarder.metric("flowglass_exporter_send_failed_items_total") == 0


def test_bad_streams_are_counted_and_other_connections_carry_on(tmp_path: Path) -> None:
    forwarder, sink, out, port = agents(tmp_path)
    with sink, forwarder:
        good = socket.create_connection(("127.0.0.1", port))
        good.sendall(frames("good", 5))
        for garbage in (b"12 <14>1 - - - - - - ok" + b"9x not a count", b"100 <14>1 truncated", b"999999 <14>1 too large and cut",
                        b"20000 " + b"z" * 20000 + frames("resync", 1)):
            with socket.create_connection(("127.0.0.1", port)) as bad:
                bad.sendall(garbage)
        good.sendall(frames("good", 5, 5))
        good.close()
        wait_until(lambda: len(records_with(out, "good")) == 10 and len(records_with(out, "resync")) == 1,
                   what="the good records")
        assert forwarder.metric("flowglass_receiver_refused_items_total", reason="framing") == 1
        assert forwarder.metric("flowglass_receiver_refused_items_total", reason="truncated") == 1
        assert forwarder.metric("flowglass_receiver_refused_items_total", reason="too_large") == 2


def test_sigterm_delivers_what_was_read(tmp_path: Path) -> None:
    forwarder, sink, out, port = agents(tmp_path)
    with forwarder, concurrent.futures.ThreadPoolExecutor(1) as pool:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(frames("term", 50))
        wait_until(lambda: forwarder.metric("flowglass_receiver_accepted_items_total")
                   + forwarder.metric("flowglass_processor_incoming_items_total") >= 50,
                   what="the records inside the agent")
        stopping = pool.submit(forwarder.stop, 60)
        time.sleep(1.0)
        assert not stopping.done(), "the agent must wait to deliver what it holds"
        with sink:
            assert stopping.result(timeout=45) == 0, forwarder.output()
            wait_until(lambda: len(records_with(out, "term")) == 50, what="the records at the sink")
