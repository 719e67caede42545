"""`k8sattributes`: add the pod's Kubernetes metadata to every resource (traces, metrics, logs).

The processor keeps a table of pods from the Kubernetes API (list, then watch; a `410 Gone`
lists again) and, for each resource of a batch, finds its pod by the `pod_association`
rules — each rule a list of `sources` that must all be present: `from: connection` (the
sender's peer IP) or `from: resource_attribute` with a `name` (`k8s.pod.ip`, `k8s.pod.uid`,
`container.id`, or `k8s.pod.name` together with `k8s.namespace.name`; any other name is
read as a pod IP). The first rule that finds a pod wins. The default rules are
`k8s.pod.ip`, then `k8s.pod.uid`, then the connection.

The pod's attributes are added where the resource does not have them yet: the default
`extract.metadata` set `k8s.namespace.name`, `k8s.pod.name`, `k8s.pod.uid`,
`k8s.pod.start_time`, `k8s.deployment.name`, `k8s.node.name`, `container.image.name`,
`container.image.tag` — and on request `k8s.replicaset.name`, `k8s.statefulset.name`,
`k8s.daemonset.name`, `k8s.job.name`, `k8s.cronjob.name`, `k8s.container.name`,
`k8s.pod.ip`. The container (for the image and its name) is the one named by the
resource's `k8s.container.name`, or the one whose id is its `container.id`, or the pod's
only container. `extract.labels` / `extract.annotations` copy labels and annotations of the
pod, its namespace or its node (`from: pod | namespace | node`; `key` or `key_regex`;
`tag_name` defaults to `k8s.<from>.labels.<key>` / `k8s.<from>.annotations.<key>`).

    processors:
      k8sattributes:
        auth_type: serviceAccount
        filter:
          node_from_env_var: K8S_NODE_NAME   # a DaemonSet agent watches its node's pods only
        extract:
          metadata: [k8s.namespace.name, k8s.pod.name, k8s.deployment.name, k8s.node.name]
          labels:
            - tag_name: app.team
              key: team
              from: namespace
        pod_association:
          - sources:
              - from: resource_attribute
                name: k8s.pod.ip
          - sources:
              - from: connection
        wait_for_metadata: true

`auth_type`: `serviceAccount` (in-cluster), `kubeConfig` (`$KUBECONFIG` or
`~/.kube/config`), `none`. With `passthrough: true` no API is used: only `k8s.pod.ip` is set
from the connection (for an agent in front of a gateway that does the lookup). With
`wait_for_metadata` the start waits (up to `wait_for_metadata_timeout`) for the first full
list; otherwise batches pass unchanged until it arrived. The RBAC it needs is in
`deploy/kubernetes/rbac-k8sattributes.yaml` (get/list/watch pods, namespaces, nodes).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import msgspec

from agent.component import Consumer, ProcessorFactory, Settings, Stability
from agent.config.types import Duration
from agent.model import Signal

#: Every metadata attribute Flowglass can extract, and the Collector's default set.
METADATA = (
    "k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.pod.start_time", "k8s.pod.ip",
    "k8s.deployment.name", "k8s.replicaset.name", "k8s.statefulset.name", "k8s.daemonset.name",
    "k8s.job.name", "k8s.cronjob.name", "k8s.node.name", "k8s.container.name",
    "container.image.name", "container.image.tag",
)
DEFAULT_METADATA = [
    "k8s.namespace.name", "k8s.pod.name", "k8s.pod.uid", "k8s.pod.start_time", "k8s.deployment.name",
    "k8s.node.name", "container.image.name", "container.image.tag",
]


class FieldExtractConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: Attribute name to write; default k8s.<from>.labels.<key> (or .annotations.).
    tag_name: str = ""
    key: str = ""
    key_regex: str = ""
    from_: Literal["pod", "namespace", "node"] = msgspec.field(default="pod", name="from")
    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"regex"})

    def __post_init__(self) -> None:
        if bool(self.key) == bool(self.key_regex):
            raise ValueError("set exactly one of key and key_regex")
        if self.key_regex:
            try:
                re.compile(self.key_regex)
            except re.error as exc:
                raise ValueError(f"key_regex {self.key_regex!r} is not a valid regular expression: {exc}") from None


class ExtractConfig(msgspec.Struct, forbid_unknown_fields=True):
    metadata: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_METADATA))
    labels: list[FieldExtractConfig] = msgspec.field(default_factory=list)
    annotations: list[FieldExtractConfig] = msgspec.field(default_factory=list)
    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"otel_annotations", "deployment_name_from_replicaset"})

    def __post_init__(self) -> None:
        for name in self.metadata:
            if name not in METADATA:
                raise ValueError(f"extract.metadata: {name!r} is not an attribute Flowglass extracts; known: {', '.join(METADATA)}")


class AssociationSource(msgspec.Struct, forbid_unknown_fields=True):
    from_: Literal["resource_attribute", "connection"] = msgspec.field(name="from")
    name: str = ""

    def __post_init__(self) -> None:
        if self.from_ == "resource_attribute" and not self.name:
            raise ValueError("a resource_attribute source needs the attribute's name")


class AssociationRule(msgspec.Struct, forbid_unknown_fields=True):
    sources: list[AssociationSource]

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("a pod_association rule needs at least one source")


class PodFilter(msgspec.Struct, forbid_unknown_fields=True):
    #: Environment variable with this node's name: only its pods are watched.
    node_from_env_var: str = ""
    #: Only pods of this namespace.
    namespace: str = ""
    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"node", "labels", "fields"})


class ExcludedPod(msgspec.Struct, forbid_unknown_fields=True):
    #: A regular expression on the pod name.
    name: str

    def __post_init__(self) -> None:
        try:
            re.compile(self.name)
        except re.error as exc:
            raise ValueError(f"exclude pod name {self.name!r} is not a valid regular expression: {exc}") from None


class ExcludeConfig(msgspec.Struct, forbid_unknown_fields=True):
    pods: list[ExcludedPod] = msgspec.field(
        default_factory=lambda: [ExcludedPod("jaeger-agent"), ExcludedPod("jaeger-collector")]
    )


def _default_rules() -> list[AssociationRule]:
    return [
        AssociationRule([AssociationSource("resource_attribute", "k8s.pod.ip")]),
        AssociationRule([AssociationSource("resource_attribute", "k8s.pod.uid")]),
        AssociationRule([AssociationSource("connection")]),
    ]


class K8sAttributesConfig(msgspec.Struct, forbid_unknown_fields=True):
    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"context", "kube_config_path"})

    auth_type: Literal["serviceAccount", "kubeConfig", "none"] = "serviceAccount"
    passthrough: bool = False
    filter: PodFilter = msgspec.field(default_factory=PodFilter)
    extract: ExtractConfig = msgspec.field(default_factory=ExtractConfig)
    pod_association: list[AssociationRule] = msgspec.field(default_factory=_default_rules)
    exclude: ExcludeConfig = msgspec.field(default_factory=ExcludeConfig)
    wait_for_metadata: bool = False
    wait_for_metadata_timeout: Duration = Duration(10.0)

    def __post_init__(self) -> None:
        if self.wait_for_metadata and self.wait_for_metadata_timeout <= 0:
            raise ValueError("wait_for_metadata_timeout must be greater than zero")
        if not self.pod_association:
            self.pod_association = _default_rules()


def _create(settings: Settings, config: Any, signal: Signal, next_consumer: Consumer) -> Any:
    from agent.processors.k8sattributes.processor import K8sAttributesProcessor

    assert isinstance(config, K8sAttributesConfig)
    return K8sAttributesProcessor(settings, config, signal, next_consumer)


FACTORY = ProcessorFactory(
    type="k8sattributes",
    config_type=K8sAttributesConfig,
    description="Adds the metadata of the pod each resource came from, found by peer IP or resource attributes.",
    signals={Signal.TRACES: Stability.BETA, Signal.METRICS: Stability.BETA, Signal.LOGS: Stability.BETA},
    create=_create,
)

__all__ = ["DEFAULT_METADATA", "FACTORY", "METADATA", "K8sAttributesConfig"]
