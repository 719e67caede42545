"""The seams: ids, Protocols, factories, settings and task ownership — nothing else."""

from __future__ import annotations

from agent.component.factory import (
    ConnectorFactory,
    ExporterFactory,
    Factory,
    ProcessorFactory,
    ReceiverFactory,
)
from agent.component.ids import ComponentID, Kind, PipelineID, Stability
from agent.component.protocols import (
    Component,
    Connector,
    Consumer,
    Exporter,
    Processor,
    Receiver,
)
from agent.component.settings import Settings
from agent.component.tasks import TaskOwner

__all__ = [
    "Component",
    "ComponentID",
    "Connector",
    "ConnectorFactory",
    "Consumer",
    "Exporter",
    "ExporterFactory",
    "Factory",
    "Kind",
    "PipelineID",
    "Processor",
    "ProcessorFactory",
    "Receiver",
    "ReceiverFactory",
    "Settings",
    "Stability",
    "TaskOwner",
]
