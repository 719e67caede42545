"""The `elasticsearch` exporter against a real `osmem-server` (an in-memory OpenSearch-compatible
server), directly and through a fault-injecting proxy written here.

The proxy sits between the exporter and osmem-server and, as scripted by each test, answers
429 to whole requests, answers chosen bulk items 429/503 itself without forwarding them,
drops connections before forwarding (or after, losing the answer), answers 413 to bodies
larger than a limit (as `http.max_content_length` or a proxy in front would), and counts how often
each document id reached osmem-server. Tests check that every document is stored exactly
once, that a mapping conflict lands in the dead-letter file with its reason, and that no
stored document is sent again.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import subprocess
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import trustme

from agent.component import Kind, Settings
from agent.config.types import dec_hook
from agent.errors import PermanentError
from agent.exporters.elasticsearch import ElasticsearchExporterConfig
from agent.exporters.elasticsearch.exporter import ElasticsearchExporter
from agent.model import Batch
from agent.testing import key_values, make_logs, make_traces, stop_process
from tests.conftest import IN_CI
from tests.unit.exporters.helpers import metric

pytestmark = pytest.mark.peer("osmem-server")


# -- the peer -----------------------------------------------------------------------------


def _osmem_binary() -> str:
    try:
        from osmem_server import OsmemError, resolve_binary
    except ImportError:
        resolve_binary = None
    if resolve_binary is not None:
        try:
            return resolve_binary()
        except OsmemError:
            pass
    message = "osmem-server is not installed; run `make test` (it installs every peer)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def osmem() -> Iterator[str]:
    """osmem-server on a port it picks itself; yields its base URL; stopped by its pid.

    Its stdin is a pipe this process holds: osmem-server exits when the pipe closes, so it
    cannot outlive a test run that is killed before the fixture's cleanup."""
    proc = subprocess.Popen([_osmem_binary(), "-addr", "127.0.0.1:0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = json.loads(line)["url"]
        yield str(url)
    finally:
        stop_process(proc, grace=10)
        if proc.stdin is not None:
            proc.stdin.close()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _search(base: str, index: str, size: int = 100) -> list[dict[str, Any]]:
    body = json.dumps({"size": size, "query": {"match_all": {}}}).encode()
    req = urllib.request.Request(f"{base}/{index}/_search", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return [hit["_source"] for hit in json.loads(resp.read())["hits"]["hits"]]


def _count(base: str, index: str) -> int:
    return int(_get(f"{base}/{index}/_count")["count"])


def _ids(base: str, index: str, size: int = 1000) -> list[str]:
    body = json.dumps({"size": size, "query": {"match_all": {}}}).encode()
    req = urllib.request.Request(f"{base}/{index}/_search", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return [hit["_id"] for hit in json.loads(resp.read())["hits"]["hits"]]


# -- the fault-injecting proxy ------------------------------------------------------------


class FaultProxy:
    """An HTTP/1.1 proxy in front of osmem-server that injects the faults it is told to."""

    def __init__(self, upstream: str, ssl_context: ssl.SSLContext | None = None) -> None:
        self.upstream = upstream
        self.ssl_context = ssl_context
        self.headers: dict[str, str] = {}             # of the last request
        self.reject_requests = 0          # next N requests: 429 to the whole request
        self.drop_before = 0              # next N requests: connection closed, nothing forwarded
        self.drop_after = 0               # next N requests: forwarded, then connection closed
        self.item_faults: dict[str, list[int]] = {}  # doc id → statuses to answer, in order
        self.max_body = 0                 # > 0: 413 to a request whose body is larger
        self.stall = 0                    # next N requests: no answer until `release` is set
        self.release = asyncio.Event()
        self.too_large = 0                # requests answered 413
        self.forwarded: Counter[str] = Counter()     # doc id → times it reached osmem-server
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> FaultProxy:
        self._session = aiohttp.ClientSession()
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0, ssl=self.ssl_context)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.ssl_context else 'http'}://localhost:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None and self._session is not None
        self._server.close()
        await self._server.wait_closed()
        await self._session.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip()
                           for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                answer = await self._handle(method, path, headers, body)
                if answer is None:
                    return  # drop the connection
                status, payload, extra = answer
                head_out = [f"HTTP/1.1 {status} X", "Content-Type: application/json",
                            f"Content-Length: {len(payload)}", *extra]
                writer.write(("\r\n".join(head_out) + "\r\n\r\n").encode() + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _handle(self, method: str, path: str, headers: dict[str, str],
                      body: bytes) -> tuple[int, bytes, list[str]] | None:
        self.requests += 1
        self.headers = headers
        if self.drop_before:
            self.drop_before -= 1
            return None
        if self.stall:
            self.stall -= 1
            await self.release.wait()
            return None
        if self.reject_requests:
            self.reject_requests -= 1
            return 429, b'{"error":{"type":"es_rejected_execution_exception","reason":"busy"}}', ["Retry-After: 0"]
        if self.max_body and len(body) > self.max_body:
            self.too_large += 1
            return 413, (b'{"error":{"type":"content_too_long_exception","reason":"request body is '
                         b'larger than ' + str(self.max_body).encode() + b' bytes"}}'), []
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        lines = body.splitlines()
        pairs = [(json.loads(lines[i]), lines[i + 1]) for i in range(0, len(lines), 2)]
        kept: list[int] = []
        answers: dict[int, dict[str, Any]] = {}
        for i, (action, _) in enumerate(pairs):
            doc_id = action["create"].get("_id")
            faults = self.item_faults.get(doc_id) if doc_id else None
            if faults:
                status = faults.pop(0)
                answers[i] = {"create": {"_index": action["create"]["_index"], "_id": doc_id, "status": status,
                                         "error": {"type": "injected", "reason": f"injected {status}"}}}
            else:
                kept.append(i)
        for i in kept:
            doc_id = pairs[i][0]["create"].get("_id")
            if doc_id:
                self.forwarded[doc_id] += 1
        if kept:
            out = b"".join(json.dumps(pairs[i][0]).encode() + b"\n" + pairs[i][1] + b"\n" for i in kept)
            assert self._session is not None
            async with self._session.post(self.upstream + path, data=out,
                                          headers={"Content-Type": "application/x-ndjson"}) as resp:
                upstream = await resp.json()
            for i, item in zip(kept, upstream["items"], strict=True):
                answers[i] = item
        if self.drop_after:
            self.drop_after -= 1
            return None
        items = [answers[i] for i in range(len(pairs))]
        errors = any(next(iter(item.values())).get("error") for item in items)
        return 200, json.dumps({"took": 1, "errors": errors, "items": items}).encode(), []


# -- helpers ------------------------------------------------------------------------------


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _exporter(url: str, **options: Any) -> tuple[ElasticsearchExporter, Settings]:
    raw: dict[str, Any] = {"endpoint": url, "flush": {"interval": 0}, "num_workers": 2,
                           "retry": {"initial_interval": "1ms", "max_interval": "5ms", "max_retries": 5},
                           **options}
    config = msgspec.convert(raw, ElasticsearchExporterConfig, dec_hook=dec_hook)
    settings = Settings.for_test("elasticsearch/test", Kind.EXPORTER)
    return ElasticsearchExporter(settings, config), settings


def _logs_with_ids(n: int, start: int = 0) -> Batch:
    """Logs whose `elasticsearch.document_id` is `doc-<i>`, so the proxy can address them."""
    batch = make_logs(n)
    for i, record in enumerate(batch.mutable().resource_logs[0].scope_logs[0].log_records):
        record.attributes.extend(key_values({"elasticsearch.document_id": f"doc-{start + i}"}))
    return batch


# -- mapping modes ------------------------------------------------------------------------


async def test_otel_mode_documents_are_found_with_their_fields(osmem: str) -> None:
    logs_index, traces_index = _unique("logs-otel"), _unique("traces-otel")
    exporter, settings = _exporter(osmem, logs_index=logs_index, traces_index=traces_index)
    await exporter.start()
    logs = make_logs(3)
    await exporter.consume(logs)
    await exporter.consume(make_traces(2, error_every=2))
    await exporter.shutdown()

    docs = sorted(_search(osmem, logs_index), key=lambda d: d["body"]["text"])
    assert [d["body"]["text"] for d in docs] == ["inference done 0", "inference done 1", "inference done 2"]
    record = logs.message.resource_logs[0].scope_logs[0].log_records[0]
    first = docs[0]
    assert first["severity_text"] == "INFO" and first["severity_number"] == 9
    assert first["trace_id"] == record.trace_id.hex() and first["span_id"] == record.span_id.hex()
    assert first["attributes"] == {"request.id": "req-0-0", "latency_ms": 12.5}
    assert first["resource"]["attributes"]["service.name"] == "model-server"
    assert first["scope"]["name"] == "flowglass.test"
    assert first["data_stream"] == {"type": "logs", "dataset": "generic.otel", "namespace": "default"}
    assert first["@timestamp"].endswith("Z")

    spans = [d for d in _search(osmem, traces_index) if "event_name" not in d]
    events = [d for d in _search(osmem, traces_index) if "event_name" in d]
    assert len(spans) == 2 and len(events) == 2  # span events are documents of their own
    assert {s["status"]["code"] for s in spans} == {"Ok", "Error"}
    assert all(s["kind"] == "Server" and s["name"] == "predict" and s["duration"] > 0 for s in spans)
    assert all(e["event_name"] == "tokens" and e["attributes"]["count"] == 42 for e in events)
    assert metric(settings, "flowglass_exporter_sent_items_total", signal="logs") == 3


@pytest.mark.parametrize("mode", ["ecs", "none", "raw"])
async def test_other_modes_store_their_document_shapes(osmem: str, mode: str) -> None:
    logs_index, traces_index = _unique(f"logs-{mode}"), _unique(f"traces-{mode}")
    exporter, _ = _exporter(osmem, logs_index=logs_index, traces_index=traces_index, mapping={"mode": mode})
    await exporter.start()
    await exporter.consume(make_logs(2))
    await exporter.consume(make_traces(2))
    await exporter.shutdown()

    logs = _search(osmem, logs_index)
    spans = _search(osmem, traces_index)
    assert len(logs) == 2 and len(spans) == 2
    if mode == "ecs":
        assert {d["message"] for d in logs} == {"inference done 0", "inference done 1"}
        assert all(d["log.level"] == "INFO" and d["service.name"] == "model-server" for d in logs)
        assert all(d["span.name"] == "predict" and d["event.outcome"] == "success"
                   and d["host.hostname"] == "node-1" for d in spans)
    else:
        assert {d["Body"] for d in logs} == {"inference done 0", "inference done 1"}
        assert all(d["SeverityText"] == "INFO" and d["Resource"]["service.name"] == "model-server" for d in logs)
        assert all(d["Name"] == "predict" and d["Kind"] == "SPAN_KIND_SERVER" for d in spans)
        if mode == "none":
            assert all(d["Attributes"]["request.id"].startswith("req-") for d in logs)
            assert all(d["Events"]["tokens"]["count"] == 42 for d in spans)
        else:
            assert all(d["request.id"].startswith("req-") for d in logs)
            assert all(d["tokens"]["count"] == 42 for d in spans)


async def test_bodymap_mode_stores_the_body_map_as_the_document(osmem: str, tmp_path: Path) -> None:
    index = _unique("logs-bodymap")
    dead = tmp_path / "dead.jsonl"
    exporter, settings = _exporter(osmem, logs_index=index, mapping={"mode": "bodymap"},
                                   dead_letter={"path": str(dead)})
    batch = make_logs(2)
    records = batch.mutable().resource_logs[0].scope_logs[0].log_records
    records[0].body.kvlist_value.values.extend(key_values({"user": "ada", "tokens": 7}))
    await exporter.start()
    await exporter.consume(batch)
    await exporter.shutdown()
    assert _search(osmem, index) == [{"user": "ada", "tokens": 7}]
    entry = json.loads(dead.read_text())
    assert entry["error"]["type"] == "encoding" and "not a map" in entry["error"]["reason"]
    assert metric(settings, "flowglass_exporter_elasticsearch_rejected_documents_total",
                  signal="logs", reason="encoding") == 1


async def test_pipeline_logstash_and_gzip_reach_the_server(osmem: str) -> None:
    prefix = _unique("daily")
    exporter, _ = _exporter(osmem, logs_index=prefix, logstash_format={"enabled": True}, compression="gzip")
    batch = make_logs(2)
    await exporter.start()
    await exporter.consume(batch)
    await exporter.shutdown()
    ns = batch.message.resource_logs[0].scope_logs[0].log_records[0].time_unix_nano
    import time as _time
    day = _time.strftime("%Y.%m.%d", _time.gmtime(ns // 1_000_000_000))
    assert _count(osmem, f"{prefix}-{day}") == 2


# -- faults -------------------------------------------------------------------------------


async def test_every_document_is_stored_exactly_once_through_faults(osmem: str, tmp_path: Path) -> None:
    index = _unique("logs-faults")
    dead = tmp_path / "dead.jsonl"
    async with FaultProxy(osmem) as proxy:
        exporter, settings = _exporter(proxy.url, logs_index=index, document_id="hash",
                                       logs_dynamic_id={"enabled": True}, dead_letter={"path": str(dead)},
                                       retry={"initial_interval": "1ms", "max_interval": "5ms", "max_retries": 10})
        proxy.reject_requests = 2
        proxy.drop_before = 2
        proxy.item_faults = {"doc-3": [429], "doc-7": [503, 503], "doc-12": [429, 503, 429], "doc-25": [500]}
        await exporter.start()
        for start in range(0, 30, 10):
            await exporter.consume(_logs_with_ids(10, start))
        await exporter.shutdown()

    assert _count(osmem, index) == 30
    assert sorted(_ids(osmem, index)) == sorted(f"doc-{i}" for i in range(30))
    # Nothing that was stored reached the server twice.
    assert set(proxy.forwarded) == {f"doc-{i}" for i in range(30)}
    assert max(proxy.forwarded.values()) == 1
    assert not dead.exists()
    assert metric(settings, "flowglass_exporter_elasticsearch_documents_total", signal="logs", outcome="created") == 30
    assert metric(settings, "flowglass_exporter_elasticsearch_documents_total", signal="logs", outcome="retried") > 0
    assert metric(settings, "flowglass_exporter_sent_items_total", signal="logs") == 30


async def test_a_cluster_outage_longer_than_max_retries_loses_nothing(osmem: str, tmp_path: Path) -> None:
    # Connections dropped and whole requests refused many times over (a rolling restart):
    # with max_retries 1 the Collector would give up; these attempts do not count.
    index = _unique("logs-outage")
    dead = tmp_path / "dead.jsonl"
    async with FaultProxy(osmem) as proxy:
        exporter, settings = _exporter(proxy.url, logs_index=index, document_id="hash",
                                       logs_dynamic_id={"enabled": True}, dead_letter={"path": str(dead)},
                                       retry={"initial_interval": "1ms", "max_interval": "5ms", "max_retries": 1})
        proxy.drop_before = 6
        proxy.reject_requests = 6
        await exporter.start()
        await exporter.consume(_logs_with_ids(10, 0))
        await exporter.shutdown()
    assert sorted(_ids(osmem, index)) == sorted(f"doc-{i}" for i in range(10))
    assert max(proxy.forwarded.values()) == 1
    assert not dead.exists()
    assert metric(settings, "flowglass_exporter_sent_items_total", signal="logs") == 10


async def test_a_413_answer_is_split_until_only_the_oversize_document_is_refused(osmem: str, tmp_path: Path) -> None:
    index = _unique("logs-too-large")
    dead = tmp_path / "dead.jsonl"
    async with FaultProxy(osmem) as proxy:
        exporter, settings = _exporter(proxy.url, logs_index=index, logs_dynamic_id={"enabled": True},
                                       dead_letter={"path": str(dead)}, compression="none")
        proxy.max_body = 4000  # a few documents of about 600 bytes fit; the big one does not
        proxy.item_faults = {"doc-2": [429]}  # and one item is retried on the way
        batch = _logs_with_ids(24)
        batch.mutable().resource_logs[0].scope_logs[0].log_records[13].body.string_value = "big " * 2000
        await exporter.start()
        await exporter.consume(batch)
        await exporter.shutdown()

    stored = sorted(_ids(osmem, index))
    assert stored == sorted(f"doc-{i}" for i in range(24) if i != 13)
    # Every document that reached the server reached it once: nothing created was resent.
    assert set(proxy.forwarded) == set(stored) and max(proxy.forwarded.values()) == 1
    assert proxy.too_large >= 5  # the whole request, then halves down to doc-13 alone
    [line] = dead.read_text().splitlines()
    entry = json.loads(line)
    assert entry["id"] == "doc-13" and entry["status"] == 413
    assert entry["error"]["type"] == "http_413" and "larger than 4000 bytes" in entry["error"]["reason"]
    assert entry["document"]["body"]["text"].startswith("big big")
    assert metric(settings, "flowglass_exporter_elasticsearch_documents_total", signal="logs", outcome="created") == 23
    assert metric(settings, "flowglass_exporter_elasticsearch_documents_total", signal="logs", outcome="retried") == 1
    assert metric(settings, "flowglass_exporter_elasticsearch_rejected_documents_total",
                  signal="logs", reason="http_413") == 1
    assert metric(settings, "flowglass_exporter_sent_items_total", signal="logs") == 23
    assert metric(settings, "flowglass_exporter_send_failed_items_total", signal="logs", reason="partial") == 1


async def test_without_retries_a_request_that_times_out_is_dead_lettered(osmem: str, tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    async with FaultProxy(osmem) as proxy:
        proxy.stall = 1
        exporter, settings = _exporter(proxy.url, logs_index=_unique("logs-timeout"), timeout="200ms",
                                       logs_dynamic_id={"enabled": True}, retry={"enabled": False},
                                       dead_letter={"path": str(dead)})
        await exporter.start()
        await exporter.consume(_logs_with_ids(3))
        await exporter.shutdown()
        proxy.release.set()
    entries = [json.loads(line) for line in dead.read_text().splitlines()]
    assert sorted(e["id"] for e in entries) == ["doc-0", "doc-1", "doc-2"]
    assert all(e["error"]["type"] == "timeout" and e["status"] == 0 for e in entries)
    assert metric(settings, "flowglass_exporter_elasticsearch_rejected_documents_total",
                  signal="logs", reason="timeout") == 3
    assert metric(settings, "flowglass_exporter_send_failed_items_total", signal="logs", reason="permanent") == 3


async def test_a_lost_answer_is_resent_and_stored_once_with_hash_ids(osmem: str) -> None:
    index = _unique("logs-lost-answer")
    async with FaultProxy(osmem) as proxy:
        exporter, settings = _exporter(proxy.url, logs_index=index, document_id="hash")
        proxy.drop_after = 1  # stored, but the exporter never hears it
        await exporter.start()
        await exporter.consume(make_logs(8))
        await exporter.shutdown()
    assert _count(osmem, index) == 8
    assert sorted(proxy.forwarded.values()) == [2] * 8  # sent twice, stored once
    assert metric(settings, "flowglass_exporter_elasticsearch_documents_total",
                  signal="logs", outcome="duplicate") == 8
    assert metric(settings, "flowglass_exporter_sent_items_total", signal="logs") == 8


async def test_a_mapping_conflict_goes_to_the_dead_letter_file(osmem: str, tmp_path: Path) -> None:
    index = _unique("logs-conflict")
    dead = tmp_path / "dead.jsonl"
    # No queue: each consume is delivered before the next, so the good records map the field.
    exporter, settings = _exporter(osmem, logs_index=index, mapping={"mode": "raw"},
                                   dead_letter={"path": str(dead)}, document_id="hash",
                                   sending_queue={"enabled": False})
    good = make_logs(3)  # latency_ms is a number: the index maps it as one
    bad = make_logs(1)
    bad.mutable().resource_logs[0].scope_logs[0].log_records[0].attributes[1].value.string_value = "slow"
    await exporter.start()
    await exporter.consume(good)
    with pytest.raises(PermanentError, match="1 of 1 documents were refused"):
        await exporter.consume(bad)
    await exporter.shutdown()

    assert _count(osmem, index) == 3
    lines = dead.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["index"] == index and entry["status"] == 400
    assert entry["error"]["type"] == "mapper_parsing_exception"
    assert "latency_ms" in entry["error"]["reason"]
    assert entry["document"]["latency_ms"] == "slow"
    assert metric(settings, "flowglass_exporter_elasticsearch_rejected_documents_total",
                  signal="logs", reason="mapper_parsing_exception") == 1
    # The bad record was a bulk request of its own: the sender counts it as a permanent failure.
    assert metric(settings, "flowglass_exporter_send_failed_items_total", signal="logs", reason="permanent") == 1


async def test_a_large_bulk_answer_is_read_whole(osmem: str, tmp_path: Path) -> None:
    """1000 items with one refusal: the answer (hundreds of KiB) must be read item by item."""
    index = _unique("logs-large")
    dead = tmp_path / "dead.jsonl"
    exporter, settings = _exporter(osmem, logs_index=index, mapping={"mode": "raw"}, document_id="hash",
                                   dead_letter={"path": str(dead)}, sending_queue={"enabled": False})
    batch = make_logs(1000)
    batch.mutable().resource_logs[0].scope_logs[0].log_records[700].attributes[1].value.string_value = "slow"
    await exporter.start()
    with pytest.raises(PermanentError, match="1 of 1000"):
        await exporter.consume(batch)
    await exporter.shutdown()
    assert _count(osmem, index) == 999
    assert json.loads(dead.read_text())["document"]["request.id"] == "req-0-700"
    assert metric(settings, "flowglass_exporter_elasticsearch_documents_total", signal="logs", outcome="created") == 999
    assert metric(settings, "flowglass_exporter_elasticsearch_documents_total", signal="logs", outcome="retried") == 0


async def test_items_that_keep_failing_are_dead_lettered_after_the_last_retry(osmem: str, tmp_path: Path) -> None:
    index = _unique("logs-exhausted")
    dead = tmp_path / "dead.jsonl"
    async with FaultProxy(osmem) as proxy:
        exporter, settings = _exporter(proxy.url, logs_index=index, logs_dynamic_id={"enabled": True},
                                       dead_letter={"path": str(dead)},
                                       retry={"initial_interval": "1ms", "max_interval": "2ms", "max_retries": 2})
        proxy.item_faults = {"doc-1": [503] * 10}
        await exporter.start()
        await exporter.consume(_logs_with_ids(4))
        await exporter.shutdown()
    assert sorted(_ids(osmem, index)) == ["doc-0", "doc-2", "doc-3"]
    assert proxy.item_faults["doc-1"] == [503] * 7  # three attempts: the first and two retries
    entry = json.loads(dead.read_text())
    assert entry["id"] == "doc-1" and entry["error"]["type"] == "retries_exhausted"
    assert metric(settings, "flowglass_exporter_elasticsearch_rejected_documents_total",
                  signal="logs", reason="retries_exhausted") == 1


async def test_dead_letter_index_receives_refused_documents(osmem: str) -> None:
    index, dead_index = _unique("logs-dlq-src"), _unique("dead-letter")
    exporter, settings = _exporter(osmem, logs_index=index, mapping={"mode": "raw"}, dead_letter={"index": dead_index})
    bad = make_logs(2)
    bad.mutable().resource_logs[0].scope_logs[0].log_records[1].attributes[1].value.string_value = "slow"
    await exporter.start()
    await exporter.consume(bad)
    await exporter.shutdown()
    assert _count(osmem, index) == 1
    [entry] = _search(osmem, dead_index)
    assert entry["index"] == index and entry["error"]["type"] == "mapper_parsing_exception"
    assert json.loads(entry["document"])["latency_ms"] == "slow"
    assert metric(settings, "flowglass_exporter_elasticsearch_dead_letter_documents_total", outcome="written") == 1


async def test_data_stream_routing_reaches_the_server(osmem: str) -> None:
    dataset = uuid.uuid4().hex[:8]
    exporter, _ = _exporter(osmem, logs_dynamic_index={"enabled": True}, mapping={"mode": "otel"})
    batch = make_logs(2)
    batch.mutable().resource_logs[0].resource.attributes.extend(
        key_values({"data_stream.dataset": dataset, "data_stream.namespace": "prod"}))
    await exporter.start()
    await exporter.consume(batch)
    await exporter.shutdown()
    docs = _search(osmem, f"logs-{dataset}.otel-prod")
    assert len(docs) == 2
    assert docs[0]["data_stream"] == {"type": "logs", "dataset": f"{dataset}.otel", "namespace": "prod"}
    assert "data_stream.dataset" not in docs[0]["resource"]["attributes"]


async def test_tls_basic_auth_headers_and_gzip_reach_the_server(osmem: str, tmp_path: Path) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    index = _unique("logs-tls")
    async with FaultProxy(osmem, ssl_context=server_ctx) as proxy:
        exporter, _ = _exporter(proxy.url, logs_index=index, user="elastic", password="changeme",
                                headers={"X-Tenant": "ml"}, compression="gzip", tls={"ca_file": str(ca_file)})
        await exporter.start()
        await exporter.consume(make_logs(3))
        await exporter.shutdown()
    assert _count(osmem, index) == 3
    assert proxy.headers["authorization"] == "Basic ZWxhc3RpYzpjaGFuZ2VtZQ=="
    assert proxy.headers["x-tenant"] == "ml"
    assert proxy.headers["content-encoding"] == "gzip"
    assert proxy.headers["content-type"] == "application/x-ndjson"


async def test_an_untrusted_server_certificate_is_not_accepted(osmem: str, tmp_path: Path) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("localhost").configure_cert(server_ctx)
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    async with FaultProxy(osmem, ssl_context=server_ctx) as proxy:
        exporter, settings = _exporter(proxy.url, logs_index=_unique("logs-untrusted"),
                                       tls={"ca_file": str(other)}, sending_queue={"enabled": False},
                                       retry={"initial_interval": "1ms", "max_interval": "1ms", "max_retries": 1,
                                              "max_elapsed_time": "50ms"})
        await exporter.start()
        with pytest.raises(PermanentError):
            await exporter.consume(make_logs(2))
        await exporter.shutdown()
    assert proxy.forwarded == Counter()
    assert metric(settings, "flowglass_exporter_elasticsearch_rejected_documents_total",
                  signal="logs", reason="retries_exhausted") == 2


# -- through a whole agent ----------------------------------------------------------------

AGENT = """
receivers:
  otlp:
    protocols: {{http: {{endpoint: 127.0.0.1:0}}}}
processors:
  batch: {{timeout: 50ms}}
exporters:
  elasticsearch:
    endpoint: {url}
    logs_index: {logs}
    traces_index: {traces}
    document_id: hash
    flush: {{interval: 50ms}}
    retry: {{initial_interval: 10ms, max_interval: 50ms, max_retries: 5}}
service:
  telemetry: {{metrics: {{address: ""}}}}
  pipelines:
    logs: {{receivers: [otlp], processors: [batch], exporters: [elasticsearch]}}
    traces: {{receivers: [otlp], processors: [batch], exporters: [elasticsearch]}}
"""


async def test_an_agent_from_yaml_indexes_what_otlp_senders_send(osmem: str) -> None:
    from agent.component import ComponentID
    from agent.testing import running_agent

    logs_index, traces_index = _unique("agent-logs"), _unique("agent-traces")
    async with FaultProxy(osmem) as proxy:
        proxy.reject_requests = 1
        config = AGENT.format(url=proxy.url, logs=logs_index, traces=traces_index)
        async with running_agent(config) as service:
            receiver = service.graph.receivers[ComponentID("otlp")]
            async with aiohttp.ClientSession() as session:
                for path, batch in (("v1/logs", make_logs(20)), ("v1/traces", make_traces(5))):
                    async with session.post(f"http://127.0.0.1:{receiver.http_port}/{path}",
                                            data=batch.serialize(),
                                            headers={"Content-Type": "application/x-protobuf"}) as resp:
                        assert resp.status == 200
    # Shutting the agent down flushed and delivered everything it had accepted.
    assert _count(osmem, logs_index) == 20
    assert _count(osmem, traces_index) == 10  # 5 spans and their 5 events
    assert max(proxy.forwarded.values()) == 1
