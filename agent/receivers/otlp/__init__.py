"""`otlp` receiver: OTLP over gRPC and HTTP (protobuf and JSON), as the Collector's.

Signals: traces, metrics, logs — each served only when some pipeline uses the receiver for
it (a request for another signal gets gRPC UNIMPLEMENTED / HTTP 404).

```yaml
receivers:
  otlp:
    protocols:
      grpc:                      # null means defaults: localhost:4317
        endpoint: 0.0.0.0:4317
      http:
        endpoint: 0.0.0.0:4318
        cors:
          allowed_origins: ["https://*.example.com"]
```

Guarantees:
- a request is answered only after the pipeline's `consume()` returned or raised, and the
  answer follows DESIGN §4 (see `outcome.py`): retryable refusals carry a retry hint,
  partial refusals are a success with `partial_success`;
- gRPC requests are never deserialized twice: the raw bytes become the batch, and an OTLP
  exporter forwards them as they came;
- request bodies are bounded before and after decompression (`max_request_body_size` for
  HTTP, `max_recv_msg_size_mib` for gRPC);
- `shutdown()` refuses new requests (retryable), lets the ones in flight finish within a
  bounded grace, then closes the listeners.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import msgspec

from agent.component import Consumer, ReceiverFactory, Settings, Stability
from agent.config.tls import TLSServerConfig
from agent.config.types import ByteSize, Duration
from agent.model import Signal

if TYPE_CHECKING:
    from agent.receivers.otlp.receiver import OTLPReceiver

_MIB = 1024 * 1024


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """`host:port` → (host, port); `[::1]:4317` → ("::1", 4317); `:4317` → ("", 4317)."""
    host, sep, port_text = endpoint.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"endpoint {endpoint!r} must be host:port with a port from 0 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"endpoint {endpoint!r}: write an IPv6 address in brackets, as [::1]:4317")
    return host, int(port_text)


class KeepaliveServerParameters(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """gRPC server keepalive; 0 leaves gRPC's own default."""

    max_connection_idle: Duration = Duration(0)
    max_connection_age: Duration = Duration(0)
    max_connection_age_grace: Duration = Duration(0)
    time: Duration = Duration(0)
    timeout: Duration = Duration(0)


class KeepaliveEnforcementPolicy(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """How often clients may ping; 0 leaves gRPC's own default (5m)."""

    min_time: Duration = Duration(0)
    permit_without_stream: bool = False


class KeepaliveServerConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    server_parameters: KeepaliveServerParameters | None = None
    enforcement_policy: KeepaliveEnforcementPolicy | None = None


class GRPCServerConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    endpoint: str = "localhost:4317"
    transport: Literal["tcp"] = "tcp"
    #: Largest request accepted (MiB); larger ones get RESOURCE_EXHAUSTED. 0 means 4.
    max_recv_msg_size_mib: Annotated[int, msgspec.Meta(ge=0)] = 4
    #: Concurrent streams per connection; 0 means gRPC's default (unlimited).
    max_concurrent_streams: Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)] = 0
    read_buffer_size: ByteSize = ByteSize(512 * 1024)
    write_buffer_size: ByteSize = ByteSize(0)
    keepalive: KeepaliveServerConfig | None = None
    tls: TLSServerConfig | None = None
    include_metadata: bool = False

    def __post_init__(self) -> None:
        split_endpoint(self.endpoint)

    @property
    def max_recv_msg_size(self) -> int:
        """The request size limit in bytes."""
        return (self.max_recv_msg_size_mib or 4) * _MIB


class CORSConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    #: Origins allowed to send from a browser; `*` stands for any run of characters.
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    #: Request headers allowed besides the CORS-safelisted ones; `*` allows any.
    allowed_headers: list[str] = msgspec.field(default_factory=list)
    exposed_headers: list[str] = msgspec.field(default_factory=list)
    #: Seconds a browser may cache a preflight answer; 0 sends no Access-Control-Max-Age.
    max_age: Annotated[int, msgspec.Meta(ge=0)] = 0


class HTTPServerConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    endpoint: str = "localhost:4318"
    tls: TLSServerConfig | None = None
    cors: CORSConfig | None = None
    #: Largest body accepted, both as sent and after decompression; larger ones get 413.
    max_request_body_size: ByteSize = ByteSize(20 * _MIB)
    include_metadata: bool = False
    traces_url_path: str = "/v1/traces"
    metrics_url_path: str = "/v1/metrics"
    logs_url_path: str = "/v1/logs"
    #: Headers added to every response.
    response_headers: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        split_endpoint(self.endpoint)
        if self.max_request_body_size < 1:
            raise ValueError("max_request_body_size must be at least 1 byte")
        # Like the Collector, a path written without its leading slash still works.
        for name in ("traces_url_path", "metrics_url_path", "logs_url_path"):
            path = getattr(self, name)
            if not path.startswith("/"):
                setattr(self, name, "/" + path)
        paths = [self.traces_url_path, self.metrics_url_path, self.logs_url_path]
        if len(set(paths)) != len(paths):
            raise ValueError(
                "traces_url_path, metrics_url_path and logs_url_path must differ from each other"
            )

    def url_path(self, signal: Signal) -> str:
        return {
            Signal.TRACES: self.traces_url_path,
            Signal.METRICS: self.metrics_url_path,
            Signal.LOGS: self.logs_url_path,
        }[signal]


class ProtocolsConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A protocol is enabled when its key is present; `grpc:` with no value means defaults."""

    grpc: GRPCServerConfig | msgspec.UnsetType | None = msgspec.UNSET
    http: HTTPServerConfig | msgspec.UnsetType | None = msgspec.UNSET

    def __post_init__(self) -> None:
        if self.grpc is None:
            self.grpc = GRPCServerConfig()
        if self.http is None:
            self.http = HTTPServerConfig()


class OTLPReceiverConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    protocols: ProtocolsConfig = msgspec.field(default_factory=ProtocolsConfig)

    #: Collector options Flowglass does not implement (the config layer reports them).
    __upstream_options__: ClassVar[frozenset[str]] = frozenset(
        {
            "protocols.grpc.auth",
            "protocols.grpc.middlewares",
            "protocols.grpc.dialer",
            "protocols.http.auth",
            "protocols.http.middlewares",
            "protocols.http.compression_algorithms",
            "protocols.http.keepalive",
            "protocols.http.read_timeout",
            "protocols.http.read_header_timeout",
            "protocols.http.write_timeout",
            "protocols.http.idle_timeout",
        }
    )

    def __post_init__(self) -> None:
        if self.grpc is None and self.http is None:
            raise ValueError("enable at least one protocol: add protocols.grpc or protocols.http")

    @property
    def grpc(self) -> GRPCServerConfig | None:
        """The gRPC settings when gRPC is enabled."""
        grpc = self.protocols.grpc
        return grpc if isinstance(grpc, GRPCServerConfig) else None

    @property
    def http(self) -> HTTPServerConfig | None:
        """The HTTP settings when HTTP is enabled."""
        http = self.protocols.http
        return http if isinstance(http, HTTPServerConfig) else None


def create(
    settings: Settings, config: OTLPReceiverConfig, consumers: Mapping[Signal, Consumer]
) -> OTLPReceiver:
    # Imported here so that validating a config does not load gRPC and aiohttp.
    from agent.receivers.otlp.receiver import OTLPReceiver

    return OTLPReceiver(settings, config, consumers, reuse_port=settings.shared_ports)


def listen_addresses(config: OTLPReceiverConfig) -> list[tuple[str, str]]:
    addresses = []
    if config.grpc is not None:
        addresses.append(("grpc", config.grpc.endpoint))
    if config.http is not None:
        addresses.append(("http", config.http.endpoint))
    return addresses


FACTORY = ReceiverFactory(
    type="otlp",
    config_type=OTLPReceiverConfig,
    description="Receives traces, metrics and logs over OTLP/gRPC and OTLP/HTTP (protobuf and JSON).",
    signals={
        Signal.TRACES: Stability.BETA,
        Signal.METRICS: Stability.BETA,
        Signal.LOGS: Stability.BETA,
    },
    create=create,
    listen_addresses=listen_addresses,
)

__all__ = [
    "FACTORY",
    "CORSConfig",
    "GRPCServerConfig",
    "HTTPServerConfig",
    "KeepaliveEnforcementPolicy",
    "KeepaliveServerConfig",
    "KeepaliveServerParameters",
    "OTLPReceiverConfig",
    "ProtocolsConfig",
]
