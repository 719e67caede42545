"""What a loaded, validated configuration is: the shape the graph and service build from.

`agent.config.load()` produces an `AgentConfig` or raises `ConfigError` with every problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from agent.component import ComponentID, Factory, Kind, PipelineID
from agent.config.types import Duration


class LogsTelemetryConfig(msgspec.Struct, forbid_unknown_fields=True):
    level: Literal["debug", "info", "warn", "warning", "error"] = "info"
    #: `json` for machines, `console` (text) for people; default: text on a terminal, else JSON.
    encoding: Literal["json", "console", "auto"] = "auto"


class MetricsTelemetryConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: `host:port` of the agent's own /metrics, /healthz and /readyz; "" turns them off.
    address: str = "127.0.0.1:8888"
    level: Literal["none", "basic", "normal", "detailed"] = "normal"


class TelemetryConfig(msgspec.Struct, forbid_unknown_fields=True):
    logs: LogsTelemetryConfig = msgspec.field(default_factory=LogsTelemetryConfig)
    metrics: MetricsTelemetryConfig = msgspec.field(default_factory=MetricsTelemetryConfig)


class PipelineSection(msgspec.Struct, forbid_unknown_fields=True):
    receivers: list[str] = msgspec.field(default_factory=list)
    processors: list[str] = msgspec.field(default_factory=list)
    exporters: list[str] = msgspec.field(default_factory=list)


class ServiceSection(msgspec.Struct, forbid_unknown_fields=True):
    pipelines: dict[str, PipelineSection] = msgspec.field(default_factory=dict)
    telemetry: TelemetryConfig = msgspec.field(default_factory=TelemetryConfig)
    extensions: list[str] = msgspec.field(default_factory=list)
    #: How long SIGTERM/SIGINT may take to drain what is buffered before the agent exits.
    shutdown_timeout: Duration = Duration(30.0)
    #: Worker processes sharing the listening ports (SO_REUSEPORT); 1 = this process only.
    workers: int = 1


@dataclass(frozen=True)
class ComponentConfig:
    id: ComponentID
    kind: Kind
    factory: Factory
    #: An instance of `factory.config_type`.
    config: Any


@dataclass(frozen=True)
class PipelineConfig:
    id: PipelineID
    receivers: tuple[ComponentID, ...]
    processors: tuple[ComponentID, ...]
    exporters: tuple[ComponentID, ...]


@dataclass
class AgentConfig:
    receivers: dict[ComponentID, ComponentConfig] = field(default_factory=dict)
    processors: dict[ComponentID, ComponentConfig] = field(default_factory=dict)
    exporters: dict[ComponentID, ComponentConfig] = field(default_factory=dict)
    connectors: dict[ComponentID, ComponentConfig] = field(default_factory=dict)
    extensions: dict[ComponentID, ComponentConfig] = field(default_factory=dict)
    pipelines: dict[PipelineID, PipelineConfig] = field(default_factory=dict)
    service: ServiceSection = field(default_factory=ServiceSection)
