"""`jaeger`: send traces to Jaeger, over OTLP/gRPC (Jaeger 2) or the api_v2 gRPC API (Jaeger 1).

`protocol: otlp` (the default) is the `otlp_grpc` exporter itself: Jaeger 2 collectors take
OTLP natively, on port 4317. `protocol: grpc` converts every resource's spans to one
`jaeger.api_v2.Batch` (the OpenTelemetry spec's Jaeger mapping, see `translate.py`) and
calls `jaeger.api_v2.CollectorService/PostSpans` on a Jaeger 1 collector, port 14250.
An `endpoint` without a port gets the protocol's port.

```yaml
exporters:
  jaeger:
    protocol: grpc                    # otlp (default) or grpc (api_v2)
    endpoint: jaeger-collector:14250  # https:// or http:// sets TLS on or off
    tls: {ca_file: /etc/flowglass/jaeger-ca.pem}
    headers: {x-tenant: ml-team}
    compression: gzip                 # default: gzip for otlp, none for grpc
    sending_queue: {queue_size: 1000}
    retry_on_failure: {max_elapsed_time: 5m}
```

Every other option, TLS handling and the gRPC status classification are `otlp_grpc`'s:
UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, CANCELLED, OUT_OF_RANGE and DATA_LOSS (and
RESOURCE_EXHAUSTED with RetryInfo) are retried, every other status is permanent.

Guarantees (`protocol: grpc`): a batch holding several resources is sent as one PostSpans
call per resource; when a call fails and the batch is retried, the calls that succeeded are
not made again, and a resource refused permanently does not stop the others (its spans
are counted failed, the rest sent). A batch is counted sent only once every call of it
succeeded.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from agent.component import Exporter, ExporterFactory, Settings, Stability
from agent.exporters.otlp_grpc import OTLPGRPCExporter, OTLPGRPCExporterConfig
from agent.model import Signal

#: The port an endpoint without one gets, per protocol.
DEFAULT_PORTS = {"otlp": 4317, "grpc": 14250}


class JaegerExporterConfig(OTLPGRPCExporterConfig):
    """`otlp_grpc`'s options plus `protocol`, the wire protocol to the collector.

    The Collector's old `jaeger` exporter spoke only api_v2; `protocol` is Flowglass's own.
    """

    __upstream_options__: ClassVar[frozenset[str]] = OTLPGRPCExporterConfig.__upstream_options__

    protocol: Literal["otlp", "grpc"] = "otlp"
    #: "" = the protocol's default: gzip for OTLP (as `otlp_grpc`), none for api_v2, since
    #: older Jaeger 1 collectors have no gzip decompressor (jaegertracing/jaeger#3235) and
    #: would refuse every request.
    compression: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.compression:
            self.compression = "gzip" if self.protocol == "otlp" else "none"

    def target(self) -> tuple[str, bool]:
        """The gRPC target (with the protocol's default port when none is given) and TLS."""
        target, tls = super().target()
        return with_default_port(target, DEFAULT_PORTS[self.protocol]), tls


def with_default_port(target: str, port: int) -> str:
    """`target` with `:port` added when it names no port (`host`, `[::1]`, a bare IPv6)."""
    if "/" in target:  # a name-resolver URI (dns:///host:port, unix:/path) is used as it is
        return target
    if target.startswith("["):
        return target if "]:" in target else f"{target}:{port}"
    colons = target.count(":")
    if colons == 0:
        return f"{target}:{port}"
    if colons > 1:  # a bare IPv6 address
        return f"[{target}]:{port}"
    return target


def create(settings: Settings, config: JaegerExporterConfig) -> Exporter:
    if config.protocol == "grpc":
        from agent.exporters.jaeger.exporter import JaegerGRPCExporter

        return JaegerGRPCExporter(settings, config)
    return OTLPGRPCExporter(settings, config)


FACTORY = ExporterFactory(
    type="jaeger",
    config_type=JaegerExporterConfig,
    description="Sends traces to Jaeger over OTLP/gRPC or the Jaeger 1 api_v2 gRPC API.",
    signals={Signal.TRACES: Stability.BETA},
    create=create,
)
