"""Small fake component types for the config tests (the real ones are tested elsewhere)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec

from agent.component import (
    ConnectorFactory,
    ExporterFactory,
    Factory,
    ProcessorFactory,
    ReceiverFactory,
    Stability,
)
from agent.components import Registry
from agent.config import ConfigError, load_text
from agent.config.model import AgentConfig
from agent.config.types import ByteSize, Duration
from agent.model import Signal

ALL = {s: Stability.STABLE for s in Signal}
TRACES, METRICS, LOGS = Signal.TRACES, Signal.METRICS, Signal.LOGS


class GRPCConfig(msgspec.Struct, forbid_unknown_fields=True):
    endpoint: str = "localhost:4317"
    max_recv_msg_size_mib: Annotated[int, msgspec.Meta(ge=1)] = 4


class HTTPConfig(msgspec.Struct, forbid_unknown_fields=True):
    endpoint: str = "localhost:4318"
    max_request_body_size: ByteSize = ByteSize(20 * 1024 * 1024)


class ProtocolsConfig(msgspec.Struct, forbid_unknown_fields=True):
    grpc: GRPCConfig | None = None
    http: HTTPConfig | None = None


class OTLPConfig(msgspec.Struct, forbid_unknown_fields=True):
    protocols: ProtocolsConfig = msgspec.field(default_factory=ProtocolsConfig)
    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"protocols.grpc.auth", "protocols.http.auth"})

    def __post_init__(self) -> None:
        if self.protocols.grpc is None and self.protocols.http is None:
            raise ValueError("enable at least one protocol: add protocols.grpc or protocols.http")


def otlp_addresses(config: OTLPConfig) -> list[tuple[str, str]]:
    out = []
    if config.protocols.grpc is not None:
        out.append(("grpc", config.protocols.grpc.endpoint))
    if config.protocols.http is not None:
        out.append(("http", config.protocols.http.endpoint))
    return out


class SyslogTCP(msgspec.Struct, forbid_unknown_fields=True):
    listen_address: str = "0.0.0.0:54526"


class SyslogConfig(msgspec.Struct, forbid_unknown_fields=True):
    protocol: Literal["rfc5424", "rfc3164"] = "rfc5424"
    tcp: SyslogTCP = msgspec.field(default_factory=SyslogTCP)


class BatchConfig(msgspec.Struct, forbid_unknown_fields=True):
    timeout: Duration = Duration(0.2)
    send_batch_size: Annotated[int, msgspec.Meta(ge=0)] = 8192
    send_batch_max_size: Annotated[int, msgspec.Meta(ge=0)] = 0

    def __post_init__(self) -> None:
        if self.send_batch_max_size and self.send_batch_max_size < self.send_batch_size:
            raise ValueError("send_batch_max_size must be 0 or at least send_batch_size")


class Action(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    action: Literal["insert", "update", "upsert", "delete"]
    value: Any = None


class Rename(msgspec.Struct, forbid_unknown_fields=True):
    to: str
    ttl: int = 0


class AttributesConfig(msgspec.Struct, forbid_unknown_fields=True):
    actions: list[Action] = []
    renames: dict[str, Rename] = {}


class SamplingConfig(msgspec.Struct, forbid_unknown_fields=True):
    decision_wait: Duration = Duration(30.0)


class QueueConfig(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool = True
    queue_size: int = 1000
    #: A nested Struct may list its own Collector options.
    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"batch"})


class ClientTLS(msgspec.Struct, forbid_unknown_fields=True):
    insecure: bool = False


class OTLPExporterConfig(msgspec.Struct, forbid_unknown_fields=True):
    endpoint: str
    tls: ClientTLS = msgspec.field(default_factory=ClientTLS)
    sending_queue: QueueConfig = msgspec.field(default_factory=QueueConfig)
    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"auth"})


class KafkaConfig(msgspec.Struct, forbid_unknown_fields=True):
    brokers: list[str] = msgspec.field(default_factory=lambda: ["localhost:9092"])
    topic: str = "otlp_spans"


class DebugConfig(msgspec.Struct, forbid_unknown_fields=True):
    verbosity: Literal["basic", "normal", "detailed"] = "basic"


class Empty(msgspec.Struct, forbid_unknown_fields=True):
    pass


FACTORIES: list[Factory] = [
    ReceiverFactory("otlp", OTLPConfig, "otlp", signals=ALL, listen_addresses=otlp_addresses),
    ReceiverFactory("syslog", SyslogConfig, "syslog", signals={LOGS: Stability.BETA},
                    listen_addresses=lambda c: [("tcp", c.tcp.listen_address)]),
    ProcessorFactory("batch", BatchConfig, "batch", signals=ALL),
    ProcessorFactory("attributes", AttributesConfig, "attributes", signals=ALL),
    ProcessorFactory("tail_sampling", SamplingConfig, "tail", signals={TRACES: Stability.BETA}),
    ExporterFactory("otlp_grpc", OTLPExporterConfig, "otlp", aliases=("otlp",), signals=ALL),
    ExporterFactory("kafka", KafkaConfig, "kafka", signals=ALL),
    ExporterFactory("debug", DebugConfig, "debug", signals=ALL),
    ExporterFactory("prometheus", Empty, "prom", signals={METRICS: Stability.BETA}),
    ConnectorFactory("spanmetrics", Empty, "spanmetrics", signals={(TRACES, METRICS): Stability.ALPHA}),
    ConnectorFactory("count", Empty, "count",
                     signals={(TRACES, METRICS): Stability.ALPHA, (LOGS, METRICS): Stability.ALPHA}),
    ConnectorFactory("forward", Empty, "forward",
                     signals={(TRACES, TRACES): Stability.BETA, (METRICS, METRICS): Stability.BETA}),
    # The same type as an exporter too, for the ambiguous-id check.
    ExporterFactory("forward", Empty, "forward", signals=ALL),
]
REGISTRY = Registry(FACTORIES)

#: A valid config that other snippets are merged over.
BASE = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
exporters:
  debug:
service:
  telemetry:
    metrics:
      address: ""
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
"""


def load(*texts: str, **environ: str) -> AgentConfig:
    return load_text(*texts, registry=REGISTRY, environ=environ)


def problems(*texts: str, **environ: str) -> list[str]:
    """Every problem of the config merged from `texts`; fails the test when it loads."""
    try:
        load_text(*texts, registry=REGISTRY, environ=environ)
    except ConfigError as err:
        return err.problems
    raise AssertionError("the config loaded without problems")
