"""The resourcedetection processor: detect once at start, merge into every resource."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from agent.component import Consumer, Settings
from agent.errors import StartError
from agent.model import Batch, Signal
from agent.model import attrs as kv
from agent.processors.resourcedetection import ResourceDetectionConfig, enabled_attributes
from agent.processors.resourcedetection.detectors import (
    CONTAINER_ATTRIBUTES,
    K8S_ATTRIBUTES,
    SYSTEM_ATTRIBUTES,
    DetectionError,
    Host,
    detect_container,
    detect_env,
    detect_k8snode,
    detect_system,
)
from agent.processors.resourcedetection.mlmodel import ML_MODEL_ATTRIBUTES, detect_mlmodel

Detect = Callable[[Host], dict[str, Any]]


def detector_functions(config: ResourceDetectionConfig) -> list[tuple[str, Detect]]:
    """The configured detectors, in order, bound to their options."""
    system, container, k8s, ml = config.system, config.container, config.k8snode, config.mlmodel
    table: dict[str, Detect] = {
        "env": detect_env,
        "system": lambda h: detect_system(
            h, list(system.hostname_sources), enabled_attributes(system.resource_attributes, SYSTEM_ATTRIBUTES)
        ),
        "container": lambda h: detect_container(h, enabled_attributes(container.resource_attributes, CONTAINER_ATTRIBUTES)),
        "k8snode": lambda h: detect_k8snode(
            h, k8s.node_from_env_var, enabled_attributes(k8s.resource_attributes, K8S_ATTRIBUTES)
        ),
        "mlmodel": lambda h: detect_mlmodel(h, ml.path, enabled_attributes(ml.resource_attributes, ML_MODEL_ATTRIBUTES)),
    }
    return [(name, table[name]) for name in config.detectors]


#: Detection threads; a DNS lookup that hangs past the timeout keeps one busy, not the loop.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="resourcedetection")


async def detect(config: ResourceDetectionConfig, host: Host) -> dict[str, Any]:
    """Run the detectors side by side within `config.timeout`; merge, first one wins.

    Raises StartError naming every detector that failed or did not answer in time.
    """
    loop = asyncio.get_running_loop()
    names = []
    futures = []
    for name, fn in detector_functions(config):
        names.append(name)
        futures.append(loop.run_in_executor(_POOL, fn, host))
    _, pending = await asyncio.wait(futures, timeout=float(config.timeout))
    problems = []
    merged: dict[str, Any] = {}
    for name, future in zip(names, futures, strict=True):
        if future in pending:
            future.cancel()
            problems.append(f"{name}: no answer within {float(config.timeout):g}s")
            continue
        exc = future.exception()
        if exc is not None:
            reason = str(exc) if isinstance(exc, DetectionError) else repr(exc)
            problems.append(f"{name}: {reason}")
            continue
        for key, value in future.result().items():
            merged.setdefault(key, value)
    if problems:
        raise StartError("resource detection failed — " + "; ".join(problems))
    return merged


class ResourceDetectionProcessor:
    """Adds the detected attributes to every resource of each batch."""

    mutates_data = True

    def __init__(
        self, settings: Settings, config: ResourceDetectionConfig, signal: Signal, next_consumer: Consumer,
        host: Host | None = None,
    ) -> None:
        self.config = config
        self._settings = settings
        self._signal = signal
        self._next = next_consumer
        self._host = host
        self._override = config.override
        #: (key, value) of every detected attribute; empty until start() detected them.
        self.detected: dict[str, Any] = {}
        self._values: list[KeyValue] = []
        self._started = False

    async def start(self) -> None:
        if self._started:
            return
        self.detected = await detect(self.config, self._host if self._host is not None else Host())
        self._values = [kv.key_value(k, v) for k, v in self.detected.items()]
        self._started = True
        self._settings.logger.info(
            "Detected resource attributes.",
            extra={"component": self._settings.label, "detectors": list(self.config.detectors),
                   "attributes": sorted(self.detected)},
        )

    async def shutdown(self) -> None:
        return None

    def apply(self, signal: Signal, message: Any) -> None:
        """Merge the detected attributes into every resource of an export request."""
        for resource in kv.resources(signal, message):
            attributes = resource.attributes
            keys = [a.key for a in attributes]
            for value in self._values:
                if value.key not in keys:
                    attributes.append(value)
                    keys.append(value.key)
                elif self._override:
                    kv.update(attributes, value.key, value.value)

    async def consume(self, batch: Batch) -> None:
        if self._values:
            self.apply(batch.signal, batch.mutable())
        await self._next.consume(batch)
