"""The `_bulk` exchange: request bodies, the request that waits in the sending queue, and
every item's outcome read from the response.

A `BulkRequest` is what the exporter hands the shared `Sender`: a `Batch` (so the queue can
bound and count it) that carries encoded documents instead of an OTLP message. Its
`pending` list shrinks as items are stored, so a retry resends only what is still to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from agent.exporters.elasticsearch.encode import Doc
from agent.model import Batch, Signal


class BulkRequest(Batch):
    """Documents of one signal on their way to `_bulk`, with the attempts made so far."""

    __slots__ = ("_nbytes", "attempts", "outage_since", "pending", "rejected")

    def __init__(self, signal: Signal, docs: list[Doc]) -> None:
        super().__init__(signal, data=b"", items=len(docs))
        self.pending = docs
        self._nbytes = sum(d.nbytes for d in docs)
        #: Attempts made (each a `_bulk` POST of the pending documents).
        self.attempts = 0
        #: Documents given up on (dead-lettered) across attempts.
        self.rejected = 0
        #: When the run of attempts that failed as a whole (no answer, 429/5xx) began.
        self.outage_since: float | None = None

    @property
    def nbytes(self) -> int:
        return self._nbytes

    @property
    def message(self) -> Any:
        raise TypeError("a BulkRequest holds Elasticsearch documents, not an OTLP message")

    def serialize(self) -> bytes:
        return ndjson(self.pending)

    def copy(self) -> BulkRequest:
        return BulkRequest(self.signal, list(self.pending))

    def __repr__(self) -> str:
        return f"<BulkRequest {self.signal.value} pending={len(self.pending)} attempts={self.attempts}>"


def ndjson(docs: Sequence[Doc]) -> bytes:
    """The `_bulk` body: action line and document for each, each line ending in a newline."""
    parts: list[bytes] = []
    append = parts.append
    for doc in docs:
        append(doc.action)
        append(doc.body)
        append(b"\n")
    return b"".join(parts)


def split(docs: list[Doc], max_bytes: int) -> list[list[Doc]]:
    """`docs` in runs of at most `max_bytes` of body each (a larger document goes alone)."""
    if max_bytes <= 0:
        return [docs] if docs else []
    runs: list[list[Doc]] = []
    run: list[Doc] = []
    size = 0
    for doc in docs:
        n = doc.nbytes
        if run and size + n > max_bytes:
            runs.append(run)
            run, size = [], 0
        run.append(doc)
        size += n
    if run:
        runs.append(run)
    return runs


def halves(docs: list[Doc]) -> tuple[list[Doc], list[Doc]]:
    """`docs` (two or more) cut where half of their bytes are on each side, one document at least each."""
    assert len(docs) >= 2
    target = sum(d.nbytes for d in docs) / 2
    size = 0
    cut = 1
    for i, doc in enumerate(docs[:-1]):
        size += doc.nbytes
        cut = i + 1
        if size >= target:
            break
    return docs[:cut], docs[cut:]


# -- the response -------------------------------------------------------------------------


class _ErrorCause(msgspec.Struct):
    type: str = ""
    reason: str | None = None


class _Error(msgspec.Struct):
    type: str = ""
    reason: str | None = None
    caused_by: _ErrorCause | None = None


class _Item(msgspec.Struct):
    status: int = 0
    error: _Error | str | None = None


class _Errors(msgspec.Struct):
    errors: bool = True


class _Response(msgspec.Struct):
    items: list[dict[str, _Item]] = msgspec.field(default_factory=list)


_errors_decoder = msgspec.json.Decoder(_Errors)
_response_decoder = msgspec.json.Decoder(_Response)


@dataclass(frozen=True)
class ItemOutcome:
    """One bulk item's status and, for a failure, the error type and reason."""

    status: int
    error_type: str = ""
    reason: str = ""


class BulkResponseError(ValueError):
    """The response body is not a `_bulk` answer for the request that was sent."""


def outcomes(body: bytes, count: int) -> list[ItemOutcome] | None:
    """Every item's outcome, in request order; None when no item failed (`errors: false`)."""
    try:
        if not _errors_decoder.decode(body).errors:
            return None
        items = _response_decoder.decode(body).items
    except msgspec.DecodeError as exc:
        raise BulkResponseError(f"the _bulk response is not valid: {exc}") from None
    if len(items) != count:
        raise BulkResponseError(f"the _bulk response has {len(items)} items for {count} documents")
    result: list[ItemOutcome] = []
    for entry in items:
        if len(entry) != 1:
            raise BulkResponseError("a _bulk response item does not have exactly one action")
        item = next(iter(entry.values()))
        result.append(_outcome(item))
    return result


def _outcome(item: _Item) -> ItemOutcome:
    error = item.error
    if error is None:
        return ItemOutcome(item.status)
    if isinstance(error, str):
        return ItemOutcome(item.status, "error", error)
    reason = error.reason or ""
    if error.caused_by is not None and error.caused_by.reason:
        reason = f"{reason} (caused by {error.caused_by.type}: {error.caused_by.reason})"
    return ItemOutcome(item.status, error.type or "error", reason)
