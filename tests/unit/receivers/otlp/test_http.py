"""OTLP/HTTP: an aiohttp client over loopback, a Sink as the pipeline."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import ssl
import zlib
from typing import Any

import aiohttp
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from agent.errors import MemoryRefusedError, PermanentError, RetryableError, StartError
from agent.model import Signal, otlp_json
from agent.testing import Sink, make_batch, make_traces, spans_of
from tests.unit.receivers.otlp.kit import Certs, Running, running

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
HTTP = {"transport": "http"}


def url(r: Running, path: str = "/v1/traces", scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{r.receiver.http_port}{path}"


async def post(
    r: Running, body: bytes, headers: dict[str, str], path: str = "/v1/traces"
) -> tuple[int, Any, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url(r, path), data=body, headers=headers) as resp,
    ):
        return resp.status, resp.headers, await resp.read()


def status_of(body: bytes) -> status_pb2.Status:
    return status_pb2.Status.FromString(body)


async def test_protobuf_export_reaches_the_pipeline() -> None:
    async with running(http={}) as r:
        data = make_traces(6).serialize()
        status, headers, body = await post(r, data, PROTOBUF)
        assert status == 200
        assert headers["Content-Type"] == "application/x-protobuf"
        assert ExportTraceServiceResponse.FromString(body) == ExportTraceServiceResponse()
        (batch,) = r.sink.batches
        assert batch.serialize() == data
        assert batch.client.address == "127.0.0.1"
        assert r.counter("accepted_items", **HTTP) == 6


async def test_json_export_with_hex_ids() -> None:
    async with running(http={}) as r:
        sent = make_traces(4)
        document = otlp_json.encode(sent.message)
        assert sent.message.resource_spans[0].scope_spans[0].spans[0].trace_id.hex().encode() in document  # type: ignore[union-attr]
        status, headers, body = await post(r, document, JSON)
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == {}
        assert [s.trace_id for s in spans_of(r.sink.batches)] == [s.trace_id for s in spans_of([sent])]
        assert r.sink.items == 4


@pytest.mark.parametrize("signal", [Signal.METRICS, Signal.LOGS])
async def test_metrics_and_logs_paths(signal: Signal) -> None:
    sink = Sink()
    async with running(http={}, consumers={signal: sink}) as r:
        status, _, _ = await post(r, make_batch(signal, 5).serialize(), PROTOBUF, f"/v1/{signal.value}")
        assert status == 200 and sink.items == 5
        # No traces pipeline uses this receiver: the traces path does not exist.
        status, _, _ = await post(r, make_traces(1).serialize(), PROTOBUF, "/v1/traces")
        assert status == 404


async def test_custom_url_path() -> None:
    async with running(http={"traces_url_path": "/otlp/spans"}) as r:
        assert (await post(r, make_traces(2).serialize(), PROTOBUF, "/otlp/spans"))[0] == 200
        assert (await post(r, make_traces(2).serialize(), PROTOBUF, "/v1/traces"))[0] == 404
        assert r.sink.items == 2


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_bodies(encoding: str) -> None:
    async with running(http={}) as r:
        data = make_traces(5).serialize()
        compressed = gzip.compress(data) if encoding == "gzip" else zlib.compress(data)
        status, _, _ = await post(r, compressed, {**PROTOBUF, "Content-Encoding": encoding})
        assert status == 200
        assert r.sink.batches[0].serialize() == data


async def test_invalid_json_is_400_with_a_status_message() -> None:
    async with running(http={}) as r:
        status, headers, body = await post(r, b'{"resourceSpans": [', JSON)
        assert status == 400
        assert headers["Content-Type"] == "application/json"
        document = json.loads(body)
        assert document["code"] == 3
        assert "not a valid OTLP/JSON traces export request" in document["message"]
        status, _, body = await post(
            r, b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', JSON
        )
        assert status == 400 and "hex" in json.loads(body)["message"]
        assert r.counter("refused_requests", reason="malformed", **HTTP) == 2
        assert r.sink.calls == 0


async def test_corrupt_protobuf_is_400() -> None:
    async with running(http={}) as r:
        status, headers, body = await post(r, b"\x0a\xff\xff\xff\xff\x0f junk", PROTOBUF)
        assert status == 400
        assert headers["Content-Type"] == "application/x-protobuf"
        assert "not a valid OTLP traces export request" in status_of(body).message
        status, _, _ = await post(r, gzip.compress(b"x")[:-10], {**PROTOBUF, "Content-Encoding": "gzip"})
        assert status == 400
        assert r.counter("refused_requests", reason="decompression", **HTTP) == 1


async def test_wrong_content_type_is_415() -> None:
    async with running(http={}) as r:
        status, _, body = await post(r, b"spans", {"Content-Type": "text/plain"})
        assert status == 415 and b"application/x-protobuf" in body
        status, _, _ = await post(r, make_traces(1).serialize(), {**PROTOBUF, "Content-Encoding": "br"})
        assert status == 415
        assert r.counter("refused_requests", reason="unsupported_media_type", **HTTP) == 2
        assert r.sink.calls == 0


async def test_method_other_than_post_is_405_and_unknown_path_404() -> None:
    async with running(http={}) as r, aiohttp.ClientSession() as session:
        async with session.get(url(r)) as resp:
            assert resp.status == 405
        async with session.post(url(r, "/v1/nothing"), data=b"", headers=PROTOBUF) as resp:
            assert resp.status == 404


async def test_over_size_bodies_are_413() -> None:
    limit = 64 * 1024
    async with running(http={"max_request_body_size": limit}) as r:
        status, _, body = await post(r, b"\0" * (limit + 1), PROTOBUF)
        assert status == 413 and "larger than" in status_of(body).message
        bomb = gzip.compress(b"\0" * (10 * limit))
        assert len(bomb) < limit
        status, _, _ = await post(r, bomb, {**PROTOBUF, "Content-Encoding": "gzip"})
        assert status == 413
        assert r.counter("refused_requests", reason="too_large", **HTTP) == 2
        # A body under the limit is fine.
        status, _, _ = await post(r, make_traces(20).serialize(), PROTOBUF)
        assert status == 200


async def test_over_size_chunked_body_is_413() -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b"\0" * 4096

    async with running(http={"max_request_body_size": 10_000}) as r, aiohttp.ClientSession() as session:
        async with session.post(url(r), data=chunks(), headers=PROTOBUF) as resp:
            assert resp.status == 413


@pytest.mark.parametrize(
    ("error", "status", "retry_after", "reason"),
    [
        (MemoryRefusedError("above the memory limit", retry_after=2.5), 429, "3", "memory_limit"),
        (RetryableError("exporter down"), 503, "1", "retryable"),
        (RuntimeError("bug"), 503, "1", "retryable"),
    ],
)
async def test_retryable_refusals_carry_retry_after(
    error: Exception, status: int, retry_after: str, reason: str
) -> None:
    async with running(http={}) as r:
        r.sink.fail_with = error
        got, headers, body = await post(r, make_traces(3).serialize(), PROTOBUF)
        assert got == status
        assert headers["Retry-After"] == retry_after
        assert status_of(body).message == str(error)
        assert r.counter("refused_items", reason=reason, **HTTP) == 3


async def test_permanent_refusal_is_400() -> None:
    async with running(http={}) as r:
        r.sink.fail_with = PermanentError("never")
        status, headers, body = await post(r, otlp_json.encode(make_traces(3).message), JSON)
        assert status == 400 and "Retry-After" not in headers
        assert json.loads(body)["message"] == "never"
        assert r.counter("refused_items", reason="permanent", **HTTP) == 3


async def test_partial_success() -> None:
    async with running(http={}) as r:
        r.sink.fail_with = PermanentError("2 spans too old", rejected=2)
        status, _, body = await post(r, make_traces(5).serialize(), PROTOBUF)
        assert status == 200
        response = ExportTraceServiceResponse.FromString(body)
        assert response.partial_success.rejected_spans == 2
        assert response.partial_success.error_message == "2 spans too old"
        r.sink.fail_with = PermanentError("1 span too old", rejected=1)
        status, _, body = await post(r, otlp_json.encode(make_traces(5).message), JSON)
        assert status == 200
        assert json.loads(body) == {
            "partialSuccess": {"rejectedSpans": "1", "errorMessage": "1 span too old"}
        }
        assert r.counter("accepted_items", **HTTP) == 7
        assert r.counter("refused_items", reason="partial", **HTTP) == 3


async def test_include_metadata_and_response_headers() -> None:
    async with running(
        http={"include_metadata": True, "response_headers": {"X-Served-By": "flowglass"}}
    ) as r:
        status, headers, _ = await post(r, make_traces(1).serialize(), {**PROTOBUF, "X-Tenant": "team-a"})
        assert status == 200
        assert headers["X-Served-By"] == "flowglass"
        client = r.sink.batches[0].client
        assert client.get("x-tenant") == ("team-a",)
        assert client.get("content-type") == ("application/x-protobuf",)
        assert client.address == "127.0.0.1"


async def test_cors_preflight_and_origin_header() -> None:
    cors = {"allowed_origins": ["https://*.example.com"], "allowed_headers": ["X-Tenant"], "max_age": 600}
    async with running(http={"cors": cors}) as r, aiohttp.ClientSession() as session:
        preflight = {
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-tenant",
        }
        async with session.options(url(r), headers=preflight) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
            assert resp.headers["Access-Control-Allow-Methods"] == "POST"
            assert resp.headers["Access-Control-Allow-Headers"] == "content-type, x-tenant"
            assert resp.headers["Access-Control-Max-Age"] == "600"
        async with session.options(url(r), headers={**preflight, "Origin": "https://evil.test"}) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers
        not_allowed = {**preflight, "Access-Control-Request-Headers": "x-secret"}
        async with session.options(url(r), headers=not_allowed) as resp:
            assert "Access-Control-Allow-Methods" not in resp.headers
        body = make_traces(1).serialize()
        async with session.post(
            url(r), data=body, headers={**PROTOBUF, "Origin": "https://app.example.com"}
        ) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        async with session.post(
            url(r), data=body, headers={**PROTOBUF, "Origin": "https://evil.test"}
        ) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers


async def test_options_without_cors_is_405() -> None:
    async with running(http={}) as r, aiohttp.ClientSession() as session:
        async with session.options(url(r), headers={"Origin": "https://a.example.com"}) as resp:
            assert resp.status == 405


async def test_tls(certs: Certs) -> None:
    tls = {"cert_file": str(certs.server_cert), "key_file": str(certs.server_key)}
    async with running(http={"tls": tls}) as r:
        context = ssl.create_default_context()
        certs.ca.configure_trust(context)
        async with aiohttp.ClientSession() as session:
            async with session.post(
                url(r, scheme="https"), data=make_traces(2).serialize(), headers=PROTOBUF, ssl=context
            ) as resp:
                assert resp.status == 200
            with pytest.raises(aiohttp.ClientError):
                async with session.post(url(r), data=make_traces(2).serialize(), headers=PROTOBUF) as resp:
                    await resp.read()
        assert r.sink.items == 2


async def test_port_in_use_and_bad_certificate_are_start_errors(certs: Certs) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartError, match=r"could not listen for OTLP/HTTP on .*: Address already in use"):
            async with running(http={"endpoint": f"127.0.0.1:{port}"}):
                pass
    with pytest.raises(StartError, match=r"could not load its .* TLS certificate"):
        async with running(
            http={"tls": {"cert_file": "/nonexistent.pem", "key_file": str(certs.server_key)}}
        ):
            pass


async def test_http_failure_stops_the_grpc_server_it_started() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        grpc_port = socket.socket()
        grpc_port.bind(("127.0.0.1", 0))
        free = grpc_port.getsockname()[1]
        grpc_port.close()
        with pytest.raises(StartError):
            async with running(
                grpc={"endpoint": f"127.0.0.1:{free}"}, http={"endpoint": f"127.0.0.1:{port}"}
            ):
                pass
    # The gRPC port was released: binding it again works.
    with socket.socket() as again:
        again.bind(("127.0.0.1", free))


async def test_shutdown_refuses_new_requests_with_503() -> None:
    async with running(http={}) as r:
        r.sink.block()
        in_flight = asyncio.create_task(post(r, make_traces(2).serialize(), PROTOBUF))
        await asyncio.wait_for(r.sink.entered.wait(), 10)
        shutting_down = asyncio.create_task(r.receiver.shutdown())
        await asyncio.sleep(0)
        status, headers, _ = await post(r, make_traces(1).serialize(), PROTOBUF)
        assert status == 503 and headers["Retry-After"] == "1"
        r.sink.unblock()
        assert (await in_flight)[0] == 200
        # A second, concurrent shutdown returns once the first is done.
        await asyncio.wait_for(asyncio.gather(shutting_down, r.receiver.shutdown()), 10)
        assert r.receiver.http_port is not None
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(r, make_traces(1).serialize(), PROTOBUF)
        assert r.sink.items == 2


async def test_opentelemetry_sdk_http_exporter() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExportResult

    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-test"}))
    span = provider.get_tracer("flowglass.test").start_span("inference")
    span.end()
    async with running(http={}) as r:
        exporter = OTLPSpanExporter(endpoint=url(r), timeout=10)
        try:
            result = await asyncio.to_thread(exporter.export, [span])  # type: ignore[list-item]
        finally:
            await asyncio.to_thread(exporter.shutdown)
        assert result is SpanExportResult.SUCCESS
        (sent,) = spans_of(r.sink.batches)
        assert sent.name == "inference"
        assert sent.trace_id == span.get_span_context().trace_id.to_bytes(16, "big")
