"""An agent process (otlp with include_metadata → filter → resource → attributes → file) fed
over raw gRPC with request headers: the header reaches `from_context`, the filter drops what
its conditions match and counts it, and the rest arrives enriched in the file."""

from __future__ import annotations

from pathlib import Path

import grpc

from agent.model import Signal
from agent.testing import AgentProcess, attrs_dict, free_port, make_traces
from tests.integration.helpers import read_otlp_jsonl, wait_until

TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
        include_metadata: true
processors:
  filter/noise:
    trace_conditions:
      - 'span.name == "healthz"'
  resource:
    attributes:
      - {{key: deployment.environment.name, value: test, action: upsert}}
  attributes:
    actions:
      - {{key: tenant, from_context: metadata.x-tenant, default_value: unknown, action: insert}}
      - {{key: ml.model.name, action: hash}}
exporters:
  file:
    path: {path}
    flush_interval: 50ms
service:
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    traces: {{receivers: [otlp], processors: [filter/noise, resource, attributes], exporters: [file]}}
"""


def test_headers_reach_from_context_and_the_filter_drops(tmp_path: Path) -> None:
    port, telemetry = free_port(), free_port()
    out = tmp_path / "out.jsonl"
    agent = AgentProcess(CONFIG.format(port=port, path=out, telemetry=telemetry), telemetry).start()
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            export = channel.unary_unary(TRACE_METHOD)
            export(make_traces(3, name="predict").serialize(), metadata=(("x-tenant", "acme"),), timeout=10)
            export(make_traces(2, name="healthz").serialize(), metadata=(("x-tenant", "acme"),), timeout=10)
            export(make_traces(1, name="predict").serialize(), timeout=10)
        finally:
            channel.close()

        def spans() -> list[tuple[dict[str, object], dict[str, object]]]:
            if not out.exists():
                return []
            return [
                (attrs_dict(rs.resource.attributes), attrs_dict(span.attributes))
                for signal, req in read_otlp_jsonl(out) if signal is Signal.TRACES
                for rs in req.resource_spans  # type: ignore[union-attr]
                for ss in rs.scope_spans
                for span in ss.spans
            ]

        wait_until(lambda: len(spans()) >= 4, what="4 spans in the file")
        found = spans()
        assert len(found) == 4
        assert [a["tenant"] for _, a in found] == ["acme", "acme", "acme", "unknown"]
        assert all(r["deployment.environment.name"] == "test" for r, _ in found)
        assert all(len(str(a["ml.model.name"])) == 64 for _, a in found)
        assert agent.metric("flowglass_processor_dropped_items_total", component="filter/noise",
                            reason="filtered") == 2
    finally:
        assert agent.stop() == 0
