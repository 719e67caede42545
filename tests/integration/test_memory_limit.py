"""The real memory_limiter's refusal reaches OTLP senders as RESOURCE_EXHAUSTED / 429.

An agent started in this process (`agent.testing.running_agent`) with a limit far below its
own resident memory refuses everything; gRPC senders get RESOURCE_EXHAUSTED with a
RetryInfo hint, HTTP senders 429 with Retry-After, and nothing reaches the exporter.
"""

from __future__ import annotations

import aiohttp
import grpc
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

from agent.component import ComponentID
from agent.testing import make_traces, running_agent

CONFIG = """
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:0"}
      http: {endpoint: "127.0.0.1:0"}
processors:
  memory_limiter:
    check_interval: 50ms
    limit_mib: 2
    spike_limit_mib: 1
exporters:
  debug: {}
service:
  telemetry: {metrics: {address: ""}}
  pipelines:
    traces: {receivers: [otlp], processors: [memory_limiter], exporters: [debug]}
"""


async def test_memory_refusal_reaches_grpc_and_http_senders() -> None:
    async with running_agent(CONFIG) as service:
        receiver = service.graph.receivers[ComponentID("otlp")]
        payload = make_traces(5).serialize()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
            call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            try:
                await call(payload, timeout=5)
                raise AssertionError("the memory limiter should have refused")
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                details = dict(err.trailing_metadata() or ())
                status = status_pb2.Status.FromString(details["grpc-status-details-bin"])
                infos = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
                assert infos, "a RetryInfo hint must come with the refusal"
        async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{receiver.http_port}/v1/traces", data=payload,
            headers={"Content-Type": "application/x-protobuf"},
        ) as resp:
            assert resp.status == 429
            assert int(resp.headers["Retry-After"]) >= 1
        reg = service.metrics.registry
        refused = reg.get_sample_value(
            "flowglass_processor_refused_items_total",
            {"component": "memory_limiter", "pipeline": "traces", "signal": "traces", "reason": "memory_limit"})
        assert refused == 10
        assert reg.get_sample_value(
            "flowglass_exporter_sent_items_total", {"component": "debug", "signal": "traces"}) in (None, 0.0)
