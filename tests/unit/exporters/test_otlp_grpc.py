"""otlp_grpc against a real in-test grpc.aio server with raw (bytes in, bytes out) handlers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import msgspec
import pytest
import trustme
from google.protobuf.duration_pb2 import Duration as PbDuration
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from agent.component import Kind, Settings
from agent.config.types import dec_hook
from agent.errors import PermanentError, RetryableError, StartError
from agent.exporters import otlp_grpc
from agent.exporters.otlp_grpc import METHODS, OTLPGRPCExporter, OTLPGRPCExporterConfig
from agent.model import Batch, Signal
from agent.testing import make_batch, make_traces
from tests.unit.exporters.helpers import FakeClock, metric

SENT = "flowglass_exporter_sent_items_total"
FAILED = "flowglass_exporter_send_failed_items_total"

Action = Callable[[grpc.aio.ServicerContext], Any]


@dataclass
class Request:
    method: str
    body: bytes
    metadata: dict[str, str]


@dataclass
class OTLPServer:
    """Records every request; `script` holds what to answer, in order (then success)."""

    port: int = 0
    requests: list[Request] = field(default_factory=list)
    script: list[Action] = field(default_factory=list)

    def handler(self, method: str) -> Callable[[bytes, grpc.aio.ServicerContext], Any]:
        async def handle(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
            md = {m.key: m.value for m in context.invocation_metadata() or ()}
            self.requests.append(Request(method, body, md))
            if self.script:
                return await self.script.pop(0)(context)  # type: ignore[no-any-return]
            return b""
        return handle


def fail(code: grpc.StatusCode, details: str, retry_after: float | None = None) -> Action:
    async def action(context: grpc.aio.ServicerContext) -> bytes:
        trailing: tuple[tuple[str, bytes], ...] = ()
        if retry_after is not None:
            info = error_details_pb2.RetryInfo(retry_delay=PbDuration(
                seconds=int(retry_after), nanos=round((retry_after % 1) * 1e9)))
            status = status_pb2.Status(code=code.value[0], message=details)
            status.details.add().Pack(info)
            trailing = (("grpc-status-details-bin", status.SerializeToString()),)
        await context.abort(code, details, trailing_metadata=trailing)
        raise AssertionError("abort returns by raising")
    return action


def answer(response: bytes) -> Action:
    async def action(context: grpc.aio.ServicerContext) -> bytes:
        return response
    return action


async def _serve(credentials: grpc.ServerCredentials | None = None) -> tuple[grpc.aio.Server, OTLPServer]:
    state = OTLPServer()
    server = grpc.aio.server()
    for method in METHODS.values():
        service, name = method.strip("/").split("/")
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            service, {name: grpc.unary_unary_rpc_method_handler(state.handler(method))}),))
    if credentials is None:
        state.port = server.add_insecure_port("127.0.0.1:0")
    else:
        state.port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, state


@pytest.fixture
async def server() -> AsyncIterator[OTLPServer]:
    srv, state = await _serve()
    yield state
    await srv.stop(None)


def make_config(**raw: Any) -> OTLPGRPCExporterConfig:
    return msgspec.convert(raw, OTLPGRPCExporterConfig, dec_hook=dec_hook)


def make_exporter(config: OTLPGRPCExporterConfig, clock: FakeClock | None = None) -> OTLPGRPCExporter:
    settings = Settings.for_test("otlp/test", Kind.EXPORTER)
    return OTLPGRPCExporter(settings, config, clock=clock or FakeClock())


def inline(port: int, **extra: Any) -> OTLPGRPCExporterConfig:
    """Queue disabled, so the outcome of each send is the caller's."""
    return make_config(endpoint=f"127.0.0.1:{port}", tls={"insecure": True},
                       sending_queue={"enabled": False}, **extra)


def settings_of(exporter: OTLPGRPCExporter) -> Settings:
    return exporter._settings


# --- config -----------------------------------------------------------------------------


def test_config_defaults() -> None:
    c = make_config(endpoint="collector:4317")
    assert c.compression == "gzip"
    assert c.timeout == 5.0
    assert c.balancer_name == "round_robin"
    assert c.keepalive is not None and (c.keepalive.time, c.keepalive.timeout) == (10.0, 10.0)
    assert c.sending_queue.queue_size == 1000 and c.retry_on_failure.max_elapsed_time == 300.0
    assert c.target() == ("collector:4317", True)


def test_endpoint_scheme_sets_tls() -> None:
    assert make_config(endpoint="https://c:4317/").target() == ("c:4317", True)
    assert make_config(endpoint="http://c:4317").target() == ("c:4317", False)
    assert make_config(endpoint="c:4317", tls={"insecure": True}).target() == ("c:4317", False)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"endpoint": " "}, "endpoint must be set"),
        ({"endpoint": "c:1", "compression": "zstd"}, "not supported by the gRPC exporter"),
        ({"endpoint": "c:1", "balancer_name": "ring_hash"}, "pick_first or round_robin"),
        ({"endpoint": "c:1", "tls": {"insecure_skip_verify": True}}, "insecure_skip_verify"),
        ({"endpoint": "c:1", "tls": {"min_version": "1.3"}}, "TLS 1.2 or 1.3"),
        ({"endpoint": "c:1", "headers": {"grpc-timeout": "1"}}, "not a header name"),
        ({"endpoint": "c:1", "auth": {"authenticator": "x"}}, "unknown field"),
        ({}, "missing required field `endpoint`"),
    ],
)
def test_config_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        make_config(**raw)


def test_upstream_options_and_factory() -> None:
    assert {"auth", "sending_queue.batch"} <= OTLPGRPCExporterConfig.__upstream_options__
    assert otlp_grpc.FACTORY.type == "otlp_grpc" and otlp_grpc.FACTORY.aliases == ("otlp",)
    assert set(otlp_grpc.FACTORY.signals) == set(Signal)


# --- behaviour ---------------------------------------------------------------------------


async def test_bytes_arrive_intact_for_every_signal_through_the_queue(server: OTLPServer) -> None:
    config = make_config(endpoint=f"http://127.0.0.1:{server.port}", headers={"X-Tenant": "ml-team"})
    exporter = make_exporter(config)
    await exporter.start()
    batches = {signal: make_batch(signal, 7) for signal in Signal}
    for batch in batches.values():
        await exporter.consume(batch)
    await exporter.shutdown()
    assert sorted(r.method for r in server.requests) == sorted(METHODS.values())
    for request in server.requests:
        signal = next(s for s, m in METHODS.items() if m == request.method)
        assert request.body == batches[signal].serialize()
        assert request.metadata["x-tenant"] == "ml-team"
        assert Batch.parse(signal, request.body).items == 7
    for signal in Signal:
        assert metric(settings_of(exporter), SENT, signal=signal.value) == 7
    await exporter.shutdown()  # idempotent


async def test_receiver_bytes_are_forwarded_without_reencoding(server: OTLPServer) -> None:
    original = make_traces(5).serialize()
    # A field order no serializer would produce still arrives byte for byte.
    batch = Batch(Signal.TRACES, data=original + original, items=10)
    exporter = make_exporter(inline(server.port))
    await exporter.start()
    await exporter.consume(batch)
    await exporter.shutdown()
    assert server.requests[0].body == original + original


async def test_unavailable_with_retry_info_is_retried_then_delivered(server: OTLPServer) -> None:
    server.script = [fail(grpc.StatusCode.UNAVAILABLE, "overloaded", retry_after=2.5)]
    clock = FakeClock()
    exporter = make_exporter(inline(server.port), clock)
    await exporter.start()
    await exporter.consume(make_traces(4))
    await exporter.shutdown()
    assert clock.sleeps == [2.5]
    assert len(server.requests) == 2
    assert metric(settings_of(exporter), SENT, signal="traces") == 4
    assert metric(settings_of(exporter), "flowglass_exporter_retries_total", signal="traces") == 1


async def test_invalid_argument_is_permanent(server: OTLPServer) -> None:
    server.script = [fail(grpc.StatusCode.INVALID_ARGUMENT, "bad span")]
    clock = FakeClock()
    exporter = make_exporter(inline(server.port), clock)
    await exporter.start()
    with pytest.raises(PermanentError, match="INVALID_ARGUMENT: bad span"):
        await exporter.consume(make_traces(3))
    await exporter.shutdown()
    assert len(server.requests) == 1 and clock.sleeps == []
    assert metric(settings_of(exporter), FAILED, signal="traces", reason="permanent") == 3


async def test_resource_exhausted_is_retried_only_with_retry_info(server: OTLPServer) -> None:
    server.script = [
        fail(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", retry_after=1.25),
        fail(grpc.StatusCode.RESOURCE_EXHAUSTED, "too big"),
    ]
    clock = FakeClock()
    exporter = make_exporter(inline(server.port), clock)
    await exporter.start()
    with pytest.raises(PermanentError, match="too big"):
        await exporter.consume(make_traces(2))
    await exporter.shutdown()
    assert clock.sleeps == [1.25]
    assert len(server.requests) == 2


async def test_partial_success_counts_rejected_items(server: OTLPServer) -> None:
    response = ExportTraceServiceResponse()
    response.partial_success.rejected_spans = 3
    response.partial_success.error_message = "spans too old"
    server.script = [answer(response.SerializeToString())]
    exporter = make_exporter(inline(server.port))
    await exporter.start()
    with pytest.raises(PermanentError, match="spans too old") as info:
        await exporter.consume(make_traces(10))
    await exporter.shutdown()
    assert info.value.rejected == 3
    assert metric(settings_of(exporter), SENT, signal="traces") == 7
    assert metric(settings_of(exporter), FAILED, signal="traces", reason="partial") == 3


async def test_unreachable_server_is_retryable() -> None:
    from agent.testing import free_port

    exporter = make_exporter(inline(free_port(), retry_on_failure={"enabled": False}, timeout="2s"))
    await exporter.start()
    with pytest.raises(RetryableError, match="UNAVAILABLE"):
        await exporter.consume(make_traces(1))
    await exporter.shutdown()


async def _proxy(target_port: int, counter: list[int]) -> asyncio.Server:
    """A TCP proxy that counts the bytes going from the client to the server."""
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool) -> None:
        try:
            while data := await reader.read(65536):
                if count:
                    counter[0] += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    return await asyncio.start_server(on_client, "127.0.0.1", 0)


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
async def test_compression_shrinks_what_goes_on_the_wire(server: OTLPServer, compression: str) -> None:
    batch = make_traces(400, seed=3)
    wire: dict[str, int] = {}
    for mode in (compression, "none"):
        counter = [0]
        proxy = await _proxy(server.port, counter)
        port = proxy.sockets[0].getsockname()[1]
        exporter = make_exporter(inline(port, compression=mode))
        await exporter.start()
        await exporter.consume(batch)
        await exporter.shutdown()
        proxy.close()
        wire[mode] = counter[0]
    assert all(r.body == batch.serialize() for r in server.requests)
    assert wire["none"] > batch.nbytes
    assert wire[compression] < wire["none"] * 0.6


async def test_tls_with_a_private_ca() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    credentials = grpc.ssl_server_credentials(
        [(cert.private_key_pem.bytes(), cert.cert_chain_pems[0].bytes())])
    srv, state = await _serve(credentials)
    try:
        good = make_exporter(make_config(endpoint=f"https://127.0.0.1:{state.port}",
                                         tls={"ca_pem": ca.cert_pem.bytes().decode()},
                                         sending_queue={"enabled": False}))
        await good.start()
        await good.consume(make_traces(2))
        await good.shutdown()
        assert len(state.requests) == 1

        # Without the CA the server is not trusted: nothing arrives.
        untrusted = make_exporter(make_config(endpoint=f"127.0.0.1:{state.port}",
                                              sending_queue={"enabled": False},
                                              retry_on_failure={"enabled": False}, timeout="2s"))
        await untrusted.start()
        with pytest.raises(RetryableError):
            await untrusted.consume(make_traces(2))
        await untrusted.shutdown()
        assert len(state.requests) == 1
    finally:
        await srv.stop(None)


async def test_missing_ca_file_fails_start(tmp_path: Any) -> None:
    exporter = make_exporter(make_config(endpoint="c:4317", tls={"ca_file": str(tmp_path / "nope.pem")}))
    with pytest.raises(StartError, match="cannot read a TLS file"):
        await exporter.start()
    await exporter.shutdown()
