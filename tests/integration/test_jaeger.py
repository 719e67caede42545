"""The `jaeger` exporter in a running agent, against real peers over loopback.

- `protocol: grpc`: agent (otlp → batch → jaeger) → a Jaeger 1 collector's
  `CollectorService/PostSpans`, served here from the generated `proto/` code (no Jaeger
  server can be installed here, DESIGN §9). The collector refuses the second call (the
  second resource of a batch) with UNAVAILABLE: every span must still arrive exactly once
  (the retry must not resend the first resource), every field as the spec maps it.
- `protocol: otlp`: agent A (otlp → jaeger) → agent B, a Flowglass OTLP receiver writing a
  file: spans arrive unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from agent._proto.jaeger.api_v2 import collector_pb2, model_pb2
from agent.model import Signal
from agent.testing import AgentProcess, free_port, make_traces
from tests.integration.helpers import TRACES_METHOD, raw_export, read_otlp_jsonl, spans_by_id, wait_until
from tests.unit.exporters.jaeger.mapping import check_process, check_span

AGENT = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  batch:
    timeout: 20ms
exporters:
  jaeger:
    protocol: {protocol}
    endpoint: 127.0.0.1:{peer}
    tls: {{insecure: true}}
    retry_on_failure:
      initial_interval: 50ms
service:
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [jaeger]}}
"""

SINK = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  file:
    path: {path}
    flush_interval: 50ms
service:
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
"""


class SyncCollector:
    """PostSpans on a thread-pool gRPC server; the calls numbered in `refuse` get UNAVAILABLE."""

    def __init__(self, refuse: set[int]) -> None:
        self.refuse = refuse
        self.calls = 0
        self.batches: list[model_pb2.Batch] = []
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.unary_unary_rpc_method_handler(
            self._post_spans,
            request_deserializer=collector_pb2.PostSpansRequest.FromString,
            response_serializer=collector_pb2.PostSpansResponse.SerializeToString,
        )
        self.server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler("jaeger.api_v2.CollectorService", {"PostSpans": handler}),
        ))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def _post_spans(self, request: collector_pb2.PostSpansRequest,
                    context: grpc.ServicerContext) -> collector_pb2.PostSpansResponse:
        with self._lock:
            self.calls += 1
            if self.calls in self.refuse:
                context.abort(grpc.StatusCode.UNAVAILABLE, "collector warming up")
            self.batches.append(request.batch)
        return collector_pb2.PostSpansResponse()

    def spans(self) -> dict[bytes, tuple[model_pb2.Process, model_pb2.Span]]:
        with self._lock:
            found: dict[bytes, tuple[model_pb2.Process, model_pb2.Span]] = {}
            for batch in self.batches:
                for span in batch.spans:
                    assert span.span_id not in found, "a span arrived twice"
                    found[span.span_id] = (batch.process, span)
            return found


@pytest.fixture
def collector() -> Iterator[SyncCollector]:
    c = SyncCollector(refuse={2})
    c.server.start()
    yield c
    c.server.stop(None)


def test_api_v2_collector_gets_every_span_once_with_every_field(collector: SyncCollector) -> None:
    grpc_port, telemetry = free_port(), free_port()
    config = AGENT.format(grpc=grpc_port, protocol="grpc", peer=collector.port, telemetry=telemetry)
    batches = [make_traces(20, resources=3, seed=seed, error_every=3, service=f"svc-{seed}") for seed in range(3)]
    with AgentProcess(config, telemetry_port=telemetry) as agent:
        for batch in batches:
            code, details, _ = raw_export(f"127.0.0.1:{grpc_port}", TRACES_METHOD, batch.serialize())
            assert code is grpc.StatusCode.OK, details
        want = spans_by_id([(Signal.TRACES, b.message) for b in batches])
        wait_until(lambda: set(want) <= set(collector.spans()), what="spans at the Jaeger collector")
        wait_until(lambda: agent.metric("flowglass_exporter_sent_items_total", signal="traces") == 180,
                   what="the sent counter")
        assert agent.metric("flowglass_exporter_retries_total") >= 1
        assert agent.stop() == 0, agent.output()
    got = collector.spans()
    assert len(got) == len(want) == 180
    for span_id, (resource, scope, span) in want.items():
        process, jaeger_span = got[span_id]
        check_process(resource, process)  # type: ignore[arg-type]
        check_span(scope, span, jaeger_span)  # type: ignore[arg-type]


def test_otlp_protocol_delivers_to_a_flowglass_otlp_receiver(tmp_path: Path) -> None:
    sink_port, sink_telemetry = free_port(), free_port()
    out = tmp_path / "out.jsonl"
    grpc_port, telemetry = free_port(), free_port()
    batch = make_traces(25, resources=2, seed=11, error_every=5)
    with AgentProcess(SINK.format(grpc=sink_port, path=out, telemetry=sink_telemetry),
                      telemetry_port=sink_telemetry) as sink, \
         AgentProcess(AGENT.format(grpc=grpc_port, protocol="otlp", peer=sink_port, telemetry=telemetry),
                      telemetry_port=telemetry) as agent:
        code, details, _ = raw_export(f"127.0.0.1:{grpc_port}", TRACES_METHOD, batch.serialize())
        assert code is grpc.StatusCode.OK, details
        want = spans_by_id([(Signal.TRACES, batch.message)])
        wait_until(lambda: set(want) <= set(spans_by_id(read_otlp_jsonl(out))), what="spans at agent B")
        assert agent.stop() == 0, agent.output()
        assert sink.stop() == 0, sink.output()
    got = spans_by_id(read_otlp_jsonl(out))
    assert len(got) == 50
    for span_id, (resource, scope, span) in want.items():
        assert got[span_id] == (resource, scope, span)
