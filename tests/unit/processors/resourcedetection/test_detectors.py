"""The env, system, container and k8snode detectors against made-up machines."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.processors.resourcedetection.detectors import (
    CONTAINER_ATTRIBUTES,
    K8S_ATTRIBUTES,
    SYSTEM_ATTRIBUTES,
    DetectionError,
    Host,
    container_from_cgroup,
    container_from_mountinfo,
    detect_container,
    detect_env,
    detect_k8snode,
    detect_system,
    parse_resource_attributes,
)

ID = "3f4b1c2d5e6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e"
POD = "0f1e2d3c-4b5a-6978-8a9b-acbdcedfe0f1"


def host(tmp_path: Path, env: dict[str, str] | None = None, files: dict[str, str] | None = None, **kw: object) -> Host:
    for name, text in (files or {}).items():
        p = tmp_path / name.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return Host(environ=env or {}, root=tmp_path, **kw)  # type: ignore[arg-type]


# -- env ---------------------------------------------------------------------------------


def test_env_reads_otel_resource_attributes_percent_decoded_and_service_name_wins(tmp_path: Path) -> None:
    h = host(tmp_path, {"OTEL_RESOURCE_ATTRIBUTES": "service.name=a, deployment.environment=prod,team=ml%20platform%2Cinfra",
                        "OTEL_SERVICE_NAME": "fraud-scorer"})
    assert detect_env(h) == {"service.name": "fraud-scorer", "deployment.environment": "prod", "team": "ml platform,infra"}
    assert detect_env(host(tmp_path)) == {}


def test_env_rejects_an_entry_without_equals() -> None:
    with pytest.raises(DetectionError, match="not key=value: 'oops'"):
        parse_resource_attributes("a=1,oops")


# -- system ------------------------------------------------------------------------------


def _enabled(**changes: bool) -> dict[str, bool]:
    return {**SYSTEM_ATTRIBUTES, **changes}


def test_system_prefers_dns_then_os(tmp_path: Path) -> None:
    h = host(tmp_path, hostname=lambda: "node-3", fqdn=lambda: "node-3.dc1.example.com")
    assert detect_system(h, ["dns", "os"], _enabled()) == {"host.name": "node-3.dc1.example.com", "os.type": "linux"}
    assert detect_system(h, ["os"], _enabled())["host.name"] == "node-3"


def test_system_falls_back_when_dns_fails_and_fails_when_nothing_answers(tmp_path: Path) -> None:
    def broken() -> str:
        raise OSError("lookup timed out")

    h = host(tmp_path, hostname=lambda: "node-3", fqdn=broken)
    assert detect_system(h, ["dns", "os"], _enabled())["host.name"] == "node-3"
    with pytest.raises(DetectionError, match="dns: lookup timed out"):
        detect_system(host(tmp_path, hostname=broken, fqdn=broken), ["dns", "os"], _enabled())


def test_system_optional_attributes(tmp_path: Path) -> None:
    h = host(tmp_path, files={"/etc/machine-id": "0123456789abcdef0123456789abcdef\n"}, hostname=lambda: "n", fqdn=lambda: "n")
    out = detect_system(h, ["os"], _enabled(**{"host.id": True, "host.arch": True, "os.description": True, "os.type": False}))
    assert out["host.id"] == "0123456789abcdef0123456789abcdef"
    assert out["host.arch"] in ("amd64", "arm64") or out["host.arch"]
    assert "os.type" not in out and out["os.description"]


# -- container ---------------------------------------------------------------------------

CGROUP_V1_DOCKER = f"""12:devices:/docker/{ID}
11:memory:/docker/{ID}
1:name=systemd:/docker/{ID}
0::/system.slice/containerd.service
"""
CGROUP_V1_KUBEPODS = f"""11:cpuset:/kubepods/burstable/pod{POD}/{ID}
10:memory:/kubepods/burstable/pod{POD}/{ID}
"""
CGROUP_V2_DOCKER = f"0::/system.slice/docker-{ID}.scope\n"
CGROUP_V2_CONTAINERD = (
    f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD.replace('-', '_')}.slice/"
    f"cri-containerd-{ID}.scope\n"
)
CGROUP_V2_CRIO = f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD.replace('-', '_')}.slice/crio-{ID}.scope\n"
CGROUP_V2_PODMAN = f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n"
CGROUP_V2_PRIVATE = "0::/\n"
MOUNTINFO_DOCKER = f"""591 541 0:52 / / rw,relatime master:275 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC:/var/lib/docker/overlay2/l/DEF
612 591 254:1 /var/lib/docker/containers/{ID}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda1 rw
613 591 254:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw,relatime - ext4 /dev/vda1 rw
"""
MOUNTINFO_PODMAN = f"1034 1010 0:61 /containers/storage/overlay-containers/{ID}/userdata/hostname /etc/hostname rw - tmpfs tmpfs rw\n"
MOUNTINFO_CONTAINERD_SANDBOX = (
    f"1251 1233 254:1 /var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{ID}/hostname /etc/hostname rw - ext4 /dev/vda1 rw\n"
)


@pytest.mark.parametrize(
    ("cgroup", "runtime"),
    [
        (CGROUP_V1_DOCKER, "docker"),
        (CGROUP_V1_KUBEPODS, None),
        (CGROUP_V2_DOCKER, "docker"),
        (CGROUP_V2_CONTAINERD, "containerd"),
        (CGROUP_V2_CRIO, "cri-o"),
        (CGROUP_V2_PODMAN, "podman"),
    ],
    ids=["v1-docker", "v1-kubepods", "v2-docker", "v2-containerd", "v2-crio", "v2-podman-nested"],
)
def test_container_id_from_cgroup_v1_and_v2(cgroup: str, runtime: str | None) -> None:
    assert container_from_cgroup(cgroup) == (ID, runtime)


def test_container_id_from_mountinfo_when_cgroup_v2_hides_it(tmp_path: Path) -> None:
    h = host(tmp_path, files={"/proc/self/cgroup": CGROUP_V2_PRIVATE, "/proc/self/mountinfo": MOUNTINFO_DOCKER})
    assert detect_container(h, CONTAINER_ATTRIBUTES) == {"container.id": ID, "container.runtime": "docker"}
    assert container_from_mountinfo(MOUNTINFO_PODMAN) == (ID, "podman")


def test_a_pod_sandbox_id_is_not_taken_for_the_container_id() -> None:
    assert container_from_mountinfo(MOUNTINFO_CONTAINERD_SANDBOX) is None


def test_not_in_a_container_detects_nothing(tmp_path: Path) -> None:
    h = host(tmp_path, files={"/proc/self/cgroup": "0::/user.slice/user-1000.slice/session-2.scope\n",
                              "/proc/self/mountinfo": "22 1 254:1 / / rw - ext4 /dev/vda1 rw\n"})
    assert detect_container(h, CONTAINER_ATTRIBUTES) == {}
    assert detect_container(host(tmp_path / "empty"), CONTAINER_ATTRIBUTES) == {}


def test_container_attributes_can_be_disabled(tmp_path: Path) -> None:
    h = host(tmp_path, files={"/proc/self/cgroup": CGROUP_V2_DOCKER})
    assert detect_container(h, {"container.id": True, "container.runtime": False}) == {"container.id": ID}


# -- k8snode / downward API --------------------------------------------------------------


def test_downward_api_variables_become_k8s_attributes(tmp_path: Path) -> None:
    env = {"K8S_POD_NAME": "fraud-scorer-7d9f8c6b5-x2x4q", "K8S_POD_UID": POD, "K8S_NAMESPACE": "ml-serving",
           "K8S_NODE_NAME": "gke-ml-pool-1-abcd", "K8S_CONTAINER_NAME": "model", "K8S_DEPLOYMENT_NAME": "fraud-scorer"}
    assert detect_k8snode(host(tmp_path, env), "K8S_NODE_NAME", K8S_ATTRIBUTES) == {
        "k8s.pod.name": "fraud-scorer-7d9f8c6b5-x2x4q", "k8s.pod.uid": POD, "k8s.namespace.name": "ml-serving",
        "k8s.node.name": "gke-ml-pool-1-abcd", "k8s.container.name": "model", "k8s.deployment.name": "fraud-scorer",
    }


def test_node_name_from_the_configured_variable_and_namespace_from_the_service_account(tmp_path: Path) -> None:
    h = host(tmp_path, {"MY_NODE": "node-9", "POD_NAME": "p"},
             files={"/var/run/secrets/kubernetes.io/serviceaccount/namespace": "observability"})
    assert detect_k8snode(h, "MY_NODE", K8S_ATTRIBUTES) == {
        "k8s.node.name": "node-9", "k8s.pod.name": "p", "k8s.namespace.name": "observability",
    }


def test_outside_kubernetes_nothing_is_detected(tmp_path: Path) -> None:
    assert detect_k8snode(host(tmp_path, {"HOME": "/root"}), "K8S_NODE_NAME", K8S_ATTRIBUTES) == {}
