"""The k8sattributes processor: informers at start, association and enrichment per batch."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.component import Consumer, Settings, TaskOwner
from agent.errors import StartError
from agent.model import Batch, Signal
from agent.model import attrs as kv
from agent.processors.k8sattributes import FieldExtractConfig, K8sAttributesConfig
from agent.processors.k8sattributes.client import SERVICE_ACCOUNT_DIR, ApiConfig, KubeApi, KubeApiError
from agent.processors.k8sattributes.informer import Informer
from agent.processors.k8sattributes.pods import LabelStore, Pod, PodTable, image_name_and_tag

_GO_GROUP = re.compile(r"\$\{?(\w+)\}?")


@dataclass(frozen=True)
class _FieldRule:
    kind: str  # labels | annotations
    source: str  # pod | namespace | node
    key: str
    regex: re.Pattern[str] | None
    tag_name: str

    @classmethod
    def of(cls, kind: str, c: FieldExtractConfig) -> _FieldRule:
        # tag_name refers to key_regex groups the Go way ($1, ${name}); Python writes \g<1>.
        tag = _GO_GROUP.sub(r"\\g<\1>", c.tag_name) if c.key_regex else c.tag_name
        return cls(kind, c.from_, c.key, re.compile(c.key_regex) if c.key_regex else None, tag)

    def extract(self, values: Mapping[str, str], out: dict[str, str]) -> None:
        if self.regex is None:
            if self.key in values:
                out[self.tag_name or f"k8s.{self.source}.{self.kind}.{self.key}"] = values[self.key]
            return
        for key, value in values.items():
            m = self.regex.fullmatch(key)
            if m:
                name = m.expand(self.tag_name) if self.tag_name else f"k8s.{self.source}.{self.kind}.{key}"
                out[name] = value


def _peer_ip(address: str | None) -> str:
    """The IP of a peer address (`ip:port`, `[v6]:port`, `ipv4:1.2.3.4:5` from gRPC)."""
    if not address:
        return ""
    text = address
    for prefix in ("ipv4:", "ipv6:"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    if text.startswith("["):
        return text[1:].split("]", 1)[0].replace("%5B", "").replace("%5D", "")
    if text.count(":") == 1:
        return text.split(":", 1)[0]
    return text


class K8sAttributesProcessor:
    """Adds the metadata of each resource's pod; see the package docstring."""

    mutates_data = True

    def __init__(
        self, settings: Settings, config: K8sAttributesConfig, signal: Signal, next_consumer: Consumer,
        *, environ: Mapping[str, str] | None = None, api_config: ApiConfig | None = None,
        service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    ) -> None:
        self.config = config
        self._settings = settings
        self._logger = settings.logger
        self._label = settings.label
        self._next = next_consumer
        self._environ = os.environ if environ is None else environ
        self._api_config = api_config
        self._sa_dir = service_account_dir
        self.pods = PodTable(excluded=[re.compile(p.name) for p in config.exclude.pods])
        self.namespaces = LabelStore()
        self.nodes = LabelStore()
        self.informers: list[Informer] = []
        self._tasks = TaskOwner(settings.label, settings.logger, settings.report_status)
        self._session: Any = None
        self._metadata = frozenset(config.extract.metadata)
        self._fields = [
            *(_FieldRule.of("labels", c) for c in config.extract.labels),
            *(_FieldRule.of("annotations", c) for c in config.extract.annotations),
        ]
        pipeline = str(settings.pipeline) if settings.pipeline is not None else ""
        counter = settings.metrics.k8sattributes_associations
        self._found = counter.labels(settings.label, pipeline, signal.value, "found")
        self._not_found = counter.labels(settings.label, pipeline, signal.value, "not_found")
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._started or self.config.passthrough:
            self._started = True
            return
        self._started = True
        try:
            api_config = self._api_config or ApiConfig.load(self.config.auth_type, self._environ, self._sa_dir)
            node = self._node_filter()
        except (KubeApiError, OSError, StartError) as exc:
            if self.config.wait_for_metadata:
                raise StartError(f"k8sattributes {self._label}: {exc}") from exc
            self._logger.error(
                "Cannot reach the Kubernetes API; batches pass without pod metadata.",
                extra={"component": self._label, "error": str(exc)},
            )
            self._settings.report_status(self._label, exc)
            return
        import aiohttp

        self._session = aiohttp.ClientSession()
        api = KubeApi(api_config, self._session)
        ns = self.config.filter.namespace
        pod_path = f"/api/v1/namespaces/{ns}/pods" if ns else "/api/v1/pods"
        pod_params = {"fieldSelector": f"spec.nodeName={node}"} if node else {}
        self.informers.append(Informer(api, pod_path, pod_params, self.pods, self._logger, self._label))
        sources = {r.source for r in self._fields}
        if "namespace" in sources:
            self.informers.append(Informer(api, "/api/v1/namespaces", {}, self.namespaces, self._logger, self._label))
        if "node" in sources:
            params = {"fieldSelector": f"metadata.name={node}"} if node else {}
            self.informers.append(Informer(api, "/api/v1/nodes", params, self.nodes, self._logger, self._label))
        for informer in self.informers:
            self._tasks.spawn(f"watch {informer.path}", informer.run())
        if self.config.wait_for_metadata:
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(i.synced.wait() for i in self.informers)),
                    float(self.config.wait_for_metadata_timeout),
                )
            except TimeoutError:
                await self.shutdown()
                raise StartError(
                    f"k8sattributes {self._label}: the pod metadata did not arrive within "
                    f"wait_for_metadata_timeout ({float(self.config.wait_for_metadata_timeout):g}s)"
                ) from None
        self._logger.info(
            "Watching pods for their metadata.",
            extra={"component": self._label, "server": api_config.server, "node": node or "(all)"},
        )

    def _node_filter(self) -> str:
        var = self.config.filter.node_from_env_var
        if not var:
            return ""
        node = self._environ.get(var, "").strip()
        if not node:
            raise StartError(f"filter.node_from_env_var names {var}, which is not set (set it from spec.nodeName)")
        return node

    async def shutdown(self) -> None:
        await self._tasks.close(timeout=5.0)
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # -- association -------------------------------------------------------------------

    def find_pod(self, attributes: Mapping[str, Any], peer_ip: str) -> tuple[Pod | None, str]:
        """The pod of a resource by the association rules, and the IP it was found by."""
        table = self.pods
        for rule in self.config.pod_association:
            values: dict[str, str] = {}
            for source in rule.sources:
                value = peer_ip if source.from_ == "connection" else str(attributes.get(source.name) or "")
                if not value:
                    break
                values["connection" if source.from_ == "connection" else source.name] = value
            else:
                pod, ip = self._lookup(table, values)
                if pod is not None:
                    return pod, ip
        return None, ""

    @staticmethod
    def _lookup(table: PodTable, values: dict[str, str]) -> tuple[Pod | None, str]:
        pod = None
        ip = ""
        for name, value in values.items():
            if name == "k8s.pod.uid":
                found = table.by_uid.get(value)
            elif name == "container.id":
                found = table.by_container.get(value)
            elif name == "k8s.pod.name":
                found = table.by_name.get((values.get("k8s.namespace.name", ""), value))
            elif name == "k8s.namespace.name":
                continue
            else:
                found = table.by_ip.get(value)
                ip = value
            if found is None or (pod is not None and found is not pod):
                return None, ""
            pod = found
        return pod, ip

    def pod_attributes(self, pod: Pod, resource: Mapping[str, Any], ip: str) -> dict[str, str]:
        want = self._metadata
        out: dict[str, str] = {}
        for name, value in (
            ("k8s.namespace.name", pod.namespace), ("k8s.pod.name", pod.name), ("k8s.pod.uid", pod.uid),
            ("k8s.pod.start_time", pod.start_time), ("k8s.node.name", pod.node),
        ):
            if name in want and value:
                out[name] = value
        if "k8s.pod.ip" in want and (ip or pod.ips):
            out["k8s.pod.ip"] = ip or pod.ips[0]
        for name, value in pod.workloads().items():
            if name in want:
                out[name] = value
        container = self._container(pod, resource)
        if container:
            if "k8s.container.name" in want:
                out["k8s.container.name"] = container
            image = pod.images.get(container, "")
            if image:
                image_name, tag = image_name_and_tag(image)
                if "container.image.name" in want:
                    out["container.image.name"] = image_name
                if "container.image.tag" in want and tag:
                    out["container.image.tag"] = tag
        for rule in self._fields:
            if rule.source == "pod":
                values = pod.labels if rule.kind == "labels" else pod.annotations
            else:
                store = self.namespaces if rule.source == "namespace" else self.nodes
                key = pod.namespace if rule.source == "namespace" else pod.node
                values = (store.labels if rule.kind == "labels" else store.annotations).get(key, {})
            rule.extract(values, out)
        return out

    @staticmethod
    def _container(pod: Pod, resource: Mapping[str, Any]) -> str:
        named = str(resource.get("k8s.container.name") or "")
        if named in pod.images:
            return named
        cid = str(resource.get("container.id") or "")
        if cid in pod.container_ids:
            return pod.container_ids[cid]
        if len(pod.images) == 1:
            return next(iter(pod.images))
        return ""

    # -- the data path -----------------------------------------------------------------

    async def consume(self, batch: Batch) -> None:
        peer = _peer_ip(batch.client.address)
        if self.config.passthrough:
            if peer:
                for resource in kv.resources(batch.signal, batch.mutable()):
                    kv.insert(resource.attributes, "k8s.pod.ip", peer)
        elif len(self.pods):
            found = missing = 0
            for resource in kv.resources(batch.signal, batch.mutable()):
                attributes = resource.attributes
                present = {a.key: kv.to_python(a.value) for a in attributes}
                pod, ip = self.find_pod(present, peer)
                if pod is None:
                    missing += 1
                    continue
                found += 1
                keys = list(present)
                for name, value in self.pod_attributes(pod, present, ip).items():
                    kv.insert(attributes, name, value, keys)
            if found:
                self._found.inc(found)
            if missing:
                self._not_found.inc(missing)
        await self._next.consume(batch)
