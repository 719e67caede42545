"""Delivery guarantees of a running agent: backpressure without loss, drain on SIGTERM."""

from __future__ import annotations

import collections
import concurrent.futures
import time
from pathlib import Path

import grpc

from agent.model import Signal
from agent.testing import AgentProcess, free_port, make_logs, make_traces
from tests.integration.helpers import LOGS_METHOD, TRACES_METHOD, raw_export, read_otlp_jsonl, wait_until

SINK_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
exporters:
  file:
    path: {out}
    flush_interval: 50ms
service:
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
    logs: {{receivers: [otlp], exporters: [file]}}
"""


def sink_agent(tmp: Path, port: int) -> tuple[AgentProcess, Path]:
    out = tmp / "sink.jsonl"
    tele = free_port()
    return AgentProcess(SINK_CONFIG.format(port=port, out=out, telemetry=tele), telemetry_port=tele), out


def span_names(out: Path) -> collections.Counter[str]:
    return collections.Counter(
        s.name for sig, m in read_otlp_jsonl(out) if sig is Signal.TRACES
        for rs in m.resource_spans for ss in rs.scope_spans for s in ss.spans)  # type: ignore[union-attr]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * 4096


BACKPRESSURE_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
processors:
  batch:
    timeout: 10ms
exporters:
  otlp/down:
    endpoint: 127.0.0.1:{down}
    tls: {{insecure: true}}
    timeout: 1s
    sending_queue:
      queue_size: 4
      num_consumers: 1
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 200ms
      max_elapsed_time: 0
service:
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp/down]}}
"""


def test_backpressure_refuses_then_delivers_every_accepted_item_once(tmp_path: Path) -> None:
    port, down, tele = free_port(), free_port(), free_port()
    agent = AgentProcess(BACKPRESSURE_CONFIG.format(port=port, down=down, telemetry=tele), telemetry_port=tele)
    sink, out = sink_agent(tmp_path, down)
    with agent:
        rss_before = rss_bytes(agent.proc.pid)  # type: ignore[union-attr]
        accepted, refused = [], []
        for i in range(60):
            name = f"bp-{i}"
            code, _, _ = raw_export(f"127.0.0.1:{port}", TRACES_METHOD, make_traces(200, name=name).serialize())
            if code == grpc.StatusCode.OK:
                accepted.append(name)
            else:
                assert code == grpc.StatusCode.UNAVAILABLE, code
                refused.append(name)
        assert accepted, "nothing was accepted"
        assert refused, "a full queue must refuse with a retryable status"
        assert agent.metric("flowglass_exporter_enqueue_failed_items_total") > 0
        assert agent.metric("flowglass_exporter_queue_size") <= agent.metric("flowglass_exporter_queue_capacity")
        # Memory stays bounded: refused data is not kept.
        assert rss_bytes(agent.proc.pid) - rss_before < 64 << 20  # type: ignore[union-attr]

        with sink:
            wait_until(lambda: set(accepted) <= set(span_names(out)), timeout=30, what="accepted spans at the sink")
            # The senders retry what was refused, as OTLP senders do on UNAVAILABLE.
            for name in refused:
                payload = make_traces(200, name=name).serialize()
                for _attempt in range(200):
                    code, _, _ = raw_export(f"127.0.0.1:{port}", TRACES_METHOD, payload)
                    if code == grpc.StatusCode.OK:
                        break
                    assert code == grpc.StatusCode.UNAVAILABLE, code
                    time.sleep(0.05)
                assert code == grpc.StatusCode.OK
            wait_until(lambda: set(refused) <= set(span_names(out)), timeout=30, what="retried spans at the sink")
            time.sleep(0.5)
            names = span_names(out)
            assert set(names) == set(accepted) | set(refused)
            assert all(n == 200 for n in names.values()), "every accepted item exactly once"
            assert agent.metric("flowglass_exporter_send_failed_items_total") == 0


SHUTDOWN_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
processors:
  batch:
    send_batch_size: 100000
    timeout: 60s
exporters:
  otlp/down:
    endpoint: 127.0.0.1:{down}
    tls: {{insecure: true}}
    timeout: 1s
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 200ms
service:
  shutdown_timeout: 30s
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp/down]}}
    logs: {{receivers: [otlp], exporters: [otlp/down]}}
"""


def test_sigterm_delivers_what_the_batch_and_the_queue_hold(tmp_path: Path) -> None:
    port, down, tele = free_port(), free_port(), free_port()
    agent = AgentProcess(SHUTDOWN_CONFIG.format(port=port, down=down, telemetry=tele), telemetry_port=tele)
    sink, out = sink_agent(tmp_path, down)
    with agent, concurrent.futures.ThreadPoolExecutor(2) as pool:
        # Logs go straight to the exporter's queue, which cannot deliver (the peer is down).
        code, _, _ = raw_export(f"127.0.0.1:{port}", LOGS_METHOD, make_logs(7, body="queued").serialize())
        assert code == grpc.StatusCode.OK
        # Spans wait in the batch processor (60s timeout); the sender waits for delivery.
        pending = pool.submit(raw_export, f"127.0.0.1:{port}", TRACES_METHOD,
                              make_traces(11, name="batched").serialize(), timeout=60)
        wait_until(lambda: agent.metric("flowglass_processor_incoming_items_total", signal="traces") >= 11,
                   what="spans in the batch processor")
        # The logs are held by the exporter (queued or being retried), not delivered.
        wait_until(lambda: agent.metric("flowglass_exporter_retries_total") >= 1, what="the exporter retrying")
        assert agent.metric("flowglass_exporter_sent_items_total") == 0
        stopping = pool.submit(agent.stop, 60)
        time.sleep(1.0)
        assert not stopping.done(), "the agent must wait to deliver what it holds"
        with sink:
            assert stopping.result(timeout=45) == 0, agent.output()
            assert pending.result(timeout=5)[0] == grpc.StatusCode.OK
            wait_until(lambda: span_names(out)["batched"] == 11, what="batched spans at the sink")
            logs = [lr for sig, m in read_otlp_jsonl(out) if sig is Signal.LOGS
                    for rl in m.resource_logs for sl in rl.scope_logs for lr in sl.log_records]  # type: ignore[union-attr]
            assert len(logs) == 7
