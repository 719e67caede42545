"""Shared helpers for integration tests: agents as processes, OTLP files, raw OTLP calls."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from agent.model import Signal, otlp_json
from agent.model.batch import Request

TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

_KEYS = {"resourceSpans": Signal.TRACES, "resourceMetrics": Signal.METRICS, "resourceLogs": Signal.LOGS}


def read_otlp_jsonl(path: Path) -> list[tuple[Signal, Request]]:
    """Every request written by a `file` exporter (format json), in order."""
    out: list[tuple[Signal, Request]] = []
    if not path.exists():
        return out
    text = path.read_text()
    # The exporter may be writing right now: only whole lines (ending in a newline) count.
    for line in text[: text.rfind("\n") + 1].splitlines():
        if not line.strip():
            continue
        doc = json.loads(line)
        signal = next((s for k, s in _KEYS.items() if k in doc), None)
        if signal is None:
            continue
        out.append((signal, otlp_json.decode(signal, line)))
    return out


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def raw_export(target: str, method: str, payload: bytes, *, timeout: float = 10.0,
               credentials: grpc.ChannelCredentials | None = None,
               compression: grpc.Compression | None = None) -> tuple[grpc.StatusCode, str, bytes]:
    """One unary OTLP call with raw bytes: (status code, details, response bytes)."""
    opts = [("grpc.max_send_message_length", 64 << 20)]
    channel = (grpc.secure_channel(target, credentials, options=opts) if credentials
               else grpc.insecure_channel(target, options=opts))
    try:
        call = channel.unary_unary(method)
        try:
            resp = call(payload, timeout=timeout, compression=compression)
            return grpc.StatusCode.OK, "", resp
        except grpc.RpcError as err:
            return err.code(), err.details() or "", b""
    finally:
        channel.close()


def spans_by_id(requests: list[tuple[Signal, Request]]) -> dict[bytes, tuple[object, object, object]]:
    """span_id → (resource, scope, span) over every traces request."""
    out: dict[bytes, tuple[object, object, object]] = {}
    for signal, msg in requests:
        if signal is not Signal.TRACES:
            continue
        for rs in msg.resource_spans:  # type: ignore[union-attr]
            for ss in rs.scope_spans:
                for span in ss.spans:
                    out[span.span_id] = (rs.resource, ss.scope, span)
    return out
