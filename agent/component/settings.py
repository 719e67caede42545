"""What the agent hands a component when it creates one (never a user option).

`Config` is what users write; `Settings` is what the agent provides: the component's id,
kind and pipeline, a logger, the agent's metrics, and a way to report status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.component.ids import ComponentID, Kind, PipelineID
from agent.telemetry.metrics import AgentMetrics


def _ignore_status(component: str, error: BaseException | None) -> None:
    return None


@dataclass(frozen=True)
class Settings:
    id: ComponentID
    kind: Kind
    metrics: AgentMetrics
    logger: logging.Logger
    #: The pipeline a processor instance belongs to; None for shared components.
    pipeline: PipelineID | None = None
    #: Call with an exception when a background task of the component died (or None when
    #: it recovered); the health server reports it and the agent keeps running.
    report_status: Callable[[str, BaseException | None], None] = field(default=_ignore_status)
    #: True when `service.workers` > 1: listening sockets are opened with SO_REUSEPORT so
    #: that every worker process shares them (the kernel spreads connections).
    shared_ports: bool = False

    @property
    def label(self) -> str:
        """The `component` label value in the agent's metrics."""
        return str(self.id)

    @classmethod
    def for_test(cls, id: str, kind: Kind, pipeline: str | None = None) -> Settings:
        """Settings with a private metrics registry, for tests and benchmarks."""
        cid = ComponentID.parse(id)
        return cls(
            id=cid,
            kind=kind,
            metrics=AgentMetrics(),
            logger=logging.getLogger(f"agent.{kind.value}.{cid}"),
            pipeline=PipelineID.parse(pipeline) if pipeline else None,
        )
