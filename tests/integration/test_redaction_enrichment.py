"""An agent process (otlp → resourcedetection → k8sattributes → redaction → file) fed over raw
gRPC: the resource gets the model's lineage (from an MLflow MLmodel file and a model card),
the downward-API variables and the sending pod's metadata (from a local Kubernetes API
serving recorded responses, found by the peer IP), and personal data in attributes, log
bodies and URLs is masked before anything is written."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.model import Signal
from agent.testing import AgentProcess, any_value, attrs_dict, free_port, make_logs, make_traces
from tests.integration.helpers import raw_export, read_otlp_jsonl, wait_until
from tests.unit.processors.k8sattributes.fake_api import FakeKubeApi, fixture
from tests.unit.processors.resourcedetection.test_mlmodel import MLMODEL_SKLEARN, MODEL_CARD

TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
processors:
  resourcedetection:
    detectors: [k8snode, mlmodel]
    mlmodel:
      path: {model}
  k8sattributes:
    auth_type: kubeConfig
    wait_for_metadata: true
    extract:
      metadata: [k8s.pod.name, k8s.deployment.name, container.image.name, container.image.tag]
    pod_association:
      - sources: [{{from: connection}}]
  redaction:
    allow_all_keys: true
    blocked_key_patterns: [".*password.*"]
    detectors: [email, credit_card, us_ssn, ipv4]
    summary: info
    url_sanitizer:
      enabled: true
      attributes: [url.full]
exporters:
  file:
    path: {out}
    flush_interval: 50ms
service:
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    traces: {{receivers: [otlp], processors: [resourcedetection, k8sattributes, redaction], exporters: [file]}}
    logs: {{receivers: [otlp], processors: [resourcedetection, redaction], exporters: [file]}}
"""


@pytest.fixture
def kube_api() -> Iterator[FakeKubeApi]:
    """The fake API on its own loop in a thread (the agent under test is another process)."""
    api = FakeKubeApi(token="integration-token")
    pods = fixture("pod_list.json")
    me = copy.deepcopy(pods["items"][0])  # the fraud-scorer pod, sending from loopback
    me["status"]["podIP"] = "127.0.0.1"
    me["status"]["podIPs"] = [{"ip": "127.0.0.1"}]
    me["spec"]["containers"] = me["spec"]["containers"][:1]
    pods["items"] = [me]
    api.lists["/api/v1/pods"].append(pods)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-kube-api", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(api.start(), loop).result(10)
    try:
        yield api
    finally:
        asyncio.run_coroutine_threadsafe(api.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_lineage_pod_metadata_and_redaction_end_to_end(tmp_path: Path, kube_api: FakeKubeApi) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text(MLMODEL_SKLEARN)
    (model / "model-card.yaml").write_text(MODEL_CARD)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("\n".join([
        "current-context: t",
        f"clusters: [{{name: c, cluster: {{server: '{kube_api.url}'}}}}]",
        "contexts: [{name: t, context: {cluster: c, user: u}}]",
        "users: [{name: u, user: {token: integration-token}}]",
    ]) + "\n")
    port, telemetry = free_port(), free_port()
    out = tmp_path / "out.jsonl"
    env = {"KUBECONFIG": str(kubeconfig), "K8S_NAMESPACE": "ml-serving", "K8S_NODE_NAME": "gke-ml-pool-1-abcd"}
    agent = AgentProcess(CONFIG.format(port=port, model=model, out=out, telemetry=telemetry), telemetry, env=env).start()
    try:
        traces = make_traces(2, span_attrs={
            "user.email": "alice.smith@example.com", "db.password": "hunter2",
            "url.full": "https://api.example.com/users/1234/cards?pan=4111111111111111",
            "note": "ssn 078-05-1120 from 203.0.113.42",
        })
        logs = make_logs(1)
        record = logs.mutable().resource_logs[0].scope_logs[0].log_records[0]
        record.body.CopyFrom(any_value({"msg": "refund to 4111 1111 1111 1111", "user": {"mail": "bob@example.org"}}))
        assert raw_export(f"127.0.0.1:{port}", TRACE_METHOD, traces.serialize())[0].name == "OK"
        assert raw_export(f"127.0.0.1:{port}", LOGS_METHOD, logs.serialize())[0].name == "OK"

        def written() -> list[tuple[Signal, object]]:
            return list(read_otlp_jsonl(out))

        wait_until(lambda: {s for s, _ in written()} == {Signal.TRACES, Signal.LOGS}, what="traces and logs in the file")
        text = out.read_text()
        for secret in ("alice.smith@example.com", "hunter2", "4111111111111111", "4111 1111 1111 1111",
                       "078-05-1120", "203.0.113.42", "bob@example.org", "/users/1234"):
            assert secret not in text, secret
        by_signal = dict(written())
        rs = by_signal[Signal.TRACES].resource_spans[0]  # type: ignore[attr-defined]
        resource = attrs_dict(rs.resource.attributes)
        assert resource["ml.model.name"] == "fraud-detector" and resource["ml.model.version"] == "3.2.0"
        assert resource["ml.model.run_id"] == "override-run-42" and resource["ml.model.flavor"] == "sklearn"
        assert resource["ml.model.dataset"] == "transactions" and resource["ml.model.trained_by"] == "****"  # an e-mail
        assert resource["k8s.namespace.name"] == "ml-serving" and resource["k8s.node.name"] == "gke-ml-pool-1-abcd"
        assert resource["k8s.pod.name"] == "fraud-scorer-7d9f8c6b5-x2x4q"
        assert resource["k8s.deployment.name"] == "fraud-scorer"
        assert resource["container.image.tag"] == "3.2.0"
        span = attrs_dict(rs.scope_spans[0].spans[0].attributes)
        assert span["url.full"] == "https://api.example.com/users/*/cards"
        assert span["note"] == "ssn **** from ****"
        assert span["redaction.masked.count"] == 4
        assert kube_api.requests[0][0] == "/api/v1/pods"
        assert agent.metric("flowglass_processor_redaction_masked_values_total", component="redaction") >= 8
    finally:
        assert agent.stop() == 0, agent.output()
        agent.close()
