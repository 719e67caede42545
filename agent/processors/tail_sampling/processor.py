"""The `tail_sampling` processor: the trace buffer, the decision ticker and the sends."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from agent.component import Consumer, Settings, TaskOwner
from agent.errors import PermanentError, ShuttingDownError
from agent.model import Batch, Signal
from agent.processors.tail_sampling import TailSamplingConfig
from agent.processors.tail_sampling import buffer as buf
from agent.processors.tail_sampling import policies as pol

#: Spans per batch sent downstream by one decision pass (larger outputs are cut).
SEND_SPANS = 8192
#: Tries (one per decision pass) of a kept batch the next consumer refused as retryable.
SEND_ATTEMPTS = 10
#: Traces decided between two yields to the event loop.
DECIDE_CHUNK = 1024
#: Most kept batches waiting to be tried again.
BACKLOG_BATCHES = 64
POLICY_ATTRIBUTE = "tailsampling.policy"
COMPOSITE_ATTRIBUTE = "tailsampling.composite_policy"


class _Trace:
    """A trace in the buffer: waiting (`groups` set) or decided (`groups` None)."""

    __slots__ = ("first", "groups", "nbytes", "rooted", "sampled", "spans", "trace_id")

    def __init__(self, trace_id: bytes, first: float) -> None:
        self.trace_id = trace_id
        self.first = first
        self.groups: buf.Groups | None = {}
        self.spans = 0
        self.nbytes = 0
        self.sampled = False
        self.rooted = False  # its root span arrived (and its early deadline is queued)


class _LRU:
    """Trace ids with a remembered decision, at most `size` of them (0 = none)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._ids: OrderedDict[bytes, None] = OrderedDict()

    def add(self, trace_id: bytes) -> None:
        if self._size:
            self._ids[trace_id] = None
            self._ids.move_to_end(trace_id)
            if len(self._ids) > self._size:
                self._ids.popitem(last=False)

    def __contains__(self, trace_id: bytes) -> bool:
        if trace_id in self._ids:
            self._ids.move_to_end(trace_id)
            return True
        return False


class TailSamplingProcessor:
    """Buffers spans per trace, decides each trace with the policies, sends the kept ones on."""

    mutates_data = False

    def __init__(
        self,
        settings: Settings,
        config: TailSamplingConfig,
        next_consumer: Consumer,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._next = next_consumer
        self._clock = clock
        self._logger = settings.logger
        self._label = settings.label
        self._report = settings.report_status
        self._wait = float(config.decision_wait)
        self._root_wait = float(config.decision_wait_after_root_received)
        self._max_traces = config.num_traces
        self._max_bytes = int(config.max_buffered_bytes)
        self._first_match = config.sample_on_first_match
        self._record = config.record_policy
        self._policies = [pol.build(p) for p in config.policies]
        self._traces: OrderedDict[bytes, _Trace] = OrderedDict()
        self._due: deque[tuple[float, _Trace]] = deque()
        self._root_due: deque[tuple[float, _Trace]] = deque()
        self._sampled_cache = _LRU(config.decision_cache.sampled_cache_size)
        self._dropped_cache = _LRU(config.decision_cache.non_sampled_cache_size)
        self._waiting = 0
        self._spans = 0
        self._bytes = 0
        self._backlog: deque[tuple[bytes, int, int]] = deque()
        self._backlog_bytes = 0
        self._stopping = False
        self._stopped = False
        self._lock = asyncio.Lock()
        self._tasks = TaskOwner(settings.label, settings.logger, settings.report_status)
        wait = min(self._wait, self._root_wait) if self._root_wait else self._wait
        self._tick = min(1.0, max(0.01, wait / 10))
        self._metrics(settings)

    def _metrics(self, settings: Settings) -> None:
        m = settings.metrics
        pipeline = str(settings.pipeline) if settings.pipeline is not None else ""
        labels = (settings.label, pipeline)
        self._policy_counts = [
            (m.tail_sampling_policy_traces.labels(*labels, p.name, "true"),
             m.tail_sampling_policy_traces.labels(*labels, p.name, "false"))
            for p in self._policies
        ]
        self._kept = m.tail_sampling_traces.labels(*labels, "sampled")
        self._not_kept = m.tail_sampling_traces.labels(*labels, "not_sampled")
        self._evicted_count = m.tail_sampling_evicted_traces.labels(*labels, "num_traces")
        self._evicted_bytes = m.tail_sampling_evicted_traces.labels(*labels, "max_buffered_bytes")
        self._latency = m.tail_sampling_decision_latency.labels(*labels)
        self._evaluation = m.tail_sampling_evaluation.labels(*labels)
        self._evaluated = m.tail_sampling_evaluated_traces.labels(*labels)
        self._late = {
            (sampled, source): m.tail_sampling_late_spans.labels(
                *labels, "sampled" if sampled else "not_sampled", source)
            for sampled in (True, False) for source in ("buffer", "cache")
        }
        self._g_traces = m.tail_sampling_buffered_traces.labels(*labels)
        self._g_spans = m.tail_sampling_buffered_spans.labels(*labels)
        self._g_bytes = m.tail_sampling_buffered_bytes.labels(*labels)
        dropped = (*labels, Signal.TRACES.value)
        self._drop_not_sampled = m.processor_dropped.labels(*dropped, "not_sampled")
        self._drop_evicted = m.processor_dropped.labels(*dropped, "evicted")
        self._drop_send = m.processor_dropped.labels(*dropped, "send_failed")
        self._refused = m.processor_refused.labels(*dropped, "shutting_down")
        self._errors = m.processor_condition_errors.labels(*dropped)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks.spawn("decide", self._ticker())

    async def _ticker(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._tick)
            try:
                await self.decide_due()
            except Exception as exc:
                # Logged and reported once per failure streak; the next pass tries again.
                if not failing:
                    self._logger.error(
                        "A tail-sampling decision pass failed; traces wait for the next one.",
                        extra={"component": self._label, "error": repr(exc)}, exc_info=exc,
                    )
                    self._report(self._label, exc)
                failing = True
                continue
            if failing:
                self._report(self._label, None)
                failing = False

    async def shutdown(self) -> None:
        """Refuses new spans, decides every waiting trace now and sends the kept ones on."""
        if self._stopped:
            return
        self._stopping = True
        async with self._lock:  # lets a decision pass in flight finish its sends
            await self._tasks.close()
            self._stopped = True
            waiting = [t for t in self._traces.values() if t.groups is not None]
            outputs = self._decide_all(waiting, self._clock())
            if waiting:
                self._logger.info(
                    "Tail sampling decided its waiting traces at shutdown.",
                    extra={"component": self._label, "traces": len(waiting)},
                )
            await self._send_all(outputs, final=True)

    # -- intake -----------------------------------------------------------------------------

    async def consume(self, batch: Batch) -> None:
        if self._stopping:
            self._refused.inc(batch.items)
            raise ShuttingDownError("tail_sampling is shutting down")
        now = self._clock()
        late: buf.Groups = {}
        traces = self._traces
        root_wait = self._root_wait
        added = count = 0
        for rs in batch.message.resource_spans:
            res = buf.resource_part(rs)
            for ss in rs.scope_spans:
                key = (res, buf.scope_part(ss))
                for span in ss.spans:
                    trace_id = span.trace_id
                    data = buf.framed_span(span.SerializeToString())
                    t = traces.get(trace_id)
                    if t is None:
                        if self._late_from_cache(trace_id, key, data, late):
                            continue
                        t = self._new_trace(trace_id, now)
                    groups = t.groups
                    if groups is None:
                        self._late[(t.sampled, "buffer")].inc()
                        if t.sampled:
                            late.setdefault(key, []).append(data)
                        else:
                            self._drop_not_sampled.inc()
                        continue
                    spans = groups.get(key)
                    if spans is None:
                        groups[key] = [data]
                    else:
                        spans.append(data)
                    t.spans += 1
                    t.nbytes += len(data)
                    added += len(data)
                    count += 1
                    if root_wait and not t.rooted and not span.parent_span_id:
                        t.rooted = True
                        self._root_due.append((now + root_wait, t))
        self._bytes += added
        self._spans += count
        if self._max_bytes and self._bytes > self._max_bytes:
            self._evict_for_bytes()
        self._update_gauges()
        if late:
            await self._send_all([(buf.request_bytes(late.items()), sum(len(v) for v in late.values()))])

    def _late_from_cache(self, trace_id: bytes, key: buf.GroupKey, data: bytes, late: buf.Groups) -> bool:
        if trace_id in self._sampled_cache:
            self._late[(True, "cache")].inc()
            late.setdefault(key, []).append(data)
            return True
        if trace_id in self._dropped_cache:
            self._late[(False, "cache")].inc()
            self._drop_not_sampled.inc()
            return True
        return False

    def _new_trace(self, trace_id: bytes, now: float) -> _Trace:
        if len(self._traces) >= self._max_traces:
            _, oldest = self._traces.popitem(last=False)
            if oldest.groups is not None:
                self._evict(oldest, self._evicted_count)
        t = _Trace(trace_id, now)
        self._traces[trace_id] = t
        self._waiting += 1
        self._due.append((now + self._wait, t))
        if len(self._due) > 2 * self._max_traces + 1024:
            self._due = deque(e for e in self._due if e[1].groups is not None)
            self._root_due = deque(e for e in self._root_due if e[1].groups is not None)
        return t

    def _evict(self, t: _Trace, counter: Any) -> None:
        """Drops a waiting trace undecided (it has already left `_traces`)."""
        counter.inc()
        self._drop_evicted.inc(t.spans)
        self._release(t)

    def _release(self, t: _Trace) -> None:
        self._waiting -= 1
        self._bytes -= t.nbytes
        self._spans -= t.spans
        t.groups = None

    def _evict_for_bytes(self) -> None:
        """Evicts the oldest waiting traces until the buffered bytes fit again."""
        due = self._due
        while self._bytes > self._max_bytes and due:
            _, t = due.popleft()
            if t.groups is None:
                continue
            if self._traces.get(t.trace_id) is t:
                del self._traces[t.trace_id]
            self._evict(t, self._evicted_bytes)

    def _update_gauges(self) -> None:
        self._g_traces.set(self._waiting)
        self._g_bytes.set(self._bytes)
        self._g_spans.set(self._spans)

    # -- decisions ----------------------------------------------------------------------------

    async def decide_due(self) -> None:
        """Decides every trace whose wait is over (the ticker calls it; tests may too)."""
        async with self._lock:
            if self._stopped:
                return
            now = self._clock()
            ready: list[_Trace] = []
            for queue in (self._due, self._root_due):
                while queue and queue[0][0] <= now:
                    _, t = queue.popleft()
                    if t.groups is not None:
                        ready.append(t)
            # In chunks, yielding between them, so that a pass over many traces does not hold
            # the event loop (and the receivers) for long; traces evicted meanwhile are skipped.
            # A pass with nothing to decide still retries the backlog.
            for start in range(0, max(1, len(ready)), DECIDE_CHUNK):
                if start:
                    await asyncio.sleep(0)
                outputs = self._decide_all(ready[start:start + DECIDE_CHUNK], now)
                if outputs or self._backlog:
                    await self._send_all(outputs)

    def _decide_all(self, traces: list[_Trace], now: float) -> list[tuple[bytes, int]]:
        """Decides `traces` in order; returns the kept spans as encoded requests with counts."""
        started = time.perf_counter()
        evaluated = 0
        kept: buf.Groups = {}
        outputs: list[tuple[bytes, int]] = []
        pending = n_kept = n_dropped = spans_dropped = 0
        # Votes per policy, yes and no, counted here and added to the metrics once per pass.
        votes = [0] * (2 * len(self._policies))
        scopes: dict[tuple[Any, ...], bytes] = {}  # scope parts with record_policy attributes
        for t in traces:
            if t.groups is None:
                continue  # decided twice in one pass (root and wait deadlines both due)
            groups = t.groups
            sampled, names = self._decide(t, now, votes)
            evaluated += 1
            self._latency.observe(max(0.0, now - t.first))
            if sampled:
                n_kept += 1
                for key, spans in groups.items():
                    if names:
                        scope_key = (key[1], *names)
                        scope = scopes.get(scope_key)
                        if scope is None:
                            scope = scopes[scope_key] = buf.with_scope_attributes(key[1], names)
                        key = (key[0], scope)
                    found = kept.get(key)
                    if found is None:
                        kept[key] = list(spans)
                    else:
                        found.extend(spans)
                pending += t.spans
            else:
                n_dropped += 1
                spans_dropped += t.spans
            t.sampled = sampled
            (self._sampled_cache if sampled else self._dropped_cache).add(t.trace_id)
            self._release(t)
            if pending >= SEND_SPANS:
                outputs.append((buf.request_bytes(kept.items()), pending))
                kept, pending = {}, 0
        if pending:
            outputs.append((buf.request_bytes(kept.items()), pending))
        for (yes, no), i in zip(self._policy_counts, range(0, len(votes), 2), strict=True):
            if votes[i]:
                yes.inc(votes[i])
            if votes[i + 1]:
                no.inc(votes[i + 1])
        self._kept.inc(n_kept)
        self._not_kept.inc(n_dropped)
        self._drop_not_sampled.inc(spans_dropped)
        self._update_gauges()
        if evaluated:
            self._evaluation.observe(time.perf_counter() - started)
            self._evaluated.inc(evaluated)
        return outputs

    def _decide(self, t: _Trace, now: float, votes: list[int]) -> tuple[bool, list[tuple[str, str]]]:
        groups = t.groups
        assert groups is not None
        td = pol.TraceData(t.trace_id, t.spans, t.nbytes, now, lambda: buf.request_bytes(groups.items()))
        decisions: list[pol.Decision] = []
        for i, policy in enumerate(self._policies):
            try:
                d = policy.evaluate(td)
            except Exception:
                self._errors.inc()
                d = pol.NOT_SAMPLED
            decisions.append(d)
            votes[2 * i if d in (pol.SAMPLED, pol.INVERT_SAMPLED) else 2 * i + 1] += 1
            if d is pol.DROPPED or (self._first_match and d is pol.SAMPLED):
                break
        sampled, index = pol.final_decision(decisions)
        names: list[tuple[str, str]] = []
        if sampled and self._record:
            names.append((POLICY_ATTRIBUTE, self._policies[index].name))
            if td.composite_policy:
                names.append((COMPOSITE_ATTRIBUTE, td.composite_policy))
        return sampled, names

    async def _send_all(self, outputs: list[tuple[bytes, int]], *, final: bool = False) -> None:
        """Sends kept spans on: first what earlier passes could not send, then `outputs`.

        A retryable refusal keeps the batch (and every batch after it in this pass) for the
        next pass, at most `SEND_ATTEMPTS` tries and `BACKLOG_BATCHES` batches (and
        `max_buffered_bytes`); what falls out of those bounds, a permanent refusal, or what
        is left at shutdown (`final`) is counted as `send_failed` and logged.
        """
        queue = list(self._backlog) + [(data, items, 0) for data, items in outputs]
        self._backlog.clear()
        self._backlog_bytes = 0
        lost = 0
        error: BaseException | None = None
        blocked = False
        for data, items, attempts in queue:
            if not blocked:
                try:
                    await self._next.consume(Batch(Signal.TRACES, data=data, items=items))
                    continue
                except PermanentError as exc:
                    lost, error = lost + items, exc
                    continue
                except Exception as exc:
                    error, blocked, attempts = exc, True, attempts + 1
            if final or self._stopped or attempts >= SEND_ATTEMPTS:
                lost += items
            else:
                lost += self._keep_for_retry(data, items, attempts)
        if lost:
            self._drop_send.inc(lost)
            self._logger.error(
                "Kept spans could not be sent on and were lost.",
                extra={"component": self._label, "spans": lost, "error": repr(error)},
            )

    def _keep_for_retry(self, data: bytes, items: int, attempts: int) -> int:
        """Queues a batch for the next pass; returns the spans dropped to stay in bounds."""
        self._backlog.append((data, items, attempts))
        self._backlog_bytes += len(data)
        dropped = 0
        while len(self._backlog) > BACKLOG_BATCHES or (
            self._max_bytes and self._backlog_bytes > self._max_bytes and len(self._backlog) > 1
        ):
            old, n, _ = self._backlog.popleft()
            self._backlog_bytes -= len(old)
            dropped += n
        return dropped
