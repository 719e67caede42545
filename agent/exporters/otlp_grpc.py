"""`otlp_grpc` (alias `otlp`): send traces, metrics and logs to an OTLP/gRPC server.

The batch's protobuf encoding goes on the wire as it is (encoded at most once, and not at
all when the receiver's bytes are still valid), through a raw `grpc.aio` unary call.

```yaml
exporters:
  otlp:
    endpoint: collector.observability:4317   # https:// or http:// sets TLS on or off
    tls:
      ca_file: /etc/flowglass/ca.pem         # insecure: true for plaintext
    headers: {x-tenant: ml-team}
    compression: gzip                        # gzip (default), deflate, none
    sending_queue: {queue_size: 1000}
    retry_on_failure: {max_elapsed_time: 5m}
```

Guarantees: a batch is counted sent only when the server answered OK; a partial success
counts its rejected items as failed (`reason="partial"`) and is logged at WARNING.
UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, CANCELLED, OUT_OF_RANGE and DATA_LOSS are retried
(after the server's RetryInfo delay when it sent one); RESOURCE_EXHAUSTED is retried only
when the server sent RetryInfo, as in the Collector; every other status is permanent.
Queueing, retries and counters are `agent.exporters.sending`'s.
"""

from __future__ import annotations

from typing import Any, ClassVar

import grpc
import grpc.aio
import msgspec
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

import agent
from agent.component import ExporterFactory, Settings, Stability
from agent.config.tls import TLSClientConfig
from agent.config.types import ByteSize, Duration
from agent.errors import PermanentError, RetryableError, StartError
from agent.exporters.sending import (
    SENDING_UPSTREAM_OPTIONS,
    SYSTEM_CLOCK,
    Clock,
    QueuedExporter,
    RetryConfig,
    SendingQueueConfig,
)
from agent.model import Batch, Signal

METHODS = {
    Signal.TRACES: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    Signal.METRICS: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    Signal.LOGS: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}

RESPONSE_TYPES: dict[Signal, Any] = {
    Signal.TRACES: ExportTraceServiceResponse,
    Signal.METRICS: ExportMetricsServiceResponse,
    Signal.LOGS: ExportLogsServiceResponse,
}

#: The `partial_success` field that counts rejected items, per signal.
REJECTED_FIELDS = {
    Signal.TRACES: "rejected_spans",
    Signal.METRICS: "rejected_data_points",
    Signal.LOGS: "rejected_log_records",
}

_COMPRESSIONS = {
    "gzip": grpc.Compression.Gzip,
    "deflate": grpc.Compression.Deflate,
    "none": grpc.Compression.NoCompression,
    "": grpc.Compression.NoCompression,
}

_RETRYABLE = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.DATA_LOSS,
})

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class KeepaliveConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`keepalive`: HTTP/2 pings that detect a dead connection (Collector defaults)."""

    time: Duration = Duration(10.0)
    timeout: Duration = Duration(10.0)
    permit_without_stream: bool = False


class OTLPGRPCExporterConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The Collector's `otlp` exporter options (`configgrpc` client plus `exporterhelper`).

    `keepalive: null` turns pings off. `write_buffer_size` and `read_buffer_size` map to
    gRPC core's HTTP/2 write buffer and TCP read chunk size.
    """

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({
        "auth",
        "middlewares",
        "tls.reload_interval",
        "tls.include_system_ca_certs_pool",
        "tls.cipher_suites",
        "tls.curve_preferences",
    }) | SENDING_UPSTREAM_OPTIONS

    endpoint: str
    tls: TLSClientConfig = msgspec.field(default_factory=TLSClientConfig)
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    compression: str = "gzip"
    keepalive: KeepaliveConfig | None = msgspec.field(default_factory=KeepaliveConfig)
    balancer_name: str = "round_robin"
    authority: str = ""
    wait_for_ready: bool = False
    write_buffer_size: ByteSize = ByteSize(512 * 1024)
    read_buffer_size: ByteSize = ByteSize(0)
    timeout: Duration = Duration(5.0)
    sending_queue: SendingQueueConfig = msgspec.field(default_factory=SendingQueueConfig)
    retry_on_failure: RetryConfig = msgspec.field(default_factory=RetryConfig)

    def __post_init__(self) -> None:
        if not self.endpoint.strip():
            raise ValueError("endpoint must be set to the server's host:port")
        if self.compression not in _COMPRESSIONS:
            raise ValueError(
                f"compression {self.compression!r} is not supported by the gRPC exporter; "
                "use gzip, deflate or none"
            )
        if self.balancer_name not in ("pick_first", "round_robin"):
            raise ValueError(
                f"balancer_name {self.balancer_name!r} is not supported; use pick_first or round_robin"
            )
        if self.tls.insecure_skip_verify:
            raise ValueError(
                "tls.insecure_skip_verify is not supported by the gRPC exporter (gRPC for Python "
                "always verifies the server); give the server's CA in tls.ca_file instead"
            )
        if self.tls.min_version != "1.2" or self.tls.max_version not in ("", "1.3"):
            raise ValueError(
                "tls.min_version and tls.max_version cannot be set for the gRPC exporter: "
                "gRPC for Python always negotiates TLS 1.2 or 1.3"
            )
        for key in self.headers:
            if not key or key != key.strip() or key.lower().startswith("grpc-"):
                raise ValueError(f"headers: {key!r} is not a header name the exporter may send")

    def target(self) -> tuple[str, bool]:
        """The gRPC target and whether TLS is on: the scheme decides, else `tls.insecure`."""
        endpoint = self.endpoint.strip()
        if endpoint.startswith("https://"):
            return endpoint[len("https://"):].rstrip("/"), True
        if endpoint.startswith("http://"):
            return endpoint[len("http://"):].rstrip("/"), False
        return endpoint, not self.tls.insecure

    def channel_options(self) -> list[tuple[str, Any]]:
        options: list[tuple[str, Any]] = [
            ("grpc.primary_user_agent", f"flowglass/{agent.__version__}"),
            ("grpc.lb_policy_name", self.balancer_name),
            ("grpc.max_send_message_length", -1),
        ]
        if self.keepalive is not None and self.keepalive.time > 0:
            options += [
                ("grpc.keepalive_time_ms", int(self.keepalive.time * 1000)),
                ("grpc.keepalive_timeout_ms", int(self.keepalive.timeout * 1000)),
                ("grpc.keepalive_permit_without_calls", int(self.keepalive.permit_without_stream)),
            ]
        if self.authority:
            options.append(("grpc.default_authority", self.authority))
        if self.tls.server_name_override:
            options.append(("grpc.ssl_target_name_override", self.tls.server_name_override))
        if self.write_buffer_size:
            options.append(("grpc.http2.write_buffer_size", int(self.write_buffer_size)))
        if self.read_buffer_size:
            options.append(("grpc.experimental.tcp_read_chunk_size", int(self.read_buffer_size)))
        return options


class OTLPGRPCExporter(QueuedExporter):
    """Sends every signal to one OTLP/gRPC endpoint over one channel."""

    def __init__(self, settings: Settings, config: OTLPGRPCExporterConfig, *, clock: Clock = SYSTEM_CLOCK) -> None:
        """`clock` is for tests: backoff waits go through it."""
        super().__init__(
            settings,
            sending_queue=config.sending_queue,
            retry_on_failure=config.retry_on_failure,
            timeout=config.timeout,
            clock=clock,
        )
        self._config = config
        self._target, self._tls = config.target()
        self._metadata = tuple(
            (k.lower(), v.encode() if k.lower().endswith("-bin") else v) for k, v in config.headers.items()
        )
        self._call_timeout = float(config.timeout) or None
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[Signal, Any] = {}

    async def _open(self) -> None:
        options = self._config.channel_options()
        compression = _COMPRESSIONS[self._config.compression]
        if self._tls:
            try:
                ca, cert, key = self._config.tls.read()
            except OSError as exc:
                raise StartError(f"exporter {self._settings.label}: cannot read a TLS file: {exc}") from exc
            credentials = grpc.ssl_channel_credentials(
                root_certificates=ca, private_key=key, certificate_chain=cert
            )
            self._channel = grpc.aio.secure_channel(self._target, credentials, options, compression)
        else:
            self._channel = grpc.aio.insecure_channel(self._target, options, compression)
        # No serializers: the request is the batch's bytes and the response stays bytes.
        self._calls = {signal: self._channel.unary_unary(method) for signal, method in METHODS.items()}
        self._settings.logger.info(
            "The OTLP/gRPC exporter started.",
            extra={"component": self._settings.label, "endpoint": self._target, "tls": self._tls},
        )

    async def _close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def _send(self, batch: Batch) -> None:
        call = self._calls.get(batch.signal)
        if call is None:
            raise RetryableError(f"exporter {self._settings.label} is not started")
        try:
            response = await call(
                batch.serialize(),
                timeout=self._call_timeout,
                metadata=self._metadata,
                wait_for_ready=self._config.wait_for_ready,
            )
        except grpc.aio.AioRpcError as err:
            raise status_error(err.code(), err.details(), err.trailing_metadata()) from None
        rejected, error_message = decode_partial_success(batch.signal, response)
        raise_for_partial_success(self._settings, batch, rejected, error_message)


def status_error(
    code: grpc.StatusCode, details: str | None, trailing: Any
) -> PermanentError | RetryableError:
    """The seam error for a failed call, as the Collector classifies gRPC statuses."""
    delay = retry_delay(trailing)
    message = f"the server answered {code.name}: {details or 'no details'}"
    if code in _RETRYABLE or (code is grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None):
        return RetryableError(message, retry_after=delay)
    return PermanentError(message)


def retry_delay(trailing: Any) -> float | None:
    """The RetryInfo delay in `grpc-status-details-bin`, in seconds, if the server sent one."""
    for key, value in trailing or ():
        if key != _STATUS_DETAILS_KEY:
            continue
        try:
            status = status_pb2.Status.FromString(value if isinstance(value, bytes) else value.encode())
        except DecodeError:
            return None
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


def decode_partial_success(signal: Signal, body: bytes) -> tuple[int, str]:
    """(rejected items, error message) of a protobuf OTLP export response; (0, "") if none."""
    if not body:
        return 0, ""
    try:
        message = RESPONSE_TYPES[signal].FromString(body)
    except DecodeError:
        return 0, ""
    if not message.HasField("partial_success"):
        return 0, ""
    partial = message.partial_success
    return int(getattr(partial, REJECTED_FIELDS[signal])), str(partial.error_message)


def raise_for_partial_success(settings: Settings, batch: Batch, rejected: int, error_message: str) -> None:
    """Raise `PermanentError(rejected=)` when items were rejected; log a bare warning."""
    if rejected > 0:
        raise PermanentError(
            f"the server rejected {rejected} of {batch.items} items: {error_message or 'no reason given'}",
            rejected=rejected,
        )
    if error_message:
        settings.logger.warning(
            "The server accepted a batch with a warning.",
            extra={"component": settings.label, "signal": batch.signal.value, "warning": error_message},
        )


FACTORY = ExporterFactory(
    type="otlp_grpc",
    aliases=("otlp",),
    config_type=OTLPGRPCExporterConfig,
    description="Sends traces, metrics and logs to an OTLP/gRPC server.",
    signals={Signal.TRACES: Stability.BETA, Signal.METRICS: Stability.BETA, Signal.LOGS: Stability.BETA},
    create=OTLPGRPCExporter,
)
