"""`PrometheusRemoteWriteExporter`: translation, sharding and the Remote Write 1.0 HTTP exchange.

The shared `QueuedExporter` has one `Sender` whose `num_consumers` tasks share one queue,
which would reorder samples of a series. This exporter keeps the same lifecycle shape
(`start` opens the session then the senders, `shutdown` drains the senders then closes
the session) but owns one `Sender` per shard, each with `num_consumers: 1`, so each shard
sends its requests one at a time and in order.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import math
import time
from typing import TYPE_CHECKING

import cramjam

if TYPE_CHECKING:  # aiohttp is imported on start, so agents that do not use it stay smaller.
    import aiohttp

import agent
from agent.component import Settings
from agent.config.types import ByteSize
from agent.errors import PermanentError, QueueFullError, RetryableError
from agent.exporters.http import open_session
from agent.exporters.otlp_http import parse_retry_after
from agent.exporters.prometheusremotewrite import PrometheusRemoteWriteExporterConfig
from agent.exporters.prometheusremotewrite.encode import Encoder, count, split
from agent.exporters.sending import DEFAULT_QUEUE_MAX_BYTES, SYSTEM_CLOCK, Clock, Sender, SendingQueueConfig
from agent.model import Batch, Signal
from agent.model.prometheus import TranslationOptions, Translator
from agent.model.prometheus_cumulative import Cumulator

_RETRYABLE = frozenset({429}) | frozenset(range(500, 600))
_MAX_RESPONSE_BYTES = 64 * 1024
#: Bodies at least this large are compressed in a thread (cramjam releases the GIL).
_THREAD_COMPRESS_BYTES = 512 * 1024
#: At most this many requests are made to isolate rejected series in one rejected request.
_MAX_SPLIT_REQUESTS = 256
_REASONS = (
    ("out of order", "out_of_order"),
    ("out of bounds", "out_of_bounds"),
    ("duplicate sample", "duplicate"),
    ("too old", "too_old"),
)


def rejection_reason(status: int, message: str) -> str:
    """A bounded label value for a 4xx answer, from Prometheus's error text."""
    text = message.lower()
    for needle, reason in _REASONS:
        if needle in text:
            return reason
    return f"http_{status}"


class PrometheusRemoteWriteExporter:
    mutates_data = False

    def __init__(self, settings: Settings, config: PrometheusRemoteWriteExporterConfig, *,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self._settings = settings
        self._config = config
        self._log = settings.logger
        self._label = settings.label
        m = settings.metrics
        self._translator = Translator(
            TranslationOptions(
                namespace=config.namespace,
                add_metric_suffixes=config.add_metric_suffixes,
                resource_to_telemetry_conversion=config.resource_to_telemetry_conversion.enabled,
                target_info=config.target_info.enabled,
                external_labels=config.external_labels,
            ),
            Cumulator(config.delta_to_cumulative.max_streams,
                      int(config.delta_to_cumulative.max_stale * 1_000_000_000)),
        )
        self._encoder = Encoder()
        queue = config.remote_write_queue
        shards = queue.num_consumers
        # `queue_size` counts requests as in the Collector; the bytes bound of every sending
        # queue is kept too (256 MiB over all shards, at least two full requests per shard),
        # since merged requests can be large.
        shard_bytes = max(int(DEFAULT_QUEUE_MAX_BYTES) // shards, 2 * int(config.max_batch_size_bytes))
        per_shard = SendingQueueConfig(enabled=queue.enabled, num_consumers=1,
                                       queue_size=max(1, math.ceil(queue.queue_size / shards)),
                                       max_bytes=ByteSize(shard_bytes))
        self._senders = [
            Sender(settings, functools.partial(self._send, i), queue_config=per_shard,
                   retry_config=config.retry_on_failure, timeout=config.timeout, clock=clock)
            for i in range(shards)
        ]
        # Requests that wait while their shard's sender is busy, merged into one request
        # (concatenated WriteRequest encodings are one WriteRequest) when it has room again.
        self._pending: list[list[tuple[bytes, int]]] = [[] for _ in range(shards)]
        self._pending_bytes = [0] * shards
        self._busy = [False] * shards  # a request of the shard is being sent
        self._max_bytes = int(config.max_batch_size_bytes)
        if queue.enabled:
            senders = self._senders
            m.exporter_queue_size.labels(self._label).set_function(
                lambda: sum(s.queue.size for s in senders if s.queue is not None))
            m.exporter_queue_capacity.labels(self._label).set(per_shard.queue_size * shards)
        m.prometheus_streams.labels(self._label).set_function(lambda: len(self._translator.cumulator))
        self._rejected = m.prometheus_rejected_samples
        self._dropped = m.prometheus_dropped_points
        self._enqueue_failed = m.exporter_enqueue_failed.labels(self._label, Signal.METRICS.value)
        self._headers = {
            "User-Agent": f"flowglass/{agent.__version__}",
            **config.headers,
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        }
        if config.basic_auth is not None:
            token = base64.b64encode(f"{config.basic_auth.username}:{config.basic_auth.password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        elif config.bearer_token:
            self._headers["Authorization"] = f"Bearer {config.bearer_token}"
        self._session: aiohttp.ClientSession | None = None
        self._started = False
        self._shut_down = False

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        # Each request is bounded by the sender's `timeout`.
        self._session = open_session(self._label, self._config.tls, [self._config.endpoint],
                                     read_bufsize=int(self._config.read_buffer_size))
        self._started = True
        for sender in self._senders:
            await sender.start()
        self._log.info("The Prometheus remote write exporter started.",
                       extra={"component": self._label, "endpoint": self._config.endpoint,
                              "shards": len(self._senders)})

    async def shutdown(self) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        try:
            for shard in range(len(self._senders)):
                await self._flush(shard)
            await asyncio.gather(*(s.shutdown() for s in self._senders))
        finally:
            if self._session is not None:
                await self._session.close()

    # -- intake -------------------------------------------------------------------------

    async def consume(self, batch: Batch) -> None:
        if batch.signal is not Signal.METRICS:
            raise PermanentError(f"the prometheusremotewrite exporter takes metrics, not {batch.signal.value}")
        self._refuse_if_full(batch)
        translation = self._translator.translate(batch.message, time.time_ns())
        for reason, n in translation.dropped.items():
            self._dropped.labels(self._label, reason).inc(n)
        shards = self._encoder.shard(translation, len(self._senders), int(self._config.max_batch_size_bytes))
        if self._config.send_metadata:
            metadata = self._encoder.metadata(translation)
            if metadata:  # with the first request of the first shard (or alone; it counts no items)
                first = shards[0]
                first[:1] = [(metadata + first[0][0], first[0][1])] if first else [(metadata, 0)]
        await asyncio.gather(*(self._submit(i, bodies) for i, bodies in enumerate(shards) if bodies))

    def _refuse_if_full(self, batch: Batch) -> None:
        """Refuse (retryable) before translating, so delta state never counts a refused batch."""
        if not self._config.remote_write_queue.enabled:
            return
        for sender in self._senders:
            queue = sender.queue
            if queue is not None and queue.size >= queue.capacity:
                self._enqueue_failed.inc(batch.items)
                raise QueueFullError("the remote write queue of a shard is full")

    async def _submit(self, shard: int, bodies: list[tuple[bytes, int]]) -> None:
        sender = self._senders[shard]
        queue = sender.queue
        if queue is None:
            for body, items in bodies:
                await self._enqueue(sender, body, items)
            return
        pending = self._pending[shard]
        for body, items in bodies:
            if not pending and queue.size == 0 and not self._busy[shard]:
                await self._enqueue(sender, body, items)
                continue
            # The shard's sender is busy: wait here to go out merged with what follows.
            if pending and self._pending_bytes[shard] + len(body) > self._max_bytes:
                await self._flush(shard)
            pending.append((body, items))
            self._pending_bytes[shard] += len(body)
        if queue.size == 0 and not self._busy[shard]:
            await self._flush(shard)  # nothing in flight would flush it later

    async def _flush(self, shard: int) -> None:
        """Queue the shard's waiting requests as one."""
        pending = self._pending[shard]
        if not pending:
            return
        body = pending[0][0] if len(pending) == 1 else b"".join(b for b, _ in pending)
        items = sum(n for _, n in pending)
        pending.clear()
        self._pending_bytes[shard] = 0
        await self._enqueue(self._senders[shard], body, items)

    async def _enqueue(self, sender: Sender, body: bytes, items: int) -> None:
        try:
            await sender.submit(Batch(Signal.METRICS, data=body, items=items))
        except QueueFullError as exc:
            # Counted by the sender (enqueue_failed). The delta state already moved on,
            # so asking upstream to retry would count deltas twice: the request is dropped.
            self._log.warning("A remote write request could not be queued and is dropped.",
                              extra={"component": self._label, "items": items, "error": str(exc)})
        except Exception:
            # Queue disabled: the send failed after its retries and the sender counted and
            # logged it. It is not raised upstream, for the same reason as above.
            pass

    # -- sending ------------------------------------------------------------------------

    async def _send(self, shard: int, batch: Batch) -> None:
        self._busy[shard] = True
        try:
            await self._send_request(batch)
        finally:
            self._busy[shard] = False
            # What waited while this request was in flight goes next, merged.
            queue = self._senders[shard].queue
            if self._pending[shard] and queue is not None and queue.size == 0:
                await self._flush(shard)

    async def _send_request(self, batch: Batch) -> None:
        body = batch.serialize()
        rejected: dict[str, int] = {}
        budget = [_MAX_SPLIT_REQUESTS]
        last = await self._post_isolating(body, rejected, budget)
        if not rejected:
            return
        total = sum(rejected.values())
        for reason, n in rejected.items():
            self._rejected.labels(self._label, reason).inc(n)
        message = f"the server rejected {total} samples ({', '.join(sorted(rejected))}): {last}"
        raise PermanentError(message, rejected=total if total < batch.items else None)

    async def _post_isolating(self, body: bytes, rejected: dict[str, int], budget: list[int]) -> str:
        """POST `body`; on a 4xx, split it until the rejected series are found. Their items go
        into `rejected` by reason; returns the last rejection message."""
        budget[0] -= 1
        status, message = await self._post(body)
        if status < 400:
            return ""
        series, items = count(body)
        if series > 1 and budget[0] > 1:
            last = ""
            for part in split(body):
                last = await self._post_isolating(part, rejected, budget) or last
            return last
        reason = rejection_reason(status, message)
        rejected[reason] = rejected.get(reason, 0) + items
        return message

    async def _post(self, body: bytes) -> tuple[int, str]:
        """One POST; (status, message) for 2xx and permanent 4xx, raises RetryableError otherwise."""
        if self._session is None:
            raise RetryableError(f"exporter {self._label} is not started")
        if len(body) >= _THREAD_COMPRESS_BYTES:
            compressed = await asyncio.to_thread(_snappy, body)
        else:
            compressed = _snappy(body)
        import aiohttp

        url = self._config.endpoint
        try:
            async with self._session.post(url, data=compressed, headers=self._headers) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                text = (await resp.content.read(_MAX_RESPONSE_BYTES)).decode("utf-8", "replace").strip()
        except aiohttp.ClientError as exc:
            raise RetryableError(f"cannot send to {url}: {exc or type(exc).__name__}") from exc
        if 200 <= status < 300:
            return status, ""
        message = f"HTTP {status}: {text[:300] or 'empty body'}"
        if status in _RETRYABLE:
            raise RetryableError(f"the server answered {message}", retry_after=parse_retry_after(retry_after))
        return status, message


def _snappy(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))
