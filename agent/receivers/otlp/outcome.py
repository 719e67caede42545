"""What a consumer's answer means for an OTLP sender, in one place for gRPC and HTTP.

`classify()` turns the result of `consume()` into an `Outcome` (DESIGN §4):

| consumer                                   | gRPC                 | HTTP | counted as      |
| ------------------------------------------ | -------------------- | ---- | --------------- |
| returned                                   | OK                   | 200  | accepted        |
| `PermanentError(rejected=n)`, n < items    | OK, partial_success  | 200  | `partial`       |
| other `PermanentError`                     | INVALID_ARGUMENT     | 400  | `permanent`     |
| `MemoryRefusedError`                       | RESOURCE_EXHAUSTED   | 429  | `memory_limit`  |
| anything else                              | UNAVAILABLE          | 503  | `retryable`     |

The last two carry a retry hint: `google.rpc.RetryInfo` in the gRPC status details, a
`Retry-After` header over HTTP. This module also builds the response bodies (export
responses with `partial_success`, `google.rpc.Status`), protobuf and OTLP/JSON.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import grpc
from google.protobuf import duration_pb2, json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]  # no py.typed
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from agent.errors import MemoryRefusedError, PermanentError, RetryableError
from agent.model import Signal

#: Seconds a sender is asked to wait when the error gives no hint.
DEFAULT_RETRY_AFTER = 1.0

#: The trailing metadata key that carries a serialized `google.rpc.Status`.
GRPC_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    PARTIAL = "partial"
    PERMANENT = "permanent"
    MEMORY_LIMIT = "memory_limit"
    RETRYABLE = "retryable"


_GRPC_CODES = {
    Verdict.ACCEPTED: grpc.StatusCode.OK,
    Verdict.PARTIAL: grpc.StatusCode.OK,
    Verdict.PERMANENT: grpc.StatusCode.INVALID_ARGUMENT,
    Verdict.MEMORY_LIMIT: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Verdict.RETRYABLE: grpc.StatusCode.UNAVAILABLE,
}
_HTTP_STATUSES = {
    Verdict.ACCEPTED: 200,
    Verdict.PARTIAL: 200,
    Verdict.PERMANENT: 400,
    Verdict.MEMORY_LIMIT: 429,
    Verdict.RETRYABLE: 503,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one export request.

    `rejected` is the partial-success count; `retry_after` (seconds) is set exactly for the
    verdicts a sender should retry.
    """

    verdict: Verdict
    message: str = ""
    rejected: int = 0
    retry_after: float | None = None

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return _GRPC_CODES[self.verdict]

    @property
    def http_status(self) -> int:
        return _HTTP_STATUSES[self.verdict]

    @property
    def is_success(self) -> bool:
        return self.verdict is Verdict.ACCEPTED or self.verdict is Verdict.PARTIAL


ACCEPTED = Outcome(Verdict.ACCEPTED)


def classify(error: BaseException, items: int) -> Outcome:
    """The outcome of a `consume()` of a batch of `items` items that raised `error`."""
    message = str(error) or type(error).__name__
    if isinstance(error, PermanentError):
        if error.rejected is not None and 0 <= error.rejected < items:
            return Outcome(Verdict.PARTIAL, message, rejected=error.rejected)
        return Outcome(Verdict.PERMANENT, message)
    retry_after = DEFAULT_RETRY_AFTER
    if isinstance(error, RetryableError) and error.retry_after is not None and error.retry_after > 0:
        retry_after = error.retry_after
    if isinstance(error, MemoryRefusedError):
        return Outcome(Verdict.MEMORY_LIMIT, message, retry_after=retry_after)
    return Outcome(Verdict.RETRYABLE, message, retry_after=retry_after)


def retry_after_header(seconds: float) -> str:
    """`Retry-After` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


# --- response bodies -------------------------------------------------------------------------

_RESPONSE_TYPES: dict[Signal, type[Message]] = {
    Signal.TRACES: trace_service_pb2.ExportTraceServiceResponse,
    Signal.METRICS: metrics_service_pb2.ExportMetricsServiceResponse,
    Signal.LOGS: logs_service_pb2.ExportLogsServiceResponse,
}
_REJECTED_FIELDS = {
    Signal.TRACES: "rejected_spans",
    Signal.METRICS: "rejected_data_points",
    Signal.LOGS: "rejected_log_records",
}

#: An empty export response encodes as no bytes at all; over JSON it is `{}`.
EMPTY_RESPONSE = b""
EMPTY_JSON_RESPONSE = b"{}"


def _export_response(signal: Signal, outcome: Outcome) -> Message:
    response = _RESPONSE_TYPES[signal]()
    if outcome.verdict is Verdict.PARTIAL:
        partial = response.partial_success
        setattr(partial, _REJECTED_FIELDS[signal], outcome.rejected)
        partial.error_message = outcome.message
    return response


def export_response(signal: Signal, outcome: Outcome) -> bytes:
    """The protobuf export response for a successful outcome (with `partial_success`)."""
    if outcome.verdict is Verdict.ACCEPTED:
        return EMPTY_RESPONSE
    data: bytes = _export_response(signal, outcome).SerializeToString()
    return data


def export_response_json(signal: Signal, outcome: Outcome) -> bytes:
    """The OTLP/JSON export response for a successful outcome."""
    if outcome.verdict is Verdict.ACCEPTED:
        return EMPTY_JSON_RESPONSE
    return _to_json(_export_response(signal, outcome))


def rpc_status(code: grpc.StatusCode, message: str, retry_after: float | None = None) -> status_pb2.Status:
    """A `google.rpc.Status`, with a `RetryInfo` detail when `retry_after` is given."""
    status = status_pb2.Status(code=code.value[0], message=message)
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return status


def grpc_trailers(
    code: grpc.StatusCode, message: str, retry_after: float | None
) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata carrying the retry hint, or nothing when there is none."""
    if retry_after is None:
        return ()
    return ((GRPC_STATUS_DETAILS_KEY, rpc_status(code, message, retry_after).SerializeToString()),)


def status_body(
    code: grpc.StatusCode, message: str, *, json: bool, retry_after: float | None = None
) -> bytes:
    """An HTTP error body: a `google.rpc.Status` in the request's encoding."""
    status = rpc_status(code, message, retry_after)
    if json:
        return _to_json(status)
    data: bytes = status.SerializeToString()
    return data


def _to_json(message: Message) -> bytes:
    text: str = json_format.MessageToJson(message, indent=None)
    return text.encode()
