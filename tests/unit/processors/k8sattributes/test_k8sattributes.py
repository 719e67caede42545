"""The `k8sattributes` processor against a local API server serving recorded responses:
list, watch (added, modified, deleted, bookmark), 410 Gone → re-list, association rules,
the metadata set, labels and annotations from pod, namespace and node, and the failure modes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.component import Kind, Settings
from agent.config.types import dec_hook
from agent.errors import StartError
from agent.model import Batch, ClientInfo, Signal
from agent.processors.k8sattributes import K8sAttributesConfig
from agent.processors.k8sattributes.client import ApiConfig
from agent.processors.k8sattributes.pods import PodTable, image_name_and_tag
from agent.processors.k8sattributes.processor import K8sAttributesProcessor, _peer_ip
from agent.testing import Sink, attrs_dict, make_logs, make_traces

from .fake_api import FakeKubeApi, fixture, watch_lines

ID = "k8sattributes/test"
NODE = "gke-ml-pool-1-abcd"
TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.test-token"
SCORER_UID = "5f0c2a1e-3b4d-4e6f-8a9b-0c1d2e3f4a5b"
PODS = "/api/v1/pods"


def convert(raw: dict[str, Any]) -> K8sAttributesConfig:
    return msgspec.convert(raw, K8sAttributesConfig, dec_hook=dec_hook)


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
current-context: test
clusters:
- name: local
  cluster:
    server: {server}
contexts:
- name: test
  context:
    cluster: local
    user: agent
    namespace: default
users:
- name: agent
  user:
    token: {TOKEN}
""")
    return path


@pytest.fixture
async def api() -> AsyncIterator[FakeKubeApi]:
    server = FakeKubeApi(token=TOKEN)
    server.lists[PODS].append(fixture("pod_list.json"))
    server.lists["/api/v1/namespaces"].append(fixture("namespace_list.json"))
    server.lists["/api/v1/nodes"].append(fixture("node_list.json"))
    await server.start()
    yield server
    await server.stop()


Make = Callable[..., Any]


@pytest.fixture
def make(api: FakeKubeApi, tmp_path: Path) -> Make:
    created: list[K8sAttributesProcessor] = []

    def _make(raw: dict[str, Any] | None = None, signal: Signal = Signal.TRACES, **kw: Any) -> tuple[K8sAttributesProcessor, Sink]:
        options = {"auth_type": "kubeConfig", "wait_for_metadata": True, "filter": {"node_from_env_var": "K8S_NODE_NAME"}}
        options.update(raw or {})
        sink = Sink()
        env = kw.pop("environ", {"KUBECONFIG": str(kubeconfig(tmp_path, api.url)), "K8S_NODE_NAME": NODE})
        proc = K8sAttributesProcessor(Settings.for_test(ID, Kind.PROCESSOR, signal.value), convert(options), signal, sink,
                                      environ=env, **kw)
        created.append(proc)
        return proc, sink

    return _make


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for the processor's table (fed by its own watch task) to reach a state."""

    async def _wait() -> None:
        # The pod table has no change notification to await; poll it, bounded by timeout.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.wait_for(_wait(), timeout)


def traces_from(address: str | None, resource: dict[str, Any] | None = None) -> Batch:
    batch = make_traces(1, resource_attrs=resource)
    return Batch(Signal.TRACES, batch.mutable(), client=ClientInfo(address=address))


def resource_of(sink: Sink, i: int = -1) -> dict[str, Any]:
    return attrs_dict(sink.batches[i].message.resource_spans[0].resource.attributes)


# -- listing and association -------------------------------------------------------------


async def test_list_then_enrich_by_the_peer_ip(api: FakeKubeApi, make: Make) -> None:
    proc, sink = make()
    await proc.start()
    try:
        await proc.consume(traces_from("10.52.1.14:53422", {"k8s.container.name": "model"}))
        attrs = resource_of(sink)
        assert {k: v for k, v in attrs.items() if k.startswith(("k8s.", "container."))} == {
            "k8s.container.name": "model",
            "k8s.namespace.name": "ml-serving",
            "k8s.pod.name": "fraud-scorer-7d9f8c6b5-x2x4q",
            "k8s.pod.uid": SCORER_UID,
            "k8s.pod.start_time": "2026-11-26T22:14:03Z",
            "k8s.node.name": NODE,
            "k8s.deployment.name": "fraud-scorer",
            "container.image.name": "us-docker.pkg.dev/acme/ml/fraud-scorer",
            "container.image.tag": "3.2.0",
        }
        # The DaemonSet filter: only this node's pods, with the token.
        path, query = api.requests[0]
        assert path == PODS and query == {"fieldSelector": f"spec.nodeName={NODE}"}
    finally:
        await proc.shutdown()


async def test_association_rules_by_uid_container_id_name_and_existing_attributes_win(api: FakeKubeApi, make: Make) -> None:
    proc, sink = make({"pod_association": [
        {"sources": [{"from": "resource_attribute", "name": "k8s.pod.uid"}]},
        {"sources": [{"from": "resource_attribute", "name": "container.id"}]},
        {"sources": [{"from": "resource_attribute", "name": "k8s.pod.name"},
                     {"from": "resource_attribute", "name": "k8s.namespace.name"}]},
    ], "extract": {"metadata": ["k8s.pod.name", "k8s.statefulset.name", "k8s.container.name", "container.image.name", "k8s.node.name"]}})
    await proc.start()
    try:
        await proc.consume(traces_from(None, {"k8s.pod.uid": SCORER_UID, "k8s.node.name": "set-by-sender"}))
        attrs = resource_of(sink)
        assert attrs["k8s.pod.name"] == "fraud-scorer-7d9f8c6b5-x2x4q"
        assert attrs["k8s.node.name"] == "set-by-sender"  # existing attributes are kept
        assert "container.image.name" not in attrs  # two containers and none named
        await proc.consume(traces_from(None, {"container.id": "b2" * 32}))
        attrs = resource_of(sink)
        assert attrs["k8s.container.name"] == "flowglass" and attrs["container.image.name"] == "ghcr.io/acme/flowglass"
        await proc.consume(traces_from(None, {"k8s.pod.name": "feature-store-0", "k8s.namespace.name": "ml-serving"}))
        assert resource_of(sink)["k8s.statefulset.name"] == "feature-store"
        await proc.consume(traces_from("10.52.1.14:1"))  # no rule uses the connection here
        assert "k8s.pod.name" not in resource_of(sink)
    finally:
        await proc.shutdown()


async def test_excluded_and_host_network_pods_are_not_matched_by_ip(api: FakeKubeApi, make: Make) -> None:
    proc, sink = make()
    await proc.start()
    try:
        await proc.consume(traces_from("10.52.1.3:4000"))  # jaeger-agent: excluded by default
        await proc.consume(traces_from("10.128.0.17:4000"))  # node-exporter: host network
        for i in (0, 1):
            assert "k8s.pod.name" not in resource_of(sink, i)
        sample = proc._settings.metrics.registry.get_sample_value
        assert sample("flowglass_processor_k8sattributes_associations_total",
                      {"component": ID, "pipeline": "traces", "signal": "traces", "outcome": "not_found"}) == 2
        await proc.consume(traces_from(None, {"k8s.pod.uid": "1d2c3b4a-5f6e-4a7b-8c9d-0e1f2a3b4c5d"}))
        assert resource_of(sink)["k8s.pod.name"] == "node-exporter-q8w7e"
    finally:
        await proc.shutdown()


async def test_workloads_and_images(api: FakeKubeApi, make: Make) -> None:
    proc, sink = make({"extract": {"metadata": ["k8s.job.name", "k8s.cronjob.name", "k8s.daemonset.name",
                                                "k8s.replicaset.name", "container.image.name", "container.image.tag", "k8s.pod.ip"]}})
    await proc.start()
    try:
        await proc.consume(traces_from("10.52.1.31:1"))
        attrs = resource_of(sink)
        assert attrs["k8s.job.name"] == "nightly-retrain-29413440" and attrs["k8s.cronjob.name"] == "nightly-retrain"
        assert attrs["container.image.name"] == "us-docker.pkg.dev/acme/ml/trainer"
        assert "container.image.tag" not in attrs  # pinned by digest only
        assert attrs["k8s.pod.ip"] == "10.52.1.31"
        await proc.consume(traces_from("10.52.1.14:1"))
        assert resource_of(sink)["k8s.replicaset.name"] == "fraud-scorer-7d9f8c6b5"
    finally:
        await proc.shutdown()


async def test_labels_and_annotations_from_pod_namespace_and_node(api: FakeKubeApi, make: Make) -> None:
    proc, sink = make({"extract": {
        "metadata": ["k8s.pod.name"],
        "labels": [
            {"key": "team"},
            {"tag_name": "team.owner", "key": "team", "from": "namespace"},
            {"tag_name": "gpu.$1", "key_regex": "cloud.google.com/gke-(.*)", "from": "node"},
            {"key": "topology.kubernetes.io/zone", "from": "node"},
        ],
        "annotations": [{"tag_name": "ml.model.uri", "key": "ml.acme.io/model-uri"}, {"key": "owner", "from": "namespace"}],
    }})
    await proc.start()
    try:
        await proc.consume(traces_from("10.52.1.14:1"))
        attrs = resource_of(sink)
        assert attrs["k8s.pod.labels.team"] == "risk"
        assert attrs["team.owner"] == "ml-platform"
        assert attrs["gpu.accelerator"] == "nvidia-l4"
        assert attrs["k8s.node.labels.topology.kubernetes.io/zone"] == "us-central1-a"
        assert attrs["ml.model.uri"] == "models:/fraud/3"
        assert attrs["k8s.namespace.annotations.owner"] == "ml-platform@acme.example"
        assert {p for p, _ in api.requests} >= {PODS, "/api/v1/namespaces", "/api/v1/nodes"}
        node_query = next(q for p, q in api.requests if p == "/api/v1/nodes")
        assert node_query == {"fieldSelector": f"metadata.name={NODE}"}
    finally:
        await proc.shutdown()


# -- watching ----------------------------------------------------------------------------


async def test_watch_added_modified_deleted_and_bookmark(api: FakeKubeApi, make: Make) -> None:
    proc, sink = make()
    await proc.start()
    try:
        added, modified, deleted, bookmark = watch_lines("pod_watch_events.jsonl")
        queue = api.watches[PODS]
        queue.put_nowait(added)
        await until(lambda: len(proc.pods) == 5)  # 4 listed (jaeger excluded) + the new one
        assert "10.52.1.40" not in proc.pods.by_ip  # pending, no IP yet
        queue.put_nowait(modified)
        await until(lambda: "10.52.1.40" in proc.pods.by_ip)
        await proc.consume(traces_from("10.52.1.40:8080"))
        assert resource_of(sink)["k8s.pod.name"] == "fraud-scorer-7d9f8c6b5-p9m3n"
        queue.put_nowait(deleted)
        queue.put_nowait(bookmark)
        queue.put_nowait(None)  # the server ends this watch; the next starts from the bookmark
        await until(lambda: any(q.get("resourceVersion") == "48260" for p, q in api.requests if "watch" in q))
        # A deleted pod stays findable for a while: late telemetry still gets its metadata.
        await proc.consume(traces_from("10.52.1.31:1"))
        assert resource_of(sink)["k8s.pod.name"] == "nightly-retrain-29413440-h7k2m"
        first_watch = next(q for p, q in api.requests if "watch" in q)
        assert first_watch["resourceVersion"] == "48230" and first_watch["allowWatchBookmarks"] == "true"
    finally:
        await proc.shutdown()


@pytest.mark.parametrize("how", ["error-event", "http-status"])
async def test_410_gone_forces_a_relist(api: FakeKubeApi, make: Make, how: str) -> None:
    api.lists[PODS].append(fixture("pod_list_after_gone.json"))
    proc, sink = make()
    await proc.start()
    try:
        queue = api.watches[PODS]
        if how == "error-event":
            queue.put_nowait(watch_lines("watch_410_gone.json")[0])
        else:
            queue.put_nowait(410)
        await until(lambda: api.list_count(PODS) == 2 and "10.52.1.77" in proc.pods.by_ip)
        assert proc.informers[0].relists_after_gone == 1
        assert "10.52.1.14" not in proc.pods.by_ip and "10.52.1.9" not in proc.pods.by_ip
        await proc.consume(traces_from("10.52.1.77:1"))
        assert resource_of(sink)["k8s.pod.uid"] == SCORER_UID
    finally:
        await proc.shutdown()


def test_deleted_pods_are_purged_after_the_grace_period() -> None:
    now = [0.0]
    table = PodTable(grace=60.0, clock=lambda: now[0])
    items = fixture("pod_list.json")["items"]
    table.replace(items)
    table.delete(items[1])
    assert "10.52.1.9" in table.by_ip
    now[0] = 61.0
    table.upsert(items[0])
    assert "10.52.1.9" not in table.by_ip and len(table) == 4


# -- failure modes and other modes -------------------------------------------------------


async def test_wait_for_metadata_times_out_when_the_list_never_comes(api: FakeKubeApi, make: Make) -> None:
    api.list_gate = asyncio.Event()
    proc, _ = make({"wait_for_metadata_timeout": "200ms"})
    try:
        with pytest.raises(StartError, match="did not arrive within wait_for_metadata_timeout"):
            await proc.start()
    finally:
        api.list_gate.set()
        await proc.shutdown()


async def test_a_wrong_token_keeps_retrying_and_batches_pass(api: FakeKubeApi, make: Make) -> None:
    api.token = "another-token"
    proc, sink = make({"wait_for_metadata": False})
    await proc.start()
    try:
        await until(lambda: len(api.requests) >= 2)  # listed, refused, retried after back-off
        await proc.consume(traces_from("10.52.1.14:1"))
        assert "k8s.pod.name" not in resource_of(sink)
    finally:
        await proc.shutdown()


async def test_outside_a_cluster(make: Make, caplog: pytest.LogCaptureFixture) -> None:
    proc, sink = make({"auth_type": "serviceAccount", "wait_for_metadata": False}, environ={"K8S_NODE_NAME": NODE})
    with caplog.at_level("ERROR"):
        await proc.start()
    assert "batches pass without pod metadata" in caplog.text
    batch = traces_from("10.52.1.14:1")
    await proc.consume(batch)
    assert "k8s.pod.name" not in resource_of(sink)
    strict, _ = make({"auth_type": "serviceAccount"}, environ={"K8S_NODE_NAME": NODE})
    with pytest.raises(StartError, match="KUBERNETES_SERVICE_HOST is not set"):
        await strict.start()


async def test_node_filter_variable_must_be_set(make: Make, tmp_path: Path, api: FakeKubeApi) -> None:
    proc, _ = make(environ={"KUBECONFIG": str(kubeconfig(tmp_path, api.url))})
    with pytest.raises(StartError, match="K8S_NODE_NAME, which is not set"):
        await proc.start()


async def test_passthrough_only_sets_the_pod_ip_from_the_connection(make: Make) -> None:
    proc, sink = make({"passthrough": True}, signal=Signal.LOGS)
    await proc.start()
    batch = make_logs(1)
    await proc.consume(Batch(Signal.LOGS, batch.mutable(), client=ClientInfo(address="ipv4:10.52.1.14:5000")))
    attrs = attrs_dict(sink.batches[0].message.resource_logs[0].resource.attributes)
    assert attrs["k8s.pod.ip"] == "10.52.1.14" and "k8s.pod.name" not in attrs
    await proc.shutdown()


async def test_in_cluster_service_account_over_tls(tmp_path: Path) -> None:
    import ssl

    import trustme
    from aiohttp import web

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    sa = tmp_path / "sa"
    sa.mkdir()
    ca.cert_pem.write_to_path(str(sa / "ca.crt"))
    (sa / "token").write_text(TOKEN + "\n")
    seen: list[str] = []

    async def pods(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response(fixture("pod_list.json"))

    app = web.Application()
    app.router.add_get(PODS, pods)
    runner = web.AppRunner(app)
    await runner.setup()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        config = ApiConfig.load("serviceAccount", {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(port)}, sa)
        assert config.server == f"https://127.0.0.1:{port}"
        proc = K8sAttributesProcessor(
            Settings.for_test(ID, Kind.PROCESSOR, "traces"), convert({"wait_for_metadata": True}), Signal.TRACES, Sink(),
            api_config=config,
        )
        await proc.start()
        assert seen[0] == f"Bearer {TOKEN}" and len(proc.pods) == 4
        await proc.shutdown()
    finally:
        await runner.cleanup()


# -- small parts -------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "message"), [
    ({"extract": {"labels": [{"key": "a", "key_regex": "b"}]}}, "exactly one of key and key_regex"),
    ({"extract": {"metadata": ["k8s.pod.colour"]}}, "not an attribute Flowglass extracts"),
    ({"pod_association": [{"sources": [{"from": "resource_attribute"}]}]}, "needs the attribute's name"),
    ({"extract": {"annotations": [{"key": "a", "from": "cluster"}]}}, "Invalid enum value"),
])
def test_invalid_configs(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        convert(raw)


def test_defaults() -> None:
    c = convert({})
    assert c.auth_type == "serviceAccount" and c.passthrough is False and c.wait_for_metadata is False
    assert [r.sources[0].name or r.sources[0].from_ for r in c.pod_association] == ["k8s.pod.ip", "k8s.pod.uid", "connection"]
    assert "k8s.deployment.name" in c.extract.metadata and "container.image.tag" in c.extract.metadata


@pytest.mark.parametrize(("address", "ip"), [
    ("10.0.0.1:5000", "10.0.0.1"), ("ipv4:10.0.0.1:5000", "10.0.0.1"), ("[fd00::1]:80", "fd00::1"),
    ("ipv6:[fd00::1]:80", "fd00::1"), ("fd00::1", "fd00::1"), (None, ""),
])
def test_peer_ip(address: str | None, ip: str) -> None:
    assert _peer_ip(address) == ip


def test_image_name_and_tag() -> None:
    assert image_name_and_tag("redis:7.2.4") == ("redis", "7.2.4")
    assert image_name_and_tag("localhost:5000/ml/model") == ("localhost:5000/ml/model", "latest")
    assert image_name_and_tag("ghcr.io/a/b:1.0@sha256:abc") == ("ghcr.io/a/b", "1.0")


async def test_kubeconfig_with_inline_ca_and_client_certificate(tmp_path: Path) -> None:
    import base64
    import ssl

    import trustme
    from aiohttp import web

    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("flowglass-agent")
    peers: list[Any] = []

    async def pods(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peercert") if request.transport else None)
        return web.json_response(fixture("pod_list.json"))

    app = web.Application()
    app.router.add_get(PODS, pods)
    runner = web.AppRunner(app)
    await runner.setup()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    key_pem = b"".join(blob.bytes() for blob in [client_cert.private_key_pem])
    chain_pem = b"".join(blob.bytes() for blob in client_cert.cert_chain_pems)
    config_path = tmp_path / "kubeconfig"
    config_path.write_text(f"""current-context: tls
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority-data: {b64(ca.cert_pem.bytes())}
contexts:
- name: tls
  context: {{cluster: c, user: u}}
users:
- name: u
  user:
    client-certificate-data: {b64(chain_pem)}
    client-key-data: {b64(key_pem)}
""")
    try:
        proc = K8sAttributesProcessor(
            Settings.for_test(ID, Kind.PROCESSOR, "traces"), convert({"auth_type": "kubeConfig", "wait_for_metadata": True}),
            Signal.TRACES, Sink(), environ={"KUBECONFIG": str(config_path)},
        )
        await proc.start()
        assert len(proc.pods) == 4 and peers and peers[0] is not None  # the client presented its certificate
        await proc.shutdown()
    finally:
        await runner.cleanup()


async def test_a_broken_kubeconfig_fails_a_waiting_start(tmp_path: Path, make: Make) -> None:
    bad = tmp_path / "bad"
    bad.write_text("current-context: nowhere\ncontexts: []\n")
    proc, _ = make(environ={"KUBECONFIG": str(bad), "K8S_NODE_NAME": NODE})
    with pytest.raises(StartError, match="no context named 'nowhere'"):
        await proc.start()
