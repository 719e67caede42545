"""`resourcedetection`: add what the agent can tell about where data comes from to every
resource (traces, metrics, logs).

Detectors run once, when the processor starts, side by side, within `timeout`; their
results merge in the order they are listed (the first detector to set an attribute wins).
Every batch's resources then get the detected attributes: with `override: true` (the
default, as in the Collector) they replace attributes the sender set, with `false` they
only fill in missing ones.

- `env`: `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`, percent-decoded), and `OTEL_SERVICE_NAME`
  as `service.name`.
- `system`: `host.name` from `hostname_sources` (`dns`, `os`; default both, in that order)
  and `os.type`; `host.id`, `host.arch`, `os.description` when enabled.
- `container`: `container.id` and `container.runtime` from `/proc/self/cgroup` (cgroup v1 and
  v2 forms: docker, containerd, CRI-O, podman, kubepods paths), else `/proc/self/mountinfo`.
- `k8snode`: the downward API — `k8s.pod.name`, `k8s.pod.uid`, `k8s.namespace.name` (or the
  service account's namespace file), `k8s.node.name` (from `node_from_env_var`, default
  `K8S_NODE_NAME`), `k8s.node.uid`, `k8s.container.name`, `k8s.deployment.name`,
  `k8s.cluster.name` — from `K8S_*` environment variables.
- `mlmodel` (Flowglass's own): model lineage from an MLflow `MLmodel` file or a
  `model-card.yaml` and `FLOWGLASS_MODEL_*` variables → `ml.model.*` (see `mlmodel.py`).

Every detector section takes `resource_attributes: {<name>: {enabled: bool}}`.

    processors:
      resourcedetection:
        detectors: [env, k8snode, container, mlmodel, system]
        timeout: 2s
        override: false
        mlmodel:
          path: /models/fraud-detector

A detector that finds nothing (not in a container, no model files) adds nothing. One that
fails — a malformed `OTEL_RESOURCE_ATTRIBUTES` or model file, no host name, or no answer
within `timeout` — makes the processor fail to start with a sentence naming it, as the
Collector's does. Unlike the Collector, a failure is not retried: these detectors read local
files and variables, whose errors do not go away by waiting. Batches are changed in place
(`mutates_data = True`); nothing is changed when nothing was detected.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec

from agent.component import Consumer, ProcessorFactory, Settings, Stability
from agent.config.types import Duration
from agent.model import Signal
from agent.processors.resourcedetection.detectors import (
    CONTAINER_ATTRIBUTES,
    K8S_ATTRIBUTES,
    SYSTEM_ATTRIBUTES,
)
from agent.processors.resourcedetection.mlmodel import ML_MODEL_ATTRIBUTES

DETECTOR_NAMES = ("env", "system", "container", "k8snode", "mlmodel")
#: Detectors of the Collector's resourcedetection processor that Flowglass does not have.
UPSTREAM_DETECTORS = frozenset({
    "docker", "ec2", "ecs", "eks", "elasticbeanstalk", "lambda", "azure", "aks", "gcp", "consul",
    "heroku", "openshift", "dynatrace", "akamai", "scaleway", "hetzner", "upcloud", "vultr",
    "oraclecloud", "digitalocean", "kubeadm", "alibaba_ecs", "openstack_nova", "ibmcloud",
})


class ResourceAttributeConfig(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool = True


ResourceAttributes = dict[str, ResourceAttributeConfig]


def _check_attributes(section: str, configured: ResourceAttributes, known: dict[str, bool]) -> None:
    for name in configured:
        if name not in known:
            raise ValueError(
                f"{section}.resource_attributes: unknown attribute {name!r}; known: {', '.join(sorted(known))}"
            )


def enabled_attributes(configured: ResourceAttributes, known: dict[str, bool]) -> dict[str, bool]:
    """Each known attribute with its default, overridden by `resource_attributes`."""
    return {name: configured[name].enabled if name in configured else default for name, default in known.items()}


class SystemConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: Where the host name comes from, tried in order: dns (the FQDN), os (the kernel's name).
    hostname_sources: list[Literal["dns", "os"]] = msgspec.field(default_factory=lambda: ["dns", "os"])
    resource_attributes: ResourceAttributes = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.hostname_sources:
            raise ValueError("system.hostname_sources must name at least one source (dns, os)")
        _check_attributes("system", self.resource_attributes, SYSTEM_ATTRIBUTES)


class ContainerConfig(msgspec.Struct, forbid_unknown_fields=True):
    resource_attributes: ResourceAttributes = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_attributes("container", self.resource_attributes, CONTAINER_ATTRIBUTES)


class K8sNodeConfig(msgspec.Struct, forbid_unknown_fields=True):
    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"auth_type", "context"})

    #: The environment variable holding the node name (set it from spec.nodeName).
    node_from_env_var: str = "K8S_NODE_NAME"
    resource_attributes: ResourceAttributes = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.node_from_env_var:
            raise ValueError("k8snode.node_from_env_var must name an environment variable")
        _check_attributes("k8snode", self.resource_attributes, K8S_ATTRIBUTES)


class MLModelConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: A model directory, or the path of its MLmodel or model-card.yaml; default $FLOWGLASS_MODEL_PATH.
    path: str = ""
    resource_attributes: ResourceAttributes = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_attributes("mlmodel", self.resource_attributes, ML_MODEL_ATTRIBUTES)


class ResourceDetectionConfig(msgspec.Struct, forbid_unknown_fields=True):
    __upstream_options__: ClassVar[frozenset[str]] = frozenset({
        "attributes", "refresh_interval", "endpoint", "headers", "tls", "auth", "compression",
        "proxy_url", "read_buffer_size", "write_buffer_size", *UPSTREAM_DETECTORS,
    })

    #: Detectors to run; the first to set an attribute wins.
    detectors: list[str] = msgspec.field(default_factory=lambda: ["env"])
    #: Replace attributes already on a resource (true) or only add missing ones (false).
    override: bool = True
    #: How long detection may take at start.
    timeout: Annotated[Duration, msgspec.Meta()] = Duration(5.0)
    system: SystemConfig = msgspec.field(default_factory=SystemConfig)
    container: ContainerConfig = msgspec.field(default_factory=ContainerConfig)
    k8snode: K8sNodeConfig = msgspec.field(default_factory=K8sNodeConfig)
    mlmodel: MLModelConfig = msgspec.field(default_factory=MLModelConfig)

    def __post_init__(self) -> None:
        for name in self.detectors:
            if name in UPSTREAM_DETECTORS:
                raise ValueError(
                    f"the Collector's detector {name!r} is not supported by Flowglass; "
                    f"supported detectors: {', '.join(DETECTOR_NAMES)}"
                )
            if name not in DETECTOR_NAMES:
                raise ValueError(f"unknown detector {name!r}; supported detectors: {', '.join(DETECTOR_NAMES)}")
        if len(set(self.detectors)) != len(self.detectors):
            raise ValueError("detectors lists a detector more than once")
        if self.timeout <= 0:
            raise ValueError("timeout must be greater than zero (for example 5s)")


def _create(settings: Settings, config: Any, signal: Signal, next_consumer: Consumer) -> Any:
    from agent.processors.resourcedetection.processor import ResourceDetectionProcessor

    assert isinstance(config, ResourceDetectionConfig)
    return ResourceDetectionProcessor(settings, config, signal, next_consumer)


FACTORY = ProcessorFactory(
    type="resourcedetection",
    config_type=ResourceDetectionConfig,
    description="Adds host, container, Kubernetes and model-lineage attributes detected at start to every resource.",
    signals={Signal.TRACES: Stability.BETA, Signal.METRICS: Stability.BETA, Signal.LOGS: Stability.BETA},
    create=_create,
)

__all__ = [
    "FACTORY",
    "ContainerConfig",
    "K8sNodeConfig",
    "MLModelConfig",
    "ResourceDetectionConfig",
    "SystemConfig",
    "enabled_attributes",
]
