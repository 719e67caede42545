"""A running agent answers bad input clearly and keeps serving; TLS and mTLS work as configured."""

from __future__ import annotations

import gzip
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import trustme

from agent.model import Signal, otlp_json
from agent.testing import AgentProcess, free_port, make_logs, make_traces
from tests.integration.helpers import LOGS_METHOD, TRACES_METHOD, raw_export, read_otlp_jsonl, wait_until

CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        max_recv_msg_size_mib: 1
      http:
        endpoint: 127.0.0.1:{http}
        max_request_body_size: 1048576
exporters:
  file:
    path: {out}
    flush_interval: 50ms
service:
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
    logs: {{receivers: [otlp], exporters: [file]}}
"""


class Running:
    def __init__(self, tmp: Path) -> None:
        self.grpc, self.http, tele = free_port(), free_port(), free_port()
        self.out = tmp / "out.jsonl"
        self.proc = AgentProcess(CONFIG.format(grpc=self.grpc, http=self.http, out=self.out, telemetry=tele),
                                 telemetry_port=tele)

    def post(self, path: str, body: bytes, content_type: str, encoding: str | None = None) -> tuple[int, bytes, dict[str, str]]:
        headers = {"Content-Type": content_type}
        if encoding:
            headers["Content-Encoding"] = encoding
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    r = Running(tmp_path_factory.mktemp("bad"))
    r.proc.start()
    try:
        yield r
    finally:
        code = r.proc.stop()
        r.proc.close()
        assert code == 0


def _good_still_works(agent: Running, marker: str) -> None:
    batch = make_traces(3, name=marker)
    code, _, _ = raw_export(f"127.0.0.1:{agent.grpc}", TRACES_METHOD, batch.serialize())
    assert code == grpc.StatusCode.OK
    status, _, _ = agent.post("/v1/traces", make_traces(2, name=marker + "-http").serialize(), "application/x-protobuf")
    assert status == 200

    def names() -> set[str]:
        return {s.name for sig, m in read_otlp_jsonl(agent.out) if sig is Signal.TRACES
                for rs in m.resource_spans for ss in rs.scope_spans for s in ss.spans}  # type: ignore[union-attr]

    wait_until(lambda: {marker, marker + "-http"} <= names(), what="good requests after bad ones")


def test_corrupted_protobuf_is_invalid_argument_over_grpc(agent: Running) -> None:
    code, details, _ = raw_export(f"127.0.0.1:{agent.grpc}", TRACES_METHOD, b"\x0a\xff\xff\xff\xff\x0f garbage")
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details
    _good_still_works(agent, "after-corrupt-grpc")


def test_oversized_message_is_resource_exhausted_over_grpc(agent: Running) -> None:
    big = make_traces(6000).serialize()
    assert len(big) > 1 << 20
    code, _, _ = raw_export(f"127.0.0.1:{agent.grpc}", TRACES_METHOD, big)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    _good_still_works(agent, "after-big-grpc")


def test_corrupted_protobuf_is_400_over_http(agent: Running) -> None:
    status, body, _ = agent.post("/v1/traces", b"\x0a\xff\xff\xff\xff\x0f garbage", "application/x-protobuf")
    assert status == 400
    assert body
    _good_still_works(agent, "after-corrupt-http")


def test_invalid_json_is_400_with_a_message(agent: Running) -> None:
    status, body, headers = agent.post("/v1/logs", b'{"resourceLogs": [ {"scopeLogs": 5 } ]', "application/json")
    assert status == 400
    assert "json" in headers.get("Content-Type", "").lower()
    doc = json.loads(body)
    assert doc.get("message")
    _good_still_works(agent, "after-bad-json")


def test_oversized_body_is_413_plain_and_gzip_bomb(agent: Running) -> None:
    big = make_traces(6000).serialize()
    status, _, _ = agent.post("/v1/traces", big, "application/x-protobuf")
    assert status == 413
    bomb = gzip.compress(b"\x00" * (8 << 20))
    assert len(bomb) < 1 << 20
    status, _, _ = agent.post("/v1/traces", bomb, "application/x-protobuf", encoding="gzip")
    assert status == 413
    _good_still_works(agent, "after-413")


def test_wrong_content_type_is_415(agent: Running) -> None:
    status, _, _ = agent.post("/v1/traces", b"hello", "text/plain")
    assert status == 415
    _good_still_works(agent, "after-415")


def test_gzip_requests_are_accepted_on_both_transports(agent: Running) -> None:
    logs = make_logs(4, body="gzip-grpc")
    code, _, _ = raw_export(f"127.0.0.1:{agent.grpc}", LOGS_METHOD, logs.serialize(), compression=grpc.Compression.Gzip)
    assert code == grpc.StatusCode.OK
    status, _, _ = agent.post("/v1/logs", gzip.compress(otlp_json.encode(make_logs(3, body="gzip-http").message)),
                              "application/json", encoding="gzip")
    assert status == 200

    def bodies() -> set[str]:
        return {lr.body.string_value.rsplit(" ", 1)[0] for sig, m in read_otlp_jsonl(agent.out) if sig is Signal.LOGS
                for rl in m.resource_logs for sl in rl.scope_logs for lr in sl.log_records}  # type: ignore[union-attr]

    wait_until(lambda: {"gzip-grpc", "gzip-http"} <= bodies(), what="gzip requests")
    assert agent.proc.metric("flowglass_receiver_refused_requests_total") >= 1


# ---- TLS and mTLS --------------------------------------------------------------------------

TLS_CONFIG = """
receivers:
  otlp/tls:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{tls_grpc}
        tls: {{cert_file: {cert}, key_file: {key}}}
      http:
        endpoint: 127.0.0.1:{tls_http}
        tls: {{cert_file: {cert}, key_file: {key}}}
  otlp/mtls:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{mtls_grpc}
        tls: {{cert_file: {cert}, key_file: {key}, client_ca_file: {ca}}}
exporters:
  file:
    path: {out}
    flush_interval: 50ms
service:
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    traces: {{receivers: [otlp/tls, otlp/mtls], exporters: [file]}}
"""


def test_tls_and_mtls(tmp_path: Path) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("model-server.test")
    cert, key, ca_file = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    ports = {k: free_port() for k in ("tls_grpc", "tls_http", "mtls_grpc", "telemetry")}
    out = tmp_path / "out.jsonl"
    with AgentProcess(TLS_CONFIG.format(cert=cert, key=key, ca=ca_file, out=out, **ports),
                      telemetry_port=ports["telemetry"]):
        root = ca.cert_pem.bytes()
        tls = grpc.ssl_channel_credentials(root_certificates=root)
        payload = make_traces(2, name="tls").serialize()
        assert raw_export(f"127.0.0.1:{ports['tls_grpc']}", TRACES_METHOD, payload, credentials=tls)[0] == grpc.StatusCode.OK
        # plaintext client against the TLS port is refused
        code, _, _ = raw_export(f"127.0.0.1:{ports['tls_grpc']}", TRACES_METHOD, payload, timeout=3)
        assert code != grpc.StatusCode.OK
        # HTTPS
        ctx = ssl.create_default_context(cadata=root.decode())
        req = urllib.request.Request(f"https://127.0.0.1:{ports['tls_http']}/v1/traces",
                                     data=make_traces(2, name="https").serialize(),
                                     headers={"Content-Type": "application/x-protobuf"}, method="POST")
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            assert r.status == 200
        # plain HTTP against the HTTPS port fails
        plain = urllib.request.Request(f"http://127.0.0.1:{ports['tls_http']}/v1/traces", data=b"",
                                       headers={"Content-Type": "application/x-protobuf"}, method="POST")
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(plain, timeout=5).read()
        # mTLS: with a client certificate accepted, without refused
        mtls = grpc.ssl_channel_credentials(root_certificates=root, private_key=client.private_key_pem.bytes(),
                                            certificate_chain=client.cert_chain_pems[0].bytes())
        mpayload = make_traces(2, name="mtls").serialize()
        assert raw_export(f"127.0.0.1:{ports['mtls_grpc']}", TRACES_METHOD, mpayload, credentials=mtls)[0] == grpc.StatusCode.OK
        code, _, _ = raw_export(f"127.0.0.1:{ports['mtls_grpc']}", TRACES_METHOD, mpayload, credentials=tls, timeout=3)
        assert code != grpc.StatusCode.OK

        def names() -> set[str]:
            return {s.name for sig, m in read_otlp_jsonl(out)
                    for rs in m.resource_spans for ss in rs.scope_spans for s in ss.spans}  # type: ignore[union-attr]

        wait_until(lambda: names() == {"tls", "https", "mtls"}, what="TLS requests at the file")
