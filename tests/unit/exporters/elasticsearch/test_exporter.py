"""The exporter's bulk logic against scripted `_bulk` answers: per-item retries, duplicates,
dead letters, request-level retries, flushing and the lifecycle."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.component import Kind, Settings
from agent.config.types import dec_hook
from agent.errors import PermanentError, RetryableError, ShuttingDownError
from agent.exporters.elasticsearch import ElasticsearchExporterConfig
from agent.exporters.elasticsearch.encode import Doc
from agent.exporters.elasticsearch.exporter import ElasticsearchExporter
from agent.model import Batch
from agent.testing import key_values, make_logs, make_metrics
from tests.unit.exporters.helpers import FakeClock, metric

Answer = tuple[int, str | None, bytes] | BaseException | asyncio.Event


def bulk(*statuses: int, error_type: str = "mapper_parsing_exception") -> tuple[int, None, bytes]:
    items = []
    for s in statuses:
        item: dict[str, Any] = {"status": s}
        if s >= 300:
            item["error"] = {"type": error_type if s == 400 else "es_error", "reason": f"status {s}"}
        items.append({"create": item})
    errors = any(s >= 300 for s in statuses)
    return 200, None, json.dumps({"took": 1, "errors": errors, "items": items}).encode()


class ScriptedExporter(ElasticsearchExporter):
    """`_post` answers from a script and records which document ids each request carried."""

    def __init__(self, settings: Settings, config: ElasticsearchExporterConfig, answers: list[Answer],
                 clock: FakeClock) -> None:
        super().__init__(settings, config, clock=clock)
        self.answers = answers
        self.requests: list[list[str | None]] = []

    async def _post(self, docs: list[Doc]) -> tuple[int, str | None, bytes]:
        self.requests.append([d.id for d in docs])
        answer = self.answers.pop(0) if self.answers else bulk(*[201] * len(docs))
        if isinstance(answer, asyncio.Event):
            await answer.wait()
            return bulk(*[201] * len(docs))
        if isinstance(answer, BaseException):
            raise answer
        return answer


def make(tmp_path: Path | None, *answers: Answer, **options: Any) -> tuple[ScriptedExporter, Settings, FakeClock]:
    raw: dict[str, Any] = {"endpoint": "http://es:9200", "flush": {"interval": 0},
                           "sending_queue": {"enabled": False}, "logs_dynamic_id": {"enabled": True},
                           "retry": {"initial_interval": "100ms", "max_retries": 3}, **options}
    if tmp_path is not None:
        raw.setdefault("dead_letter", {"path": str(tmp_path / "dead.jsonl")})
    config = msgspec.convert(raw, ElasticsearchExporterConfig, dec_hook=dec_hook)
    settings = Settings.for_test("elasticsearch", Kind.EXPORTER)
    clock = FakeClock()
    return ScriptedExporter(settings, config, list(answers), clock), settings, clock


def logs(n: int, start: int = 0) -> Batch:
    batch = make_logs(n)
    for i, r in enumerate(batch.mutable().resource_logs[0].scope_logs[0].log_records):
        r.attributes.extend(key_values({"elasticsearch.document_id": f"d{start + i}"}))
    return batch


def docs_metric(settings: Settings, outcome: str) -> float:
    return metric(settings, "flowglass_exporter_elasticsearch_documents_total", signal="logs", outcome=outcome)


def dead_lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "dead.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_only_the_items_to_retry_are_sent_again(tmp_path: Path) -> None:
    exporter, settings, clock = make(tmp_path, bulk(201, 429, 201, 503), bulk(201, 429), bulk(201))
    await exporter.start()
    await exporter.consume(logs(4))
    await exporter.shutdown()
    assert exporter.requests == [["d0", "d1", "d2", "d3"], ["d1", "d3"], ["d3"]]
    assert docs_metric(settings, "created") == 4
    assert docs_metric(settings, "retried") == 3
    assert metric(settings, "flowglass_exporter_sent_items_total", signal="logs") == 4
    assert len(clock.sleeps) == 2 and all(0.08 <= s <= 0.24 for s in clock.sleeps)  # backoff 100ms, then 200ms
    assert dead_lines(tmp_path) == []


async def test_a_conflict_on_an_id_the_exporter_chose_is_already_stored(tmp_path: Path) -> None:
    exporter, settings, _ = make(tmp_path, bulk(409, 201))
    await exporter.start()
    await exporter.consume(logs(2))
    await exporter.shutdown()
    assert docs_metric(settings, "duplicate") == 1 and docs_metric(settings, "created") == 1
    assert len(exporter.requests) == 1 and dead_lines(tmp_path) == []


async def test_a_conflict_without_an_id_of_ours_is_a_refusal(tmp_path: Path) -> None:
    exporter, settings, _ = make(tmp_path, bulk(409), logs_dynamic_id={"enabled": False})
    await exporter.start()
    with pytest.raises(PermanentError):
        await exporter.consume(make_logs(1))
    await exporter.shutdown()
    assert docs_metric(settings, "duplicate") == 0
    assert [e["status"] for e in dead_lines(tmp_path)] == [409]


async def test_permanent_item_failures_are_dead_lettered_and_the_rest_delivered(tmp_path: Path) -> None:
    exporter, settings, _ = make(tmp_path, bulk(201, 400, 201))
    await exporter.start()
    with pytest.raises(PermanentError, match="1 of 3 documents") as info:
        await exporter.consume(logs(3))
    await exporter.shutdown()
    assert info.value.rejected == 1
    [entry] = dead_lines(tmp_path)
    assert entry["id"] == "d1" and entry["status"] == 400 and entry["index"] == "logs-generic-default"
    assert entry["error"] == {"type": "mapper_parsing_exception", "reason": "status 400"}
    assert entry["document"]["body"]["text"] == "inference done 1"
    assert metric(settings, "flowglass_exporter_elasticsearch_rejected_documents_total",
                  signal="logs", reason="mapper_parsing_exception") == 1
    assert metric(settings, "flowglass_exporter_sent_items_total", signal="logs") == 2
    assert metric(settings, "flowglass_exporter_send_failed_items_total", signal="logs", reason="partial") == 1
    assert metric(settings, "flowglass_exporter_elasticsearch_dead_letter_documents_total", outcome="written") == 1


async def test_items_still_failing_after_the_last_retry_are_dead_lettered(tmp_path: Path) -> None:
    exporter, settings, _ = make(tmp_path, bulk(201, 503), bulk(503), bulk(503),
                                 retry={"initial_interval": "1ms", "max_retries": 2})
    await exporter.start()
    with pytest.raises(PermanentError):
        await exporter.consume(logs(2))
    await exporter.shutdown()
    assert exporter.requests == [["d0", "d1"], ["d1"], ["d1"]]
    [entry] = dead_lines(tmp_path)
    assert entry["id"] == "d1" and entry["error"]["type"] == "retries_exhausted" and entry["status"] == 503
    assert metric(settings, "flowglass_exporter_elasticsearch_rejected_documents_total",
                  signal="logs", reason="retries_exhausted") == 1


async def test_request_level_429_waits_for_retry_after() -> None:
    busy = (429, "3", b'{"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}')
    exporter, settings, clock = make(None, busy, RetryableError("connection reset"), bulk(201, 201))
    await exporter.start()
    await exporter.consume(logs(2))
    await exporter.shutdown()
    assert clock.sleeps[0] == 3.0 and len(clock.sleeps) == 2
    assert len(exporter.requests) == 3 and docs_metric(settings, "created") == 2


async def test_a_refused_request_is_dead_lettered_whole(tmp_path: Path) -> None:
    exporter, _settings, _ = make(tmp_path, (401, None, b'{"error":{"type":"security_exception","reason":"no"}}'))
    await exporter.start()
    with pytest.raises(PermanentError):
        await exporter.consume(logs(2))
    await exporter.shutdown()
    entries = dead_lines(tmp_path)
    assert [e["status"] for e in entries] == [401, 401]
    assert entries[0]["error"] == {"type": "http_401", "reason": "security_exception: no"}
    assert len(exporter.requests) == 1


async def test_an_unreadable_answer_resends_everything(tmp_path: Path) -> None:
    exporter, settings, _ = make(tmp_path, (200, None, b"<html>proxy error</html>"))
    await exporter.start()
    await exporter.consume(logs(2))
    await exporter.shutdown()
    assert exporter.requests == [["d0", "d1"], ["d0", "d1"]]
    assert docs_metric(settings, "created") == 2


async def test_without_retries_the_first_failure_is_final(tmp_path: Path) -> None:
    exporter, _, clock = make(tmp_path, bulk(201, 429), retry={"enabled": False})
    await exporter.start()
    with pytest.raises(PermanentError):
        await exporter.consume(logs(2))
    await exporter.shutdown()
    assert len(exporter.requests) == 1 and clock.sleeps == []
    assert [e["error"]["type"] for e in dead_lines(tmp_path)] == ["retries_exhausted"]


async def test_a_timed_out_last_attempt_is_given_up(tmp_path: Path) -> None:
    hang = asyncio.Event()
    exporter, _, _ = make(tmp_path, hang, hang, timeout="20ms",
                          retry={"initial_interval": "2ms", "max_retries": 0, "max_elapsed_time": "1ms"})
    await exporter.start()
    with pytest.raises(PermanentError):
        await exporter.consume(logs(1))
    await exporter.shutdown()
    assert len(exporter.requests) == 2  # the first within max_elapsed_time, the second past it
    [entry] = dead_lines(tmp_path)
    assert entry["error"]["type"] == "retries_exhausted" and "timeout" in entry["error"]["reason"]


TOO_LARGE = (413, None, b'{"error":{"type":"content_too_long_exception","reason":"too long"}}')


async def test_a_413_answer_sends_the_halves_down_to_the_one_document_too_large(tmp_path: Path) -> None:
    exporter, settings, clock = make(tmp_path, TOO_LARGE, bulk(201, 201), TOO_LARGE, bulk(201), TOO_LARGE)
    await exporter.start()
    with pytest.raises(PermanentError, match="1 of 4 documents") as info:
        await exporter.consume(logs(4))
    await exporter.shutdown()
    assert exporter.requests == [["d0", "d1", "d2", "d3"], ["d0", "d1"], ["d2", "d3"], ["d2"], ["d3"]]
    assert info.value.rejected == 1 and clock.sleeps == []
    [entry] = dead_lines(tmp_path)
    assert entry["id"] == "d3" and entry["status"] == 413
    assert entry["error"] == {"type": "http_413", "reason": "content_too_long_exception: too long"}
    assert docs_metric(settings, "created") == 3 and docs_metric(settings, "retried") == 0
    assert metric(settings, "flowglass_exporter_elasticsearch_rejected_documents_total",
                  signal="logs", reason="http_413") == 1
    assert metric(settings, "flowglass_exporter_sent_items_total", signal="logs") == 3


async def test_items_to_retry_from_the_halves_are_retried_together(tmp_path: Path) -> None:
    exporter, settings, clock = make(tmp_path, TOO_LARGE, bulk(201, 429), bulk(503, 201), bulk(201, 201))
    await exporter.start()
    await exporter.consume(logs(4))
    await exporter.shutdown()
    assert exporter.requests == [["d0", "d1", "d2", "d3"], ["d0", "d1"], ["d2", "d3"], ["d1", "d2"]]
    assert docs_metric(settings, "created") == 4 and docs_metric(settings, "retried") == 2
    assert len(clock.sleeps) == 1 and dead_lines(tmp_path) == []


async def test_after_a_connection_error_the_other_half_waits_for_the_next_attempt(tmp_path: Path) -> None:
    exporter, settings, _ = make(tmp_path, TOO_LARGE, RetryableError("connection reset"), bulk(201, 201, 201, 201))
    await exporter.start()
    await exporter.consume(logs(4))
    await exporter.shutdown()
    assert exporter.requests == [["d0", "d1", "d2", "d3"], ["d0", "d1"], ["d0", "d1", "d2", "d3"]]
    assert docs_metric(settings, "created") == 4 and dead_lines(tmp_path) == []


async def test_without_retries_a_timed_out_request_is_dead_lettered(tmp_path: Path) -> None:
    hang = asyncio.Event()
    exporter, settings, clock = make(tmp_path, hang, timeout="20ms", retry={"enabled": False})
    await exporter.start()
    with pytest.raises(PermanentError):
        await exporter.consume(logs(2))
    await exporter.shutdown()
    assert len(exporter.requests) == 1 and clock.sleeps == []
    entries = dead_lines(tmp_path)
    assert [e["id"] for e in entries] == ["d0", "d1"]
    assert all(e["error"]["type"] == "timeout" and "timeout of 0.02s" in e["error"]["reason"] for e in entries)
    assert metric(settings, "flowglass_exporter_elasticsearch_rejected_documents_total",
                  signal="logs", reason="timeout") == 2
    assert metric(settings, "flowglass_exporter_elasticsearch_dead_letter_documents_total", outcome="written") == 2
    assert metric(settings, "flowglass_exporter_send_failed_items_total", signal="logs", reason="permanent") == 2


async def test_without_a_dead_letter_refused_documents_are_counted_as_lost() -> None:
    exporter, settings, _ = make(None, bulk(400))
    await exporter.start()
    with pytest.raises(PermanentError, match="no dead_letter"):
        await exporter.consume(logs(1))
    await exporter.shutdown()
    assert metric(settings, "flowglass_exporter_elasticsearch_dead_letter_documents_total", outcome="lost") == 1


async def test_error_types_are_bounded_metric_labels(tmp_path: Path) -> None:
    exporter, settings, _ = make(tmp_path, bulk(400, error_type="Weird Type!"))
    await exporter.start()
    with pytest.raises(PermanentError):
        await exporter.consume(logs(1))
    await exporter.shutdown()
    assert metric(settings, "flowglass_exporter_elasticsearch_rejected_documents_total",
                  signal="logs", reason="other") == 1


# -- flushing and lifecycle ---------------------------------------------------------------


async def settle(exporter: ScriptedExporter, requests: int) -> None:
    """Let the sender's consumer tasks send until `requests` requests were made."""
    for _ in range(500):
        if len(exporter.requests) >= requests:
            return
        await asyncio.sleep(0.01)


QUEUE = {"enabled": True, "queue_size": 10}


async def test_documents_wait_for_flush_bytes() -> None:
    one = logs(1)
    exporter, _, _ = make(None)
    size = sum(d.nbytes for d in exporter._encoder.encode(one)[0])
    exporter, settings, _ = make(None, flush={"interval": "1h", "bytes": size * 3}, sending_queue=QUEUE)
    await exporter.start()
    await exporter.consume(logs(1, 0))
    await exporter.consume(logs(1, 1))
    await asyncio.sleep(0.02)
    assert exporter.requests == []
    await exporter.consume(logs(1, 2))
    await settle(exporter, 1)
    assert exporter.requests == [["d0", "d1", "d2"]]
    await exporter.consume(logs(1, 3))
    await exporter.shutdown()  # flushes what waits
    assert exporter.requests[-1] == ["d3"]
    assert docs_metric(settings, "created") == 4


async def test_documents_are_sent_after_flush_interval() -> None:
    exporter, _settings, _ = make(None, flush={"interval": "10ms"}, sending_queue=QUEUE)
    await exporter.start()
    await exporter.consume(logs(2))
    await settle(exporter, 1)
    assert exporter.requests == [["d0", "d1"]]
    await exporter.consume(logs(1, 2))
    await settle(exporter, 2)
    assert exporter.requests == [["d0", "d1"], ["d2"]]
    await exporter.shutdown()


async def test_without_a_queue_each_consume_sends_its_own_documents() -> None:
    exporter, _, _ = make(None, flush={"interval": "1h"})
    await exporter.start()
    await exporter.consume(logs(2))
    assert exporter.requests == [["d0", "d1"]]  # the caller got the outcome
    await exporter.shutdown()


async def test_large_batches_are_split_by_flush_bytes() -> None:
    exporter, _, _ = make(None, flush={"interval": 0, "bytes": 1})
    await exporter.start()
    await exporter.consume(logs(3))
    await exporter.shutdown()
    assert exporter.requests == [["d0"], ["d1"], ["d2"]]


async def test_queued_requests_are_delivered_before_shutdown_returns() -> None:
    exporter, settings, _ = make(None, sending_queue={"enabled": True, "queue_size": 10}, flush={"interval": "1h"})
    await exporter.start()
    for i in range(5):
        await exporter.consume(logs(2, 2 * i))
    await exporter.shutdown()
    assert sorted(i for r in exporter.requests for i in r if i) == sorted(f"d{i}" for i in range(10))
    assert docs_metric(settings, "created") == 10


async def test_lifecycle_refusals() -> None:
    exporter, _, _ = make(None)
    await exporter.start()
    with pytest.raises(PermanentError, match="logs and traces"):
        await exporter.consume(make_metrics(3))
    await exporter.shutdown()
    await exporter.shutdown()  # idempotent
    with pytest.raises(ShuttingDownError):
        await exporter.consume(logs(1))


async def test_auth_and_headers() -> None:
    exporter, _, _ = make(None, api_key="abc", headers={"X-Tenant": "t1"})
    assert exporter._headers["Authorization"] == "ApiKey abc"
    assert exporter._headers["X-Tenant"] == "t1"
    assert exporter._headers["Content-Type"] == "application/x-ndjson"
    assert exporter._headers["Content-Encoding"] == "gzip"
    exporter, _, _ = make(None, user="elastic", password="pw", compression="none")
    assert exporter._headers["Authorization"] == "Basic ZWxhc3RpYzpwdw=="
    assert "Content-Encoding" not in exporter._headers


async def test_a_dead_letter_that_cannot_be_written_is_counted(tmp_path: Path) -> None:
    exporter, settings, _ = make(tmp_path, bulk(400), dead_letter={"path": str(tmp_path / "missing" / "dead.jsonl")})
    await exporter.start()
    with pytest.raises(PermanentError):
        await exporter.consume(logs(1))
    await exporter.shutdown()
    assert metric(settings, "flowglass_exporter_elasticsearch_dead_letter_documents_total", outcome="failed") == 1
    assert metric(settings, "flowglass_exporter_elasticsearch_dead_letter_documents_total", outcome="written") == 0


async def test_dead_letter_index_entries_carry_the_document_as_text(tmp_path: Path) -> None:
    exporter, settings, _ = make(None, bulk(201, 400), bulk(201), dead_letter={"index": "dead-letters"})
    sent: list[list[Doc]] = []
    original = exporter._post

    async def recording(docs: list[Doc]) -> tuple[int, str | None, bytes]:
        sent.append(list(docs))
        return await original(docs)

    exporter._post = recording  # type: ignore[method-assign]
    await exporter.start()
    with pytest.raises(PermanentError):
        await exporter.consume(logs(2))
    await exporter.shutdown()
    [entry_doc] = sent[1]
    assert entry_doc.index == "dead-letters"
    assert json.loads(entry_doc.action) == {"create": {"_index": "dead-letters"}}
    entry = json.loads(entry_doc.body)
    assert entry["id"] == "d1" and entry["status"] == 400
    assert json.loads(entry["document"])["body"]["text"] == "inference done 1"
    assert metric(settings, "flowglass_exporter_elasticsearch_dead_letter_documents_total", outcome="written") == 1


async def test_consume_does_not_change_the_batch() -> None:
    """`mutates_data = False`: the exporter only reads what it is given."""
    exporter, _, _ = make(None, document_id="hash")
    assert exporter.mutates_data is False
    batch = logs(3)
    before = batch.message.SerializeToString()
    await exporter.start()
    await exporter.consume(batch)
    await exporter.shutdown()
    assert batch.message.SerializeToString() == before


async def test_an_outage_longer_than_max_retries_loses_nothing(tmp_path: Path) -> None:
    # The cluster is down or restarting: whole-request failures do not use up max_retries.
    down = (503, None, b'{"error":{"type":"unavailable","reason":"restarting"}}')
    answers: list[Answer] = [RetryableError("connection refused")] * 4 + [down] * 4
    exporter, settings, clock = make(tmp_path, *answers, bulk(201, 429), bulk(201),
                                     retry={"initial_interval": "1s", "max_interval": "4s", "max_retries": 1})
    await exporter.start()
    await exporter.consume(logs(2))
    await exporter.shutdown()
    assert len(exporter.requests) == 10 and exporter.requests[-1] == ["d1"]
    assert docs_metric(settings, "created") == 2 and dead_lines(tmp_path) == []
    assert sum(clock.sleeps) > 20  # it waited out the outage with backoff


async def test_an_outage_past_max_elapsed_time_is_dead_lettered(tmp_path: Path) -> None:
    answers: list[Answer] = [RetryableError("connection refused")] * 50
    exporter, settings, clock = make(tmp_path, *answers,
                                     retry={"initial_interval": "1s", "max_interval": "2s", "max_retries": 5,
                                            "max_elapsed_time": "10s"})
    await exporter.start()
    with pytest.raises(PermanentError):
        await exporter.consume(logs(2))
    await exporter.shutdown()
    assert 10 <= sum(clock.sleeps) <= 10 + 2 * 1.2 * 6  # gave up soon after 10 s (then max_retries)
    assert [e["error"]["type"] for e in dead_lines(tmp_path)] == ["retries_exhausted"] * 2
    assert metric(settings, "flowglass_exporter_elasticsearch_rejected_documents_total",
                  signal="logs", reason="retries_exhausted") == 2
