"""`ElasticsearchExporter`: the flush buffer, the `_bulk` exchange item by item, the dead letter.

The shared `QueuedExporter` / `Sender` own the queue, the consumer tasks (`num_workers`)
and the backoff. This module adds what is particular to `_bulk`: a request whose items
succeed and fail one by one. `_send` posts the pending documents of a `BulkRequest`, drops
those that were stored, dead-letters those refused for good, and raises `RetryableError`
while some are left to retry, so the sender backs off and calls again with only those.
Attempts are counted on the request and bounded by `retry.max_retries`; attempts that failed
as a whole (no answer, 429/5xx to the request) are not counted until the failures have lasted
`retry.max_elapsed_time`, so an outage of the cluster loses nothing. A request answered
413 (too large) is sent again at once in halves, down to single documents. `timeout`
bounds each request here rather than in the sender, so that a request with no answer is
settled like any other failure (retried, or dead-lettered as `timeout` without retries).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:  # aiohttp is imported on start, so agents that do not use it stay smaller.
    import aiohttp

import agent
from agent.component import Settings, TaskOwner
from agent.config.types import Duration
from agent.errors import PermanentError, RetryableError, ShuttingDownError
from agent.exporters.elasticsearch import ElasticsearchExporterConfig
from agent.exporters.elasticsearch.bulk import (
    BulkRequest,
    BulkResponseError,
    ItemOutcome,
    halves,
    ndjson,
    outcomes,
    split,
)
from agent.exporters.elasticsearch.deadletter import DeadLetter, DeadLetterEntry
from agent.exporters.elasticsearch.encode import Doc, DocumentEncoder
from agent.exporters.elasticsearch.routing import LogstashDate
from agent.exporters.http import open_session
from agent.exporters.otlp_http import compress, parse_retry_after
from agent.exporters.sending import SYSTEM_CLOCK, Clock, QueuedExporter, RetryConfig
from agent.model import Batch, Signal

_SIGNALS = (Signal.LOGS, Signal.TRACES)
#: Bodies at least this large are compressed in a thread (zlib releases the GIL).
_THREAD_COMPRESS_BYTES = 256 * 1024
#: At most this much of a response is read (a `_bulk` answer is about 250 bytes an item).
_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Distinct error types counted by name per exporter; the rest are counted as `other`.
_MAX_REASONS = 32


class _Buffer:
    """Documents of one signal waiting to fill a bulk request."""

    __slots__ = ("docs", "nbytes", "since")

    def __init__(self) -> None:
        self.docs: list[Doc] = []
        self.nbytes = 0
        self.since = 0.0

    def take(self) -> list[Doc]:
        docs, self.docs, self.nbytes = self.docs, [], 0
        return docs


class _TimedOut(RetryableError):
    """A request got no answer within `timeout`."""


@dataclass
class _Attempt:
    """What one attempt (a request, or the halves it was split into) left to send again."""

    retry: list[Doc] = field(default_factory=list)
    #: The last failure to retry: the HTTP status (0 without an answer), why, the server's hint.
    status: int = 0
    reason: str = ""
    retry_after: float | None = None
    timed_out: bool = False
    #: A request got no answer: the halves still to send wait for the next attempt.
    broken: bool = False
    #: Some documents are to be retried because of their own item status (not because the
    #: whole request failed): such an attempt counts against `retry.max_retries`.
    by_item: bool = False

    def keep(self, docs: list[Doc], status: int | None = None, reason: str = "",
             retry_after: float | None = None, *, timed_out: bool = False) -> None:
        """Keep `docs` for the next attempt (with the failure, unless `status` is None)."""
        self.retry.extend(docs)
        if status is not None:
            self.status, self.reason, self.retry_after, self.timed_out = status, reason, retry_after, timed_out


class ElasticsearchExporter(QueuedExporter):
    encode_on_submit = False

    def __init__(self, settings: Settings, config: ElasticsearchExporterConfig, *, clock: Clock = SYSTEM_CLOCK) -> None:
        """`clock` is for tests: backoff waits go through it."""
        # Documents already taken from the flush buffer have been accepted, so a full queue
        # makes the flush wait for room rather than refuse (the Collector's bulk indexer
        # blocks too); the wait reaches upstream through `consume`.
        queue = msgspec.structs.replace(config.sending_queue, num_consumers=config.workers(), block_on_overflow=True)
        retry = config.retry
        super().__init__(
            settings,
            sending_queue=queue,
            retry_on_failure=RetryConfig(enabled=retry.enabled, initial_interval=retry.initial_interval,
                                         max_interval=retry.max_interval, multiplier=2.0,
                                         randomization_factor=0.2, max_elapsed_time=Duration(0)),
            # Each request gets `timeout` in `_request`: an attempt whose request is split
            # after a 413 answer makes several, and a request that times out must still be
            # settled (dead-lettered) by `_send` when it was the last attempt.
            timeout=Duration(0),
            clock=clock,
        )
        self._config = config
        self._log = settings.logger
        self._label = settings.label
        self._max_attempts = 1 + retry.max_retries if retry.enabled else 1
        self._max_outage = float(retry.max_elapsed_time)
        self._clock = clock
        self._retries_enabled = retry.enabled
        self._timeout = float(config.timeout)
        self._split_logged = False
        self._retry_items = frozenset(retry.retry_on_status)
        lf = config.logstash_format
        self._encoder = DocumentEncoder(
            mode=config.mapping.mode,
            logs_index=config.logs_index,
            traces_index=config.traces_index,
            logs_dynamic_index=config.logs_dynamic_index.enabled,
            traces_dynamic_index=config.traces_dynamic_index.enabled,
            logstash=LogstashDate(lf.prefix_separator, lf.date_format) if lf.enabled else None,
            pipeline=config.pipeline,
            logs_dynamic_id=config.logs_dynamic_id.enabled,
            hash_ids=config.document_id == "hash",
        )
        self._urls = [f"{u.rstrip('/')}/_bulk" for u in config.urls()]
        self._next_url = 0
        self._headers = {
            "User-Agent": f"flowglass/{agent.__version__}",
            **config.headers,
            "Content-Type": "application/x-ndjson",
            "Accept": "application/json",
        }
        if config.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"
        if config.api_key:
            self._headers["Authorization"] = f"ApiKey {config.api_key}"
        elif config.user:
            token = base64.b64encode(f"{config.user}:{config.password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._buffers = {signal: _Buffer() for signal in _SIGNALS}
        self._flush_bytes = int(config.flush.bytes)
        # Without a queue each consume sends its own documents, so that its caller gets
        # their outcome (a buffer would hand one caller the outcome of others' documents).
        self._flush_interval = float(config.flush.interval) if config.sending_queue.enabled else 0.0
        self._wake = asyncio.Event()
        self._timer = TaskOwner(settings.label, settings.logger, settings.report_status)
        self._closing = False
        self._session: aiohttp.ClientSession | None = None
        m, c = settings.metrics, settings.label
        self._documents = {
            (signal, outcome): m.elasticsearch_documents.labels(c, signal.value, outcome)
            for signal in _SIGNALS for outcome in ("created", "duplicate", "retried", "rejected")
        }
        self._encode_failed = {s: m.exporter_failed.labels(c, s.value, "encoding") for s in _SIGNALS}
        self._dropped = {s: m.exporter_dropped.labels(c, s.value, "shutdown") for s in _SIGNALS}
        self._rejected_metric = m.elasticsearch_rejected
        self._reasons: set[str] = set()
        self._dead_letter = DeadLetter(settings, config.dead_letter, self._post_dead_letters)

    # -- lifecycle ----------------------------------------------------------------------

    async def _open(self) -> None:
        # Each request is bounded by `timeout` in `_request`.
        self._session = open_session(self._label, self._config.tls, self._urls)
        if self._flush_interval > 0:
            self._timer.spawn("flush-timer", self._flush_on_time())
        self._log.info("The Elasticsearch exporter started.",
                       extra={"component": self._label, "endpoints": self._urls,
                              "mapping_mode": self._config.mapping.mode})

    async def shutdown(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        try:
            # The timer ends by itself once a flush it started is queued; then what waits
            # in the buffers is queued, and the sender drains the queue.
            await self._timer.wait()
            for signal in _SIGNALS:
                await self._flush(signal)
        finally:
            await self._timer.close()
            await super().shutdown()

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # -- intake -------------------------------------------------------------------------

    async def consume(self, batch: Batch) -> None:
        if self._closing:
            raise ShuttingDownError(f"exporter {self._label} is shutting down")
        if batch.signal not in _SIGNALS:
            raise PermanentError(f"the elasticsearch exporter takes logs and traces, not {batch.signal.value}")
        try:
            docs, failures = self._encoder.encode(batch)
        except ValueError as exc:
            self._encode_failed[batch.signal].inc(batch.items)
            raise PermanentError(str(exc)) from exc
        if failures:
            self._encode_failed[batch.signal].inc(len(failures))
            entries = [DeadLetterEntry(f.index, None, 0, "encoding", f.reason, record=f.record) for f in failures]
            self._count_rejected(batch.signal, [("encoding", 1)] * len(failures))
            await self._dead_letter.write(entries)
        if not docs:
            return
        if self._flush_interval <= 0:
            for run in split(docs, self._flush_bytes):
                await self.sender.submit(BulkRequest(batch.signal, run))
            return
        buffer = self._buffers[batch.signal]
        if not buffer.docs:
            buffer.since = time.monotonic()
            self._wake.set()
        buffer.docs.extend(docs)
        buffer.nbytes += sum(d.nbytes for d in docs)
        if buffer.nbytes >= self._flush_bytes:
            await self._flush(batch.signal)

    async def _flush(self, signal: Signal) -> None:
        """Hand the buffered documents of `signal` to the sender, in requests of `flush.bytes`."""
        runs = split(self._buffers[signal].take(), self._flush_bytes)
        for i, run in enumerate(runs):
            try:
                await self.sender.submit(BulkRequest(signal, run))
            except asyncio.CancelledError:
                # Cancelled at the shutdown deadline while waiting for room in the queue.
                lost = sum(len(r) for r in runs[i:])
                self._dropped[signal].inc(lost)
                self._log.error("The exporter stopped before its flush buffer was queued; the documents left are lost.",
                                extra={"component": self._label, "documents": lost})
                raise

    async def _flush_on_time(self) -> None:
        """Send what waited `flush.interval`, as the Collector's bulk indexer does."""
        while not self._closing:
            due = [b.since + self._flush_interval for b in self._buffers.values() if b.docs]
            if not due:
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = min(due) - time.monotonic()
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            for signal, buffer in self._buffers.items():
                if buffer.docs and buffer.since + self._flush_interval <= time.monotonic():
                    try:
                        await self._flush(signal)
                    except Exception:  # the sender counted and logged the outcome
                        pass

    # -- sending ------------------------------------------------------------------------

    async def _send(self, batch: Batch) -> None:
        assert isinstance(batch, BulkRequest)
        req = batch
        if req.attempts >= self._max_attempts:
            # Only reached when an attempt ended with an unexpected error and was the last.
            await self._give_up(req, 0, "retries_exhausted", "the last attempt ended without an answer")
            self._raise_rejected(req)
            return
        req.attempts += 1
        attempt = _Attempt()
        await self._exchange(req, req.pending, attempt)
        req.pending = attempt.retry
        if attempt.retry and self._retries_enabled and not attempt.by_item:
            # The request failed as a whole: the cluster is unreachable, restarting or
            # overloaded. Keep retrying (the queue holds the rest and backpressure reaches the
            # receivers) for up to `retry.max_elapsed_time`, without using up `max_retries`.
            now = self._clock.monotonic()
            if req.outage_since is None:
                req.outage_since = now
            if not self._max_outage or now - req.outage_since < self._max_outage:
                req.attempts -= 1
        elif attempt.retry:
            req.outage_since = None
        if attempt.retry:
            await self._retry_or_give_up(req, attempt)
        self._raise_rejected(req)

    async def _exchange(self, req: BulkRequest, docs: list[Doc], attempt: _Attempt) -> None:
        """Post `docs` and settle every one of them: stored, dead-lettered, or kept in
        `attempt.retry`. A 413 answer to several documents posts each half of them instead."""
        if attempt.broken:
            attempt.keep(docs)  # the connection just failed: the rest waits for the next attempt
            return
        try:
            status, retry_after, payload = await self._request(docs)
        except RetryableError as exc:
            attempt.keep(docs, 0, str(exc), exc.retry_after, timed_out=isinstance(exc, _TimedOut))
            attempt.broken = True
            return
        if 200 <= status < 300:
            await self._settle_items(req, docs, payload, attempt)
        elif status == 413 and len(docs) > 1:
            # Too large for the cluster (`http.max_content_length`) or a proxy in front of it:
            # send the halves, down to one document, so that only one that is too large by
            # itself is refused. Nothing stored is sent again: the halves hold only `docs`.
            if not self._split_logged:
                self._split_logged = True
                self._log.warning(
                    "Elasticsearch answered 413 (request too large) to a bulk request; it is sent in "
                    "halves. Lower flush.bytes to avoid the extra requests.",
                    extra={"component": self._label, "documents": len(docs), "error": _reason(payload)})
            first, second = halves(docs)
            await self._exchange(req, first, attempt)
            await self._exchange(req, second, attempt)
        elif status == 429 or status >= 500 or status in self._retry_items:
            attempt.keep(docs, status, f"the server answered HTTP {status}: {_reason(payload)}",
                         parse_retry_after(retry_after))
        else:
            # The whole request was refused (401, 403, 404, 413 for one document, ...):
            # sending it again will not change the answer.
            entries = [DeadLetterEntry(d.index, d.id, status, f"http_{status}", _reason(payload), doc=d.body)
                       for d in docs]
            self._count_rejected(req.signal, [(f"http_{status}", len(entries))])
            req.rejected += len(entries)
            await self._dead_letter.write(entries)

    async def _request(self, docs: list[Doc]) -> tuple[int, str | None, bytes]:
        """`_post`, bounded by `timeout` (each request of an attempt that was split has its own)."""
        if self._timeout <= 0:
            return await self._post(docs)
        try:
            async with asyncio.timeout(self._timeout):
                return await self._post(docs)
        except TimeoutError:
            raise _TimedOut(f"no answer within the timeout of {self._timeout:g}s") from None

    async def _post(self, docs: list[Doc]) -> tuple[int, str | None, bytes]:
        if self._session is None:
            raise RetryableError(f"exporter {self._label} is not started")
        body = ndjson(docs)
        if self._config.compression == "gzip":
            body = (await asyncio.to_thread(compress, body, "gzip") if len(body) >= _THREAD_COMPRESS_BYTES
                    else compress(body, "gzip"))
        url = self._urls[self._next_url % len(self._urls)]
        self._next_url += 1
        import aiohttp

        try:
            async with self._session.post(url, data=body, headers=self._headers) as resp:
                payload = await _read_body(resp)
                return resp.status, resp.headers.get("Retry-After"), payload
        except aiohttp.ClientError as exc:
            raise RetryableError(f"cannot send to {url}: {exc or type(exc).__name__}") from exc

    async def _settle_items(self, req: BulkRequest, docs: list[Doc], payload: bytes, attempt: _Attempt) -> None:
        """Read every item's outcome; keep only the items to retry in `attempt.retry`."""
        try:
            results = outcomes(payload, len(docs))
        except BulkResponseError as exc:
            # Nothing tells which items were stored: resend them all (hash ids make it safe),
            # within `max_retries` — a server that keeps answering this way is not "down".
            attempt.by_item = True
            attempt.keep(docs, 0, str(exc))
            return
        signal = req.signal
        if results is None:
            self._documents[(signal, "created")].inc(len(docs))
            return
        created = duplicates = 0
        retry: list[Doc] = []
        dead: list[DeadLetterEntry] = []
        last_retry: ItemOutcome | None = None
        for doc, result in zip(docs, results, strict=True):
            status = result.status
            if 200 <= status < 300:
                created += 1
            elif status == 409 and doc.id is not None:
                duplicates += 1
            elif status in self._retry_items:
                retry.append(doc)
                last_retry = result
            else:
                dead.append(DeadLetterEntry(doc.index, doc.id, status, result.error_type or f"http_{status}",
                                            result.reason, doc=doc.body))
        self._documents[(signal, "created")].inc(created)
        self._documents[(signal, "duplicate")].inc(duplicates)
        if dead:
            self._count_rejected(signal, [(e.error_type, 1) for e in dead])
            req.rejected += len(dead)
            await self._dead_letter.write(dead)
        if retry:
            assert last_retry is not None
            attempt.by_item = True
            attempt.keep(retry, last_retry.status,
                         f"{len(retry)} of {len(docs)} documents were answered {last_retry.status}: "
                         f"{last_retry.error_type} {last_retry.reason}".strip())

    async def _retry_or_give_up(self, req: BulkRequest, attempt: _Attempt) -> None:
        if req.attempts < self._max_attempts:
            self._documents[(req.signal, "retried")].inc(len(req.pending))
            raise RetryableError(attempt.reason, retry_after=attempt.retry_after)
        # Without retries a timed-out request is dead-lettered as `timeout`: the sender does
        # not call again, and there was no answer that could say more.
        error_type = "timeout" if attempt.timed_out and not self._retries_enabled else "retries_exhausted"
        await self._give_up(req, attempt.status, error_type, attempt.reason)

    async def _give_up(self, req: BulkRequest, status: int, error_type: str, reason: str) -> None:
        entries = [DeadLetterEntry(d.index, d.id, status, error_type, reason, doc=d.body)
                   for d in req.pending]
        if entries:
            self._count_rejected(req.signal, [(error_type, len(entries))])
            req.rejected += len(entries)
            req.pending = []
            await self._dead_letter.write(entries)

    def _raise_rejected(self, req: BulkRequest) -> None:
        if req.rejected:
            raise PermanentError(
                f"{req.rejected} of {req.items} documents were refused for good "
                f"({'dead-lettered' if self._dead_letter.enabled else 'no dead_letter is configured'})",
                rejected=req.rejected,
            )

    def _count_rejected(self, signal: Signal, reasons: list[tuple[str, int]]) -> None:
        total = 0
        for reason, n in reasons:
            label = _bounded(reason)
            if label not in self._reasons:
                if len(self._reasons) >= _MAX_REASONS:
                    label = "other"
                else:
                    self._reasons.add(label)
            self._rejected_metric.labels(self._label, signal.value, label).inc(n)
            total += n
        self._documents[(signal, "rejected")].inc(total)

    # -- dead letter to an index --------------------------------------------------------

    async def _post_dead_letters(self, docs: list[Doc]) -> None:
        status, _, payload = await self._request(docs)
        if not 200 <= status < 300:
            raise RetryableError(f"the server answered HTTP {status}: {_reason(payload)}")
        results = outcomes(payload, len(docs))
        if results is not None:
            failed = [r for r in results if not (200 <= r.status < 300 or r.status == 409)]
            if failed:
                raise PermanentError(f"{len(failed)} dead-letter documents were refused: {failed[0].reason}")


async def _read_body(resp: aiohttp.ClientResponse) -> bytes:
    """The whole response body (a `_bulk` answer spans many reads), at most `_MAX_RESPONSE_BYTES`."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(256 * 1024):
        chunks.append(chunk)
        total += len(chunk)
        if total >= _MAX_RESPONSE_BYTES:
            break
    return b"".join(chunks)


def _bounded(reason: str) -> str:
    """A metric label from an error type: lower-case ASCII letters, digits and underscores only."""
    text = reason.lower()[:64]
    if text and all(c.isascii() and (c.isalnum() or c == "_") for c in text):
        return text
    return "other"


def _reason(payload: bytes) -> str:
    """The `error.reason` of an Elasticsearch error body, else the start of the body."""
    if not payload:
        return "empty body"
    try:
        doc: Any = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        doc = None
    if isinstance(doc, dict):
        error = doc.get("error")
        if isinstance(error, dict) and error.get("reason"):
            return f"{error.get('type', 'error')}: {error['reason']}"
        if isinstance(error, str):
            return error
    return payload[:200].decode("utf-8", "replace").strip()
