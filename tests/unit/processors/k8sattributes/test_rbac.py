"""The shipped RBAC grants exactly what the processor's informers use."""

from __future__ import annotations

from pathlib import Path

import yaml

RBAC = Path(__file__).resolve().parents[4] / "deploy" / "kubernetes" / "rbac-k8sattributes.yaml"


def test_rbac_allows_listing_and_watching_pods_namespaces_and_nodes() -> None:
    docs = list(yaml.safe_load_all(RBAC.read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    (rule,) = kinds["ClusterRole"]["rules"]
    assert rule["apiGroups"] == [""]
    assert set(rule["resources"]) == {"pods", "namespaces", "nodes"}
    assert set(rule["verbs"]) == {"get", "list", "watch"}
    binding = kinds["ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == kinds["ClusterRole"]["metadata"]["name"]
    subject = binding["subjects"][0]
    assert (subject["name"], subject["namespace"]) == (
        kinds["ServiceAccount"]["metadata"]["name"], kinds["ServiceAccount"]["metadata"]["namespace"])
