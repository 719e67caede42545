"""OTLP/gRPC: real gRPC clients over loopback, a Sink as the pipeline."""

from __future__ import annotations

import asyncio
import logging
import socket

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from agent.errors import MemoryRefusedError, PermanentError, RetryableError, StartError
from agent.model import Signal
from agent.receivers.otlp.grpc import SERVICES
from agent.receivers.otlp.outcome import GRPC_STATUS_DETAILS_KEY
from agent.testing import Sink, make_batch, make_traces
from tests.unit.receivers.otlp.kit import Certs, Running, running

GRPC = {"transport": "grpc"}


def export(channel: grpc.aio.Channel, signal: Signal = Signal.TRACES) -> grpc.aio.UnaryUnaryMultiCallable:
    """The raw Export method: bytes in, bytes out."""
    return channel.unary_unary(f"/{SERVICES[signal]}/Export")


def target(r: Running) -> str:
    return f"127.0.0.1:{r.receiver.grpc_port}"


def retry_delay_s(error: grpc.aio.AioRpcError) -> float:
    """The RetryInfo delay in an error's `grpc-status-details-bin` trailer."""
    details = dict(error.trailing_metadata() or ())[GRPC_STATUS_DETAILS_KEY]
    status = status_pb2.Status.FromString(details)
    assert status.code == error.code().value[0]
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    return float(info.retry_delay.ToNanoseconds()) / 1e9


async def test_export_reaches_the_pipeline_with_its_bytes() -> None:
    async with running(grpc={}) as r, grpc.aio.insecure_channel(target(r)) as channel:
        data = make_traces(7).serialize()
        response = await export(channel)(data, timeout=10)
        assert ExportTraceServiceResponse.FromString(response) == ExportTraceServiceResponse()
        (batch,) = r.sink.batches
        assert batch.items == 7
        assert batch.serialize() == data
        assert batch.client.address == "127.0.0.1"
        assert dict(batch.client.metadata) == {}  # include_metadata is off
        assert r.counter("accepted_items", **GRPC) == 7


@pytest.mark.parametrize("signal", [Signal.METRICS, Signal.LOGS])
async def test_metrics_and_logs_are_served(signal: Signal) -> None:
    sink = Sink()
    async with (
        running(grpc={}, consumers={signal: sink}) as r,
        grpc.aio.insecure_channel(target(r)) as channel,
    ):
        await export(channel, signal)(make_batch(signal, 6).serialize(), timeout=10)
        assert sink.items == 6 and sink.batches[0].signal is signal
        # The traces service is not registered: no traces pipeline uses this receiver.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await export(channel, Signal.TRACES)(make_traces(1).serialize(), timeout=10)
        assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_gzip_from_clients_just_works() -> None:
    async with running(grpc={}) as r, grpc.aio.insecure_channel(target(r)) as channel:
        await export(channel)(make_traces(5).serialize(), compression=grpc.Compression.Gzip, timeout=10)
        assert r.sink.items == 5


async def test_corrupt_protobuf_is_invalid_argument_and_the_next_request_works() -> None:
    async with running(grpc={}) as r, grpc.aio.insecure_channel(target(r)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await export(channel)(b"\x0a\xff\xff\xff\xff\x0f garbage", timeout=10)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid OTLP traces export request" in (info.value.details() or "")
        assert r.counter("refused_requests", reason="malformed", **GRPC) == 1
        await export(channel)(make_traces(2).serialize(), timeout=10)
        assert r.sink.items == 2


async def test_over_size_message_is_resource_exhausted() -> None:
    async with (
        running(grpc={"max_recv_msg_size_mib": 1}) as r,
        grpc.aio.insecure_channel(target(r)) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await export(channel)(b"\0" * (1024 * 1024 + 10), timeout=10)
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert r.sink.calls == 0


async def test_memory_refusal_is_resource_exhausted_with_retry_info() -> None:
    async with running(grpc={}) as r, grpc.aio.insecure_channel(target(r)) as channel:
        r.sink.fail_with = MemoryRefusedError("above the memory limit", retry_after=3)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await export(channel)(make_traces(4).serialize(), timeout=10)
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert info.value.details() == "above the memory limit"
        assert retry_delay_s(info.value) == 3.0
        assert r.counter("refused_items", reason="memory_limit", **GRPC) == 4
        assert r.counter("accepted_items", **GRPC) == 0


async def test_retryable_error_is_unavailable_with_default_retry_info() -> None:
    async with running(grpc={}) as r, grpc.aio.insecure_channel(target(r)) as channel:
        r.sink.fail_with = RetryableError("exporter queue is full")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await export(channel)(make_traces(4).serialize(), timeout=10)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert retry_delay_s(info.value) == 1.0
        assert r.counter("refused_items", reason="retryable", **GRPC) == 4


async def test_permanent_error_is_invalid_argument_without_retry_info() -> None:
    async with running(grpc={}) as r, grpc.aio.insecure_channel(target(r)) as channel:
        r.sink.fail_with = PermanentError("never")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await export(channel)(make_traces(4).serialize(), timeout=10)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert GRPC_STATUS_DETAILS_KEY not in dict(info.value.trailing_metadata() or ())
        assert r.counter("refused_items", reason="permanent", **GRPC) == 4


async def test_partial_refusal_is_ok_with_partial_success() -> None:
    async with running(grpc={}) as r, grpc.aio.insecure_channel(target(r)) as channel:
        r.sink.fail_with = PermanentError("3 spans had no trace id", rejected=3)
        response = ExportTraceServiceResponse.FromString(
            await export(channel)(make_traces(10).serialize(), timeout=10)
        )
        assert response.partial_success.rejected_spans == 3
        assert response.partial_success.error_message == "3 spans had no trace id"
        assert r.counter("refused_items", reason="partial", **GRPC) == 3
        assert r.counter("accepted_items", **GRPC) == 7


async def test_unexpected_error_is_unavailable_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    async with running(grpc={}) as r, grpc.aio.insecure_channel(target(r)) as channel:
        r.sink.fail_with = ZeroDivisionError("bug in a processor")
        with caplog.at_level(logging.WARNING, logger=r.settings.logger.name):
            for _ in range(3):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await export(channel)(make_traces(2).serialize(), timeout=10)
                assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
        assert len(warnings) == 1 and warnings[0].exc_info is not None


async def test_include_metadata_puts_headers_into_client_info() -> None:
    async with running(grpc={"include_metadata": True}) as r, grpc.aio.insecure_channel(target(r)) as channel:
        metadata = (("x-tenant", "team-a"), ("x-tenant", "team-b"), ("trace-bin", b"\x00\x01"))
        await export(channel)(make_traces(1).serialize(), metadata=metadata, timeout=10)
        client = r.sink.batches[0].client
        assert client.get("X-Tenant") == ("team-a", "team-b")
        assert client.address == "127.0.0.1"
        assert not any(k.endswith("-bin") or k.startswith(":") for k in client.metadata)


async def test_tls_accepts_trusting_clients_and_refuses_plaintext(certs: Certs) -> None:
    tls = {"cert_file": str(certs.server_cert), "key_file": str(certs.server_key)}
    async with running(grpc={"tls": tls}) as r:
        credentials = grpc.ssl_channel_credentials(root_certificates=certs.ca_pem)
        async with grpc.aio.secure_channel(f"localhost:{r.receiver.grpc_port}", credentials) as channel:
            await export(channel)(make_traces(3).serialize(), timeout=10)
        assert r.sink.items == 3
        async with grpc.aio.insecure_channel(target(r)) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await export(channel)(make_traces(3).serialize(), timeout=5)
            assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        assert r.sink.items == 3


async def test_mtls_requires_a_client_certificate(certs: Certs) -> None:
    tls = {
        "cert_file": str(certs.server_cert),
        "key_file": str(certs.server_key),
        "client_ca_file": str(certs.ca_file),
    }
    async with running(grpc={"tls": tls}) as r:
        key, chain = certs.client_pems()
        with_cert = grpc.ssl_channel_credentials(certs.ca_pem, private_key=key, certificate_chain=chain)
        async with grpc.aio.secure_channel(f"localhost:{r.receiver.grpc_port}", with_cert) as channel:
            await export(channel)(make_traces(2).serialize(), timeout=10)
        assert r.sink.items == 2
        without_cert = grpc.ssl_channel_credentials(certs.ca_pem)
        async with grpc.aio.secure_channel(f"localhost:{r.receiver.grpc_port}", without_cert) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await export(channel)(make_traces(2).serialize(), timeout=5)
            assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        assert r.sink.items == 2


async def test_port_in_use_is_a_start_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            StartError, match=f"could not listen for OTLP/gRPC on 127.0.0.1:{port}: Address already in use"
        ):
            async with running(grpc={"endpoint": f"127.0.0.1:{port}"}):
                pass


async def test_certificate_that_does_not_load_is_a_start_error(
    tmp_path: pytest.TempPathFactory, certs: Certs
) -> None:
    bad = tmp_path / "bad.pem"  # type: ignore[operator]
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    with pytest.raises(StartError, match=r"could not load its .* TLS certificate"):
        async with running(grpc={"tls": {"cert_file": str(bad), "key_file": str(certs.server_key)}}):
            pass
    with pytest.raises(StartError, match=r"could not load its .* TLS certificate"):
        async with running(
            grpc={"tls": {"cert_file": "/nonexistent.pem", "key_file": str(certs.server_key)}}
        ):
            pass


async def test_shutdown_lets_requests_in_flight_finish_and_refuses_new_ones() -> None:
    async with running(grpc={}) as r, grpc.aio.insecure_channel(target(r)) as channel:
        call = export(channel)
        r.sink.block()
        in_flight = asyncio.ensure_future(call(make_traces(3).serialize(), timeout=10))
        await asyncio.wait_for(r.sink.entered.wait(), 10)
        shutting_down = asyncio.create_task(r.receiver.shutdown())
        await asyncio.sleep(0)  # the receiver closes its gate before it waits
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(make_traces(1).serialize(), timeout=10)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert retry_delay_s(info.value) == 1.0
        assert not shutting_down.done()
        r.sink.unblock()
        await in_flight
        await asyncio.wait_for(shutting_down, 10)
        assert r.sink.items == 3
        assert r.counter("refused_requests", reason="shutting_down", **GRPC) == 1
        await r.receiver.shutdown()  # idempotent


async def test_stop_intake_refuses_new_requests_and_lets_held_ones_finish() -> None:
    async with running(grpc={}) as r, grpc.aio.insecure_channel(target(r)) as channel:
        call = export(channel)
        r.sink.block()  # like a batch processor holding its callers until it flushes
        held = asyncio.ensure_future(call(make_traces(2).serialize(), timeout=10))
        await asyncio.wait_for(r.sink.entered.wait(), 10)
        await r.receiver.stop_intake()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(make_traces(1).serialize(), timeout=10)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        r.sink.unblock()
        assert await held == b""
        await asyncio.wait_for(r.receiver.shutdown(), 10)
        assert r.sink.items == 2


async def test_shutdown_grace_is_bounded() -> None:
    async with running(grpc={}, grace=0.05) as r, grpc.aio.insecure_channel(target(r)) as channel:
        r.sink.block()  # never unblocked: the consume hangs
        stuck = asyncio.ensure_future(export(channel)(make_traces(1).serialize(), timeout=10))
        await asyncio.wait_for(r.sink.entered.wait(), 10)
        await asyncio.wait_for(r.receiver.shutdown(), 10)
        with pytest.raises(grpc.aio.AioRpcError):
            await stuck


async def test_opentelemetry_sdk_grpc_exporter() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExportResult

    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-test"}))
    span = provider.get_tracer("flowglass.test").start_span("inference")
    span.end()
    async with running(grpc={}) as r:
        exporter = OTLPSpanExporter(endpoint=target(r), insecure=True, timeout=10)
        try:
            result = await asyncio.to_thread(exporter.export, [span])  # type: ignore[list-item]
        finally:
            await asyncio.to_thread(exporter.shutdown)
        assert result is SpanExportResult.SUCCESS
        (batch,) = r.sink.batches
        (sent,) = batch.message.resource_spans[0].scope_spans[0].spans  # type: ignore[union-attr]
        assert sent.name == "inference"
        assert sent.trace_id == span.get_span_context().trace_id.to_bytes(16, "big")
