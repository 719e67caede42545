"""The `env`, `system`, `container` and `k8snode` detectors: resource attributes from the
environment, the host, the container runtime's traces in `/proc` and the Kubernetes
downward API.

Each detector is a function `(Host, options) -> dict[str, value]`. `Host` is what they read
— environment variables, a root directory for `/proc`, `/etc` and `/var/run`, and the two
host-name lookups — so that tests give them a made-up machine. A detector that finds
nothing (not in a container, not in Kubernetes) returns an empty dict; one that finds
something it cannot read raises `DetectionError`.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote


class DetectionError(Exception):
    """A detector found its source but could not make sense of it."""


@dataclass(frozen=True)
class Host:
    """What detectors read: environment variables, files under `root`, host-name lookups."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    root: Path = Path("/")
    hostname: Callable[[], str] = socket.gethostname
    fqdn: Callable[[], str] = socket.getfqdn

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def read(self, absolute: str, limit: int = 1 << 20) -> str | None:
        """The text of a file (at most `limit` bytes), or None when it does not exist."""
        try:
            with open(self.path(absolute), "rb") as f:
                return f.read(limit).decode("utf-8", "replace")
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return None


# -- env ---------------------------------------------------------------------------------


def parse_resource_attributes(text: str) -> dict[str, str]:
    """`OTEL_RESOURCE_ATTRIBUTES`: comma-separated `key=value`, values percent-encoded."""
    out: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise DetectionError(f"OTEL_RESOURCE_ATTRIBUTES has an entry that is not key=value: {item.strip()!r}")
        out[key] = unquote(value.strip())
    return out


def detect_env(host: Host, options: Any = None) -> dict[str, Any]:
    """`OTEL_RESOURCE_ATTRIBUTES`, then `OTEL_SERVICE_NAME` as `service.name` (it wins)."""
    out: dict[str, Any] = parse_resource_attributes(host.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    service = host.environ.get("OTEL_SERVICE_NAME", "").strip()
    if service:
        out["service.name"] = service
    return out


# -- system ------------------------------------------------------------------------------

#: Go's GOARCH names, which the Collector writes in host.arch.
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i386": "386",
         "i686": "386", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}

SYSTEM_ATTRIBUTES = {"host.name": True, "os.type": True, "host.id": False, "host.arch": False, "os.description": False}


def _os_type() -> str:
    name = sys.platform
    if name.startswith("linux"):
        return "linux"
    if name == "darwin":
        return "darwin"
    if name in ("win32", "cygwin"):
        return "windows"
    return name


def detect_system(host: Host, hostname_sources: list[str], enabled: Mapping[str, bool]) -> dict[str, Any]:
    """Host name from the first source that answers (`dns`: the FQDN, `os`: the kernel's)."""
    out: dict[str, Any] = {}
    if enabled["host.name"]:
        errors = []
        for source in hostname_sources:
            try:
                name = host.fqdn() if source == "dns" else host.hostname()
            except OSError as exc:
                errors.append(f"{source}: {exc}")
                continue
            if name and not (source == "dns" and name in ("localhost", "localhost.localdomain")):
                out["host.name"] = name
                break
            errors.append(f"{source}: no name")
        else:
            raise DetectionError(f"no host name source answered ({'; '.join(errors)})")
    if enabled["os.type"]:
        out["os.type"] = _os_type()
    if enabled["host.arch"]:
        machine = platform.machine().lower()
        out["host.arch"] = _ARCH.get(machine, machine)
    if enabled["os.description"]:
        out["os.description"] = f"{platform.system()} {platform.release()} {platform.version()}".strip()
    if enabled["host.id"]:
        for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
            text = host.read(path)
            if text and text.strip():
                out["host.id"] = text.strip()
                break
    return out


# -- container ---------------------------------------------------------------------------

CONTAINER_ATTRIBUTES = {"container.id": True, "container.runtime": True}

# A 64-hex id as an element of a cgroup path (the last one wins): ".../docker/<id>",
# "docker-<id>.scope", "cri-containerd-<id>.scope", "crio-<id>.scope", ".../kubepods/.../<id>",
# "libpod-<id>.scope/container" (rootless podman nests one level deeper).
_CGROUP_ID = re.compile(r"(?:^|[/:-])([0-9a-f]{64})(?:\.scope)?(?=/|$)")
# Files a runtime bind-mounts from the container's own directory (docker, podman); the
# containerd/CRI "sandboxes/<id>" mounts name the pod sandbox, not this container.
_MOUNT_ID = re.compile(r"/(?:docker/containers|overlay-containers|containers)/([0-9a-f]{64})/")


def _runtime(path: str) -> str | None:
    if "cri-containerd" in path or "containerd" in path:
        return "containerd"
    if "crio" in path:
        return "cri-o"
    if "libpod" in path or "overlay-containers" in path:
        return "podman"
    if "docker" in path:
        return "docker"
    return None


def container_from_cgroup(text: str) -> tuple[str, str | None] | None:
    """(id, runtime) from `/proc/self/cgroup` (v1 `N:ctrl:/path` and v2 `0::/path` lines)."""
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        path = parts[2].rstrip("/")
        ids = _CGROUP_ID.findall(path)
        if ids:
            return ids[-1], _runtime(path)
    return None


def container_from_mountinfo(text: str) -> tuple[str, str | None] | None:
    """(id, runtime) from `/proc/self/mountinfo` (cgroup v2 hosts hide the id in cgroup)."""
    for line in text.splitlines():
        m = _MOUNT_ID.search(line)
        if m:
            return m.group(1), _runtime(line)
    return None


def detect_container(host: Host, enabled: Mapping[str, bool]) -> dict[str, Any]:
    found = None
    cgroup = host.read("/proc/self/cgroup")
    if cgroup:
        found = container_from_cgroup(cgroup)
    if found is None:
        mountinfo = host.read("/proc/self/mountinfo")
        if mountinfo:
            found = container_from_mountinfo(mountinfo)
    if found is None:
        return {}
    out: dict[str, Any] = {}
    if enabled["container.id"]:
        out["container.id"] = found[0]
    if enabled["container.runtime"] and found[1]:
        out["container.runtime"] = found[1]
    return out


# -- k8snode / downward API --------------------------------------------------------------

#: Downward-API environment variables (first one set wins) → resource attribute.
K8S_VARIABLES: dict[str, tuple[str, ...]] = {
    "k8s.pod.name": ("K8S_POD_NAME", "POD_NAME"),
    "k8s.pod.uid": ("K8S_POD_UID", "POD_UID"),
    "k8s.namespace.name": ("K8S_NAMESPACE", "K8S_NAMESPACE_NAME", "K8S_POD_NAMESPACE", "POD_NAMESPACE"),
    "k8s.node.name": (),  # from node_from_env_var
    "k8s.node.uid": ("K8S_NODE_UID",),
    "k8s.container.name": ("K8S_CONTAINER_NAME", "CONTAINER_NAME"),
    "k8s.deployment.name": ("K8S_DEPLOYMENT_NAME",),
    "k8s.cluster.name": ("K8S_CLUSTER_NAME",),
}
K8S_ATTRIBUTES = dict.fromkeys(K8S_VARIABLES, True)
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def detect_k8snode(host: Host, node_from_env_var: str, enabled: Mapping[str, bool]) -> dict[str, Any]:
    """Pod, namespace and node from downward-API variables; the namespace also from the
    mounted service-account token's directory. Outside Kubernetes: nothing."""
    env = host.environ
    out: dict[str, Any] = {}
    for attribute, names in K8S_VARIABLES.items():
        if not enabled[attribute]:
            continue
        if attribute == "k8s.node.name":
            names = (node_from_env_var,)
        for name in names:
            value = env.get(name, "").strip()
            if value:
                out[attribute] = value
                break
    if enabled["k8s.namespace.name"] and "k8s.namespace.name" not in out and out:
        namespace = host.read(SERVICE_ACCOUNT_NAMESPACE)
        if namespace and namespace.strip():
            out["k8s.namespace.name"] = namespace.strip()
    return out
