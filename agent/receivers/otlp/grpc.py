"""OTLP/gRPC: the three `Export` methods on a `grpc.aio` server.

Methods are registered with generic handlers that take and return raw bytes: the request
bytes are parsed once into the batch (and kept, so an OTLP exporter forwards them as they
came), and successful responses are pre-serialized. Over-size requests are refused by gRPC
itself (RESOURCE_EXHAUSTED) and gzip from clients is handled by gRPC.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from agent.component import Settings
from agent.config.tls import TLSServerConfig
from agent.errors import StartError
from agent.model import Batch, ClientInfo, Signal
from agent.receivers.otlp import GRPCServerConfig, split_endpoint
from agent.receivers.otlp.intake import SignalIntake
from agent.receivers.otlp.outcome import (
    DEFAULT_RETRY_AFTER,
    EMPTY_RESPONSE,
    Verdict,
    export_response,
    grpc_trailers,
)

SERVICES = {
    Signal.TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    Signal.METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
    Signal.LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
}

_SHUTTING_DOWN = "the receiver is shutting down; retry later"


def grpc_address(endpoint: str) -> str:
    """The address gRPC binds for a `host:port` endpoint (no host means every interface)."""
    host, port = split_endpoint(endpoint)
    if not host:
        host = "::"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def server_options(config: GRPCServerConfig, reuse_port: bool) -> list[tuple[str, Any]]:
    """gRPC core channel arguments for the configured server settings."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", config.max_recv_msg_size),
        # Off unless asked for, so that a port in use is an error rather than a silent share.
        ("grpc.so_reuseport", int(reuse_port)),
    ]
    if config.max_concurrent_streams:
        options.append(("grpc.max_concurrent_streams", config.max_concurrent_streams))
    if config.read_buffer_size:
        options.append(("grpc.experimental.tcp_read_chunk_size", config.read_buffer_size))
    if config.write_buffer_size:
        # gRPC core's nearest knob to Go's WriteBufferSize.
        options.append(("grpc.http2.write_buffer_size", config.write_buffer_size))
    keepalive = config.keepalive
    if keepalive is not None and keepalive.server_parameters is not None:
        p = keepalive.server_parameters
        for arg, seconds in (
            ("grpc.max_connection_idle_ms", p.max_connection_idle),
            ("grpc.max_connection_age_ms", p.max_connection_age),
            ("grpc.max_connection_age_grace_ms", p.max_connection_age_grace),
            ("grpc.keepalive_time_ms", p.time),
            ("grpc.keepalive_timeout_ms", p.timeout),
        ):
            if seconds:
                options.append((arg, int(seconds * 1000)))
    if keepalive is not None and keepalive.enforcement_policy is not None:
        e = keepalive.enforcement_policy
        if e.min_time:
            options.append(("grpc.http2.min_ping_interval_without_data_ms", int(e.min_time * 1000)))
        options.append(("grpc.keepalive_permit_without_calls", int(e.permit_without_stream)))
    return options


def server_credentials(tls: TLSServerConfig, label: str) -> grpc.ServerCredentials:
    """TLS (mTLS with `client_ca_file`) credentials; raises StartError when they do not load."""
    try:
        cert, key, client_ca = tls.read()
        if tls.cert_file:
            # gRPC accepts any bytes here and fails only at the first handshake; loading the
            # files with `ssl` first turns a bad certificate into a start error.
            tls.ssl_context()
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise StartError(
            f"Receiver {label} could not load its gRPC TLS certificate, key or client CA: {exc}."
        ) from exc
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def bind_problem(endpoint: str) -> str:
    """Why `endpoint` cannot be bound, found by trying (gRPC's own error does not say)."""
    host, port = split_endpoint(endpoint)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in infos:
            with socket.socket(family, kind, proto) as probe:
                probe.bind(address)
    except OSError as exc:
        return exc.strerror or str(exc)
    return "gRPC refused the address"


def peer_address(peer: str) -> str:
    """The IP of a gRPC peer string (`ipv4:10.0.0.1:5000`, `ipv6:[::1]:5000`)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return peer


def metadata_of(pairs: Any) -> dict[str, tuple[str, ...]]:
    """Request metadata by lower-case name, without binary (`-bin`) and pseudo headers."""
    metadata: dict[str, tuple[str, ...]] = {}
    for key, value in pairs:
        name = key.lower()
        if name.startswith(":") or name.endswith("-bin") or not isinstance(value, str):
            continue
        metadata[name] = (*metadata.get(name, ()), value)
    return metadata


async def _abort(
    context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str, retry_after: float | None = None
) -> NoReturn:
    """End the call with `code`; a retry hint goes into the status details trailer."""
    await context.abort(code, message, trailing_metadata=grpc_trailers(code, message, retry_after))
    raise AssertionError("unreachable: abort() raises")


def _export_handler(intake: SignalIntake, include_metadata: bool) -> Any:
    signal = intake.signal
    what = f"{signal.value} export request"

    async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if intake.closed:
            intake.refuse_request("shutting_down")
            await _abort(context, grpc.StatusCode.UNAVAILABLE, _SHUTTING_DOWN, DEFAULT_RETRY_AFTER)
        if include_metadata:
            client = ClientInfo(peer_address(context.peer()), metadata_of(context.invocation_metadata()))
        else:
            client = ClientInfo(peer_address(context.peer()))
        try:
            batch = Batch.parse(signal, request, client)
        except DecodeError as exc:
            intake.refuse_request("malformed")
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid OTLP {what}: {exc}"
            )
        outcome = await intake.consume(batch)
        if outcome.verdict is Verdict.ACCEPTED:
            return EMPTY_RESPONSE
        if outcome.verdict is Verdict.PARTIAL:
            return export_response(signal, outcome)
        await _abort(context, outcome.grpc_code, outcome.message, outcome.retry_after)

    return export


class OTLPGrpcServer:
    """A `grpc.aio` server with the Export methods of the signals in `intakes`."""

    def __init__(
        self,
        settings: Settings,
        config: GRPCServerConfig,
        intakes: Mapping[Signal, SignalIntake],
        *,
        reuse_port: bool = False,
    ) -> None:
        self._settings = settings
        self._config = config
        self._intakes = intakes
        self._reuse_port = reuse_port
        self._server: grpc.aio.Server | None = None
        #: The bound port, once started.
        self.port: int | None = None

    async def start(self) -> None:
        config = self._config
        label = self._settings.label
        credentials = server_credentials(config.tls, label) if config.tls is not None else None
        server = grpc.aio.server(options=server_options(config, self._reuse_port))
        for signal, intake in self._intakes.items():
            handler = grpc.unary_unary_rpc_method_handler(_export_handler(intake, config.include_metadata))
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(SERVICES[signal], {"Export": handler}),)
            )
        address = grpc_address(config.endpoint)
        try:
            if credentials is not None:
                port = server.add_secure_port(address, credentials)
            else:
                port = server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        if not port:
            why = bind_problem(config.endpoint)
            raise StartError(f"Receiver {label} could not listen for OTLP/gRPC on {config.endpoint}: {why}.")
        await server.start()
        self._server = server
        self.port = port

    async def stop(self, grace: float) -> None:
        """Stop accepting calls, give those running `grace` seconds, then cancel them and close."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
