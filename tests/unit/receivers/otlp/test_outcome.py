"""Error → status mapping, response bodies, bounded decompression, CORS origins, error logs."""

from __future__ import annotations

import gzip
import logging
import tracemalloc
import zlib

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

from agent.errors import (
    MemoryRefusedError,
    PermanentError,
    QueueFullError,
    RetryableError,
    ShuttingDownError,
)
from agent.model import Signal
from agent.receivers.otlp.http import _Refusal, decompress, origin_matcher
from agent.receivers.otlp.intake import ErrorLog
from agent.receivers.otlp.outcome import (
    GRPC_STATUS_DETAILS_KEY,
    Verdict,
    classify,
    export_response,
    export_response_json,
    grpc_trailers,
    retry_after_header,
)


@pytest.mark.parametrize(
    ("error", "verdict", "code", "status", "retry_after"),
    [
        (PermanentError("bad"), Verdict.PERMANENT, grpc.StatusCode.INVALID_ARGUMENT, 400, None),
        (PermanentError("all", rejected=10), Verdict.PERMANENT, grpc.StatusCode.INVALID_ARGUMENT, 400, None),
        (PermanentError("some", rejected=3), Verdict.PARTIAL, grpc.StatusCode.OK, 200, None),
        (
            MemoryRefusedError("full", retry_after=2.5),
            Verdict.MEMORY_LIMIT,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            429,
            2.5,
        ),
        (MemoryRefusedError("full"), Verdict.MEMORY_LIMIT, grpc.StatusCode.RESOURCE_EXHAUSTED, 429, 1.0),
        (RetryableError("later", retry_after=7), Verdict.RETRYABLE, grpc.StatusCode.UNAVAILABLE, 503, 7),
        (QueueFullError("queue full"), Verdict.RETRYABLE, grpc.StatusCode.UNAVAILABLE, 503, 1.0),
        (ShuttingDownError("bye"), Verdict.RETRYABLE, grpc.StatusCode.UNAVAILABLE, 503, 1.0),
        (RuntimeError("boom"), Verdict.RETRYABLE, grpc.StatusCode.UNAVAILABLE, 503, 1.0),
    ],
)
def test_classify_follows_design(
    error: Exception, verdict: Verdict, code: grpc.StatusCode, status: int, retry_after: float | None
) -> None:
    outcome = classify(error, items=10)
    assert outcome.verdict is verdict
    assert outcome.grpc_code is code
    assert outcome.http_status == status
    assert outcome.retry_after == retry_after
    assert outcome.message == str(error)


def test_retry_after_header_is_whole_seconds_at_least_one() -> None:
    assert retry_after_header(0.2) == "1"
    assert retry_after_header(1.0) == "1"
    assert retry_after_header(2.5) == "3"


def test_partial_success_responses_name_the_signal_field() -> None:
    outcome = classify(PermanentError("2 dropped", rejected=2), items=5)
    metrics = ExportMetricsServiceResponse.FromString(export_response(Signal.METRICS, outcome))
    assert metrics.partial_success.rejected_data_points == 2
    assert metrics.partial_success.error_message == "2 dropped"
    logs = ExportLogsServiceResponse.FromString(export_response(Signal.LOGS, outcome))
    assert logs.partial_success.rejected_log_records == 2
    assert b'"rejectedSpans": "2"' in export_response_json(Signal.TRACES, outcome)


def test_grpc_trailers_carry_retry_info() -> None:
    ((key, value),) = grpc_trailers(grpc.StatusCode.UNAVAILABLE, "later", 1.5)
    assert key == GRPC_STATUS_DETAILS_KEY
    status = status_pb2.Status.FromString(value)
    assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert info.retry_delay.ToNanoseconds() == 1_500_000_000
    assert grpc_trailers(grpc.StatusCode.INVALID_ARGUMENT, "bad", None) == ()


def test_decompress_gzip_deflate_and_raw_deflate() -> None:
    data = b"payload " * 100
    assert decompress(gzip.compress(data), "gzip", 10_000) == data
    assert decompress(zlib.compress(data), "deflate", 10_000) == data
    raw = zlib.compressobj(wbits=-15)
    assert decompress(raw.compress(data) + raw.flush(), "deflate", 10_000) == data
    # Several gzip members decode as their concatenation.
    assert decompress(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", 100) == b"abcd"
    assert decompress(data, "identity", 10) == data  # no encoding: the caller bounds the body


@pytest.mark.parametrize(
    ("body", "encoding", "status", "reason"),
    [
        (gzip.compress(b"\0" * 1_000_000), "gzip", 413, "too_large"),
        (gzip.compress(b"a" * 600) + gzip.compress(b"b" * 600), "gzip", 413, "too_large"),
        (gzip.compress(b"x" * 100)[:-12], "gzip", 400, "decompression"),
        (b"not gzip at all", "gzip", 400, "decompression"),
        (b"whatever", "br", 415, "unsupported_media_type"),
    ],
)
def test_decompress_refusals(body: bytes, encoding: str, status: int, reason: str) -> None:
    with pytest.raises(_Refusal) as info:
        decompress(body, encoding, 1000)
    assert (info.value.status, info.value.reason) == (status, reason)


def test_decompression_stops_at_the_limit_instead_of_inflating_a_bomb() -> None:
    packer = zlib.compressobj(1, wbits=31)
    bomb = packer.compress(bytes(20_000_000)) + packer.flush()  # 20 MB of zeros in ~90 KB
    tracemalloc.start()
    try:
        with pytest.raises(_Refusal):
            decompress(bomb, "gzip", 64 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


def test_origin_patterns_use_star_wildcards() -> None:
    matcher = origin_matcher(["https://*.example.com", "http://localhost:3000"])
    assert matcher is not None
    assert matcher.match("https://app.example.com")
    assert matcher.match("http://localhost:3000")
    assert not matcher.match("https://example.org")
    assert not matcher.match("http://localhost:30001")
    assert origin_matcher([]) is None


def test_unexpected_errors_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = ErrorLog(logging.getLogger("test.otlp"), interval=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.otlp"):
        for _ in range(5):
            log.report(RuntimeError("boom"), {"component": "otlp"})
        log.report(KeyError("other"), {"component": "otlp"})
        now[0] = 61.0
        log.report(RuntimeError("boom"), {"component": "otlp"})
    records = caplog.records
    assert len(records) == 3
    assert all(r.levelno == logging.WARNING and r.exc_info for r in records)
    assert records[2].similar_errors_not_logged == 4  # type: ignore[attr-defined]
