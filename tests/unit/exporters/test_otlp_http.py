"""otlp_http against a real aiohttp server on 127.0.0.1:0."""

from __future__ import annotations

import email.utils
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer
from google.rpc import status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from agent.component import Kind, Settings
from agent.config.types import dec_hook
from agent.errors import PermanentError, RetryableError, StartError
from agent.exporters import otlp_http
from agent.exporters.otlp_http import OTLPHTTPExporter, OTLPHTTPExporterConfig, parse_retry_after
from agent.model import Batch, Signal, otlp_json
from agent.testing import free_port, make_batch, make_logs, make_traces
from tests.unit.exporters.helpers import FakeClock, metric

SENT = "flowglass_exporter_sent_items_total"
FAILED = "flowglass_exporter_send_failed_items_total"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes  # after the server undid Content-Encoding


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/x-protobuf"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class OTLPHTTPServer:
    """Records every POST; `script` holds the replies, in order (then an empty 200)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    script: list[Reply] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(request.path, dict(request.headers), body))
        reply = self.script.pop(0) if self.script else Reply()
        return web.Response(status=reply.status, body=reply.body, headers={
            "Content-Type": reply.content_type, **reply.headers})


@pytest.fixture
async def server() -> AsyncIterator[OTLPHTTPServer]:
    state = OTLPHTTPServer()
    app = web.Application()
    app.router.add_post("/{tail:.*}", state.handle)
    srv = TestServer(app, host="127.0.0.1", port=0)
    await srv.start_server()
    state.url = f"http://127.0.0.1:{srv.port}"
    yield state
    await srv.close()


def make_config(**raw: Any) -> OTLPHTTPExporterConfig:
    return msgspec.convert(raw, OTLPHTTPExporterConfig, dec_hook=dec_hook)


def make_exporter(config: OTLPHTTPExporterConfig, clock: FakeClock | None = None) -> OTLPHTTPExporter:
    return OTLPHTTPExporter(Settings.for_test("otlphttp/test", Kind.EXPORTER), config, clock=clock or FakeClock())


def inline(url: str, **extra: Any) -> OTLPHTTPExporterConfig:
    """Queue disabled, so the outcome of each send is the caller's."""
    return make_config(endpoint=url, sending_queue={"enabled": False}, **extra)


async def run(exporter: OTLPHTTPExporter, *batches: Batch) -> None:
    await exporter.start()
    try:
        for batch in batches:
            await exporter.consume(batch)
    finally:
        await exporter.shutdown()


# --- config -----------------------------------------------------------------------------


def test_config_defaults_and_urls() -> None:
    c = make_config(endpoint="https://collector:4318/")
    assert (c.compression, c.encoding, c.timeout) == ("gzip", "proto", 30.0)
    assert (c.max_idle_conns, c.idle_conn_timeout) == (100, 90.0)
    assert c.url(Signal.TRACES) == "https://collector:4318/v1/traces"
    assert c.url(Signal.LOGS) == "https://collector:4318/v1/logs"
    only = make_config(traces_endpoint="http://t:1/x")
    assert only.url(Signal.TRACES) == "http://t:1/x" and only.url(Signal.METRICS) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "set endpoint"),
        ({"endpoint": "collector:4318"}, "must be an http:// or https:// URL"),
        ({"endpoint": "http://c:1", "compression": "zstd"}, "not supported by the HTTP exporter"),
        ({"endpoint": "http://c:1", "encoding": "xml"}, "Invalid enum value 'xml'"),
        ({"endpoint": "http://c:1", "max_conns_per_host": -1}, "must not be negative"),
        ({"endpoint": "http://c:1", "headers": {"content-type": "text/plain"}}, "set by the exporter"),
        ({"endpoint": "http://c:1", "cookies": {"enabled": True}}, "unknown field"),
    ],
)
def test_config_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        make_config(**raw)


def test_upstream_options_and_factory() -> None:
    assert {"auth", "cookies", "sending_queue.wait_for_result"} <= OTLPHTTPExporterConfig.__upstream_options__
    assert otlp_http.FACTORY.type == "otlp_http" and otlp_http.FACTORY.aliases == ("otlphttp",)


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert parse_retry_after("12") == 12.0
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --- behaviour ---------------------------------------------------------------------------


async def test_proto_bodies_go_to_each_signal_path(server: OTLPHTTPServer) -> None:
    batches = {signal: make_batch(signal, 6) for signal in Signal}
    exporter = make_exporter(make_config(endpoint=server.url, compression="none",
                                         headers={"Authorization": "Bearer t0ken"}))
    await run(exporter, *batches.values())
    by_path = {r.path: r for r in server.received}
    assert set(by_path) == {"/v1/traces", "/v1/metrics", "/v1/logs"}
    for signal, batch in batches.items():
        request = by_path[f"/v1/{signal.value}"]
        assert request.body == batch.serialize()
        assert request.headers["Content-Type"] == "application/x-protobuf"
        assert request.headers["Authorization"] == "Bearer t0ken"
        assert "Content-Encoding" not in request.headers
        assert metric(exporter._settings, SENT, signal=signal.value) == 6


async def test_json_encoding(server: OTLPHTTPServer) -> None:
    batch = make_logs(4)
    await run(make_exporter(inline(server.url, encoding="json")), batch)
    request = server.received[0]
    assert request.headers["Content-Type"] == "application/json"
    assert otlp_json.decode(Signal.LOGS, request.body) == batch.message


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
async def test_compression(server: OTLPHTTPServer, compression: str) -> None:
    batch = make_traces(300, seed=5)
    await run(make_exporter(inline(server.url, compression=compression)), batch)
    request = server.received[0]
    assert request.headers["Content-Encoding"] == compression
    assert int(request.headers["Content-Length"]) < batch.nbytes * 0.6
    assert request.body == batch.serialize()


async def test_large_bodies_are_compressed_too(server: OTLPHTTPServer) -> None:
    batch = make_traces(3000, seed=6)
    assert batch.nbytes >= otlp_http._THREAD_COMPRESS_BYTES
    await run(make_exporter(inline(server.url)), batch)
    assert server.received[0].body == batch.serialize()
    assert int(server.received[0].headers["Content-Length"]) < batch.nbytes


async def test_503_with_retry_after_is_retried_then_delivered(server: OTLPHTTPServer) -> None:
    server.script = [Reply(503, b"busy", "text/plain", {"Retry-After": "4"})]
    clock = FakeClock()
    exporter = make_exporter(inline(server.url), clock)
    await run(exporter, make_traces(5))
    assert clock.sleeps == [4.0]
    assert len(server.received) == 2
    assert metric(exporter._settings, SENT, signal="traces") == 5


@pytest.mark.parametrize("status", [429, 502, 504])
async def test_other_retryable_statuses(server: OTLPHTTPServer, status: int) -> None:
    server.script = [Reply(status)]
    clock = FakeClock()
    await run(make_exporter(inline(server.url, retry_on_failure={"randomization_factor": 0}), clock),
              make_traces(1))
    assert clock.sleeps == [5.0]  # no Retry-After: the first backoff interval
    assert len(server.received) == 2


async def test_400_is_permanent_with_the_status_message(server: OTLPHTTPServer) -> None:
    status = status_pb2.Status(code=3, message="span 7 has no trace id")
    server.script = [Reply(400, status.SerializeToString())]
    clock = FakeClock()
    exporter = make_exporter(inline(server.url), clock)
    await exporter.start()
    with pytest.raises(PermanentError, match="HTTP 400: span 7 has no trace id"):
        await exporter.consume(make_traces(3))
    await exporter.shutdown()
    assert len(server.received) == 1 and clock.sleeps == []
    assert metric(exporter._settings, FAILED, signal="traces", reason="permanent") == 3


async def test_json_error_message(server: OTLPHTTPServer) -> None:
    server.script = [Reply(401, b'{"code": 16, "message": "token expired"}', "application/json")]
    exporter = make_exporter(inline(server.url, encoding="json"))
    await exporter.start()
    with pytest.raises(PermanentError, match="HTTP 401: token expired"):
        await exporter.consume(make_traces(1))
    await exporter.shutdown()


async def test_signal_endpoint_overrides_the_base_url(server: OTLPHTTPServer) -> None:
    config = make_config(endpoint=f"{server.url}/base", traces_endpoint=f"{server.url}/custom/spans",
                         sending_queue={"enabled": False})
    await run(make_exporter(config), make_traces(2), make_logs(2))
    assert [r.path for r in server.received] == ["/custom/spans", "/base/v1/logs"]


async def test_a_signal_without_url_is_refused_permanently(server: OTLPHTTPServer) -> None:
    exporter = make_exporter(make_config(traces_endpoint=f"{server.url}/t", sending_queue={"enabled": False}))
    await exporter.start()
    with pytest.raises(PermanentError, match="no URL for logs"):
        await exporter.consume(make_logs(1))
    await exporter.shutdown()
    assert server.received == []


async def test_partial_success_in_proto_and_json(server: OTLPHTTPServer) -> None:
    proto = ExportTraceServiceResponse()
    proto.partial_success.rejected_spans = 2
    proto.partial_success.error_message = "too old"
    server.script = [
        Reply(200, proto.SerializeToString()),
        Reply(200, b'{"partialSuccess": {"rejectedLogRecords": "1", "errorMessage": "no body"}}',
              "application/json"),
    ]
    exporter = make_exporter(inline(server.url))
    await exporter.start()
    with pytest.raises(PermanentError, match="too old") as info:
        await exporter.consume(make_traces(5))
    assert info.value.rejected == 2
    with pytest.raises(PermanentError, match="no body"):
        await exporter.consume(make_logs(3))
    await exporter.shutdown()
    s = exporter._settings
    assert metric(s, SENT, signal="traces") == 3 and metric(s, FAILED, signal="traces", reason="partial") == 2
    assert metric(s, SENT, signal="logs") == 2 and metric(s, FAILED, signal="logs", reason="partial") == 1


async def test_empty_partial_success_is_plain_success(server: OTLPHTTPServer) -> None:
    server.script = [Reply(200, ExportLogsServiceResponse().SerializeToString())]
    exporter = make_exporter(inline(server.url))
    await run(exporter, make_logs(3))
    assert metric(exporter._settings, SENT, signal="logs") == 3


async def test_connection_refused_is_retryable() -> None:
    exporter = make_exporter(inline(f"http://127.0.0.1:{free_port()}", retry_on_failure={"enabled": False}))
    await exporter.start()
    with pytest.raises(RetryableError, match="cannot send to"):
        await exporter.consume(make_traces(1))
    await exporter.shutdown()


async def test_queued_batches_are_delivered_on_shutdown(server: OTLPHTTPServer) -> None:
    exporter = make_exporter(make_config(endpoint=server.url))
    batches = [make_traces(3) for _ in range(5)]
    await run(exporter, *batches)
    assert sorted(r.body for r in server.received) == sorted(b.serialize() for b in batches)


async def test_https_with_a_private_ca() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    state = OTLPHTTPServer()
    app = web.Application()
    app.router.add_post("/{tail:.*}", state.handle)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        config = make_config(endpoint=f"https://127.0.0.1:{port}",
                             tls={"ca_pem": ca.cert_pem.bytes().decode()}, sending_queue={"enabled": False})
        await run(make_exporter(config), make_traces(2))
        assert len(state.received) == 1
        untrusted = make_exporter(make_config(endpoint=f"https://127.0.0.1:{port}",
                                              sending_queue={"enabled": False},
                                              retry_on_failure={"enabled": False}))
        await untrusted.start()
        with pytest.raises(RetryableError):
            await untrusted.consume(make_traces(1))
        await untrusted.shutdown()
        assert len(state.received) == 1
    finally:
        await runner.cleanup()


async def test_missing_ca_file_fails_start(tmp_path: Any) -> None:
    exporter = make_exporter(make_config(endpoint="https://c:4318", tls={"ca_file": str(tmp_path / "no.pem")}))
    with pytest.raises(StartError, match="cannot load TLS settings"):
        await exporter.start()
    await exporter.shutdown()
