"""`resource`: change the resource attributes of every batch (traces, metrics, logs).

`attributes` is a list of actions of the same shape and meaning as the `attributes`
processor's `actions` (insert, update, upsert with value / from_attribute / from_context /
default_value; delete and hash by key or pattern; extract; convert), applied to the
attributes of each resource in the batch, in order.

    processors:
      resource:
        attributes:
          - {key: deployment.environment.name, value: production, action: upsert}
          - {key: k8s.cluster.name, from_context: metadata.x-cluster, action: insert}
          - {key: process.command_line, action: delete}

Batches are changed in place (`mutates_data = True`); items are never added or removed.
"""

from __future__ import annotations

from typing import Any

import msgspec

from agent.component import Consumer, ProcessorFactory, Settings, Stability
from agent.model import Batch, Signal
from agent.model.attrs import resources
from agent.processors.attributes import ActionConfig, Actions


class ResourceConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: What to do to each resource's attributes, in order.
    attributes: list[ActionConfig]

    def __post_init__(self) -> None:
        if not self.attributes:
            raise ValueError("attributes must hold at least one action")


class ResourceProcessor:
    """Runs the configured actions on every resource of each batch, in place."""

    mutates_data = True

    def __init__(self, config: ResourceConfig, signal: Signal, next_consumer: Consumer) -> None:
        self._next = next_consumer
        self._signal = signal
        self._actions = Actions(config.attributes)

    async def start(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def consume(self, batch: Batch) -> None:
        actions = self._actions
        actions.prepare(batch.client)
        for resource in resources(self._signal, batch.mutable()):
            actions.apply(resource.attributes)
        await self._next.consume(batch)


def _create(settings: Settings, config: Any, signal: Signal, next_consumer: Consumer) -> ResourceProcessor:
    assert isinstance(config, ResourceConfig)
    return ResourceProcessor(config, signal, next_consumer)


FACTORY = ProcessorFactory(
    type="resource",
    config_type=ResourceConfig,
    description="Inserts, updates, upserts, deletes, hashes, extracts and converts resource attributes.",
    signals={Signal.TRACES: Stability.BETA, Signal.METRICS: Stability.BETA, Signal.LOGS: Stability.BETA},
    create=_create,
)

__all__ = ["FACTORY", "ResourceConfig", "ResourceProcessor"]
