"""The pod table: pods indexed by IP, UID, name and container id, and what to add for one.

Deleted pods stay findable for `grace` seconds, because telemetry a pod sent just before it
ended often arrives after the API said it was gone.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_CRONJOB_JOB = re.compile(r"^(.+)-\d{6,}$")
_HASH_SUFFIX = re.compile(r"^(.+)-[0-9a-z]{5,10}$")


def image_name_and_tag(image: str) -> tuple[str, str]:
    """`registry/repo/name:tag@sha256:...` → (`registry/repo/name`, `tag`); tag "latest" if none."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "latest" if "@" not in image else ""


@dataclass
class Pod:
    """What the processor needs of one pod object."""

    uid: str
    name: str
    namespace: str
    node: str
    ips: tuple[str, ...]
    host_network: bool
    start_time: str
    labels: dict[str, str]
    annotations: dict[str, str]
    owners: dict[str, str]  # kind → name (controllers only)
    images: dict[str, str]  # container name → image
    container_ids: dict[str, str]  # container id (no runtime prefix) → container name
    template_hash: str = ""

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> Pod:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        ips = [p.get("ip", "") for p in status.get("podIPs") or []]
        if status.get("podIP") and status["podIP"] not in ips:
            ips.insert(0, status["podIP"])
        owners = {
            str(o.get("kind")): str(o.get("name"))
            for o in meta.get("ownerReferences") or [] if o.get("controller", True)
        }
        container_ids = {}
        for cs in [*(status.get("containerStatuses") or []), *(status.get("initContainerStatuses") or [])]:
            cid = str(cs.get("containerID") or "")
            if cid:
                container_ids[cid.split("://", 1)[-1]] = str(cs.get("name", ""))
        labels = dict(meta.get("labels") or {})
        return cls(
            uid=str(meta.get("uid", "")), name=str(meta.get("name", "")), namespace=str(meta.get("namespace", "")),
            node=str(spec.get("nodeName") or ""), ips=tuple(ip for ip in ips if ip),
            host_network=bool(spec.get("hostNetwork")), start_time=str(status.get("startTime") or ""),
            labels=labels, annotations=dict(meta.get("annotations") or {}), owners=owners,
            images={str(c.get("name")): str(c.get("image", "")) for c in spec.get("containers") or []},
            container_ids=container_ids, template_hash=labels.get("pod-template-hash", ""),
        )

    def workloads(self) -> dict[str, str]:
        """Owner names by attribute: replicaset, deployment, statefulset, daemonset, job, cronjob."""
        out = {}
        rs = self.owners.get("ReplicaSet")
        if rs:
            out["k8s.replicaset.name"] = rs
            if self.template_hash and rs.endswith("-" + self.template_hash):
                out["k8s.deployment.name"] = rs[: -len(self.template_hash) - 1]
            elif m := _HASH_SUFFIX.match(rs):
                out["k8s.deployment.name"] = m.group(1)
        if "StatefulSet" in self.owners:
            out["k8s.statefulset.name"] = self.owners["StatefulSet"]
        if "DaemonSet" in self.owners:
            out["k8s.daemonset.name"] = self.owners["DaemonSet"]
        job = self.owners.get("Job")
        if job:
            out["k8s.job.name"] = job
            if m := _CRONJOB_JOB.match(job):
                out["k8s.cronjob.name"] = m.group(1)
        return out


@dataclass
class PodTable:
    """Pods by UID, with indexes; excluded pod names never enter."""

    excluded: list[re.Pattern[str]] = field(default_factory=list)
    grace: float = 120.0
    clock: Callable[[], float] = time.monotonic
    by_uid: dict[str, Pod] = field(default_factory=dict)
    by_ip: dict[str, Pod] = field(default_factory=dict)
    by_name: dict[tuple[str, str], Pod] = field(default_factory=dict)
    by_container: dict[str, Pod] = field(default_factory=dict)
    _deleted: deque[tuple[float, str]] = field(default_factory=deque)

    def replace(self, objects: list[dict[str, Any]]) -> None:
        for d in (self.by_uid, self.by_ip, self.by_name, self.by_container):
            d.clear()
        self._deleted.clear()
        for obj in objects:
            self.upsert(obj)

    def upsert(self, obj: dict[str, Any]) -> None:
        pod = Pod.from_object(obj)
        if not pod.uid or any(p.search(pod.name) for p in self.excluded):
            return
        old = self.by_uid.get(pod.uid)
        if old is not None:
            self._unindex(old)
        self.by_uid[pod.uid] = pod
        self._index(pod)
        self._purge()

    def delete(self, obj: dict[str, Any]) -> None:
        uid = str((obj.get("metadata") or {}).get("uid", ""))
        if uid in self.by_uid:
            self._deleted.append((self.clock(), uid))
        self._purge()

    def _purge(self) -> None:
        now = self.clock()
        while self._deleted and now - self._deleted[0][0] >= self.grace:
            _, uid = self._deleted.popleft()
            pod = self.by_uid.pop(uid, None)
            if pod is not None:
                self._unindex(pod)

    def _index(self, pod: Pod) -> None:
        if not pod.host_network:  # host-network pods share the node's IP
            for ip in pod.ips:
                self.by_ip[ip] = pod
        self.by_name[(pod.namespace, pod.name)] = pod
        for cid in pod.container_ids:
            self.by_container[cid] = pod

    def _unindex(self, pod: Pod) -> None:
        for ip in pod.ips:
            if self.by_ip.get(ip) is pod:
                del self.by_ip[ip]
        if self.by_name.get((pod.namespace, pod.name)) is pod:
            del self.by_name[(pod.namespace, pod.name)]
        for cid in pod.container_ids:
            if self.by_container.get(cid) is pod:
                del self.by_container[cid]

    def __len__(self) -> int:
        return len(self.by_uid)


@dataclass
class LabelStore:
    """Labels and annotations of namespaces or nodes, by name."""

    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    annotations: dict[str, dict[str, str]] = field(default_factory=dict)

    def replace(self, objects: list[dict[str, Any]]) -> None:
        self.labels.clear()
        self.annotations.clear()
        for obj in objects:
            self.upsert(obj)

    def upsert(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        self.labels[name] = dict(meta.get("labels") or {})
        self.annotations[name] = dict(meta.get("annotations") or {})

    def delete(self, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name", ""))
        self.labels.pop(name, None)
        self.annotations.pop(name, None)
