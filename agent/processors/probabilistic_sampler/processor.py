"""The `probabilistic_sampler` processor: one decision per span or log record, in place."""

from __future__ import annotations

from typing import Any

from agent.component import Consumer, Settings
from agent.model import Batch, Signal
from agent.processors.probabilistic_sampler import ProbabilisticSamplerConfig
from agent.processors.probabilistic_sampler import sampling as s

#: Randomness for items that have none: sampled at every threshold but NEVER, so that only
#: the fail_closed choice or a priority decides their fate.
_ALL_PROBABILITIES = s.MAX_ADJUSTED_COUNT - 1

_PRIORITY_ATTR = "sampling.priority"
_LOG_THRESHOLD = "sampling.threshold"
_LOG_RANDOMNESS = "sampling.randomness"


class SamplingError(Exception):
    """The item's sampling information is missing or unusable (see `fail_closed`)."""


def _value_bytes(v: Any) -> bytes:
    """Bytes hashed for a record attribute: raw bytes, else the value as a string."""
    kind = v.WhichOneof("value")
    if kind == "bytes_value":
        return bytes(v.bytes_value)
    if kind == "string_value":
        return str(v.string_value).encode()
    from agent.model.attrs import as_string

    return as_string(v).encode()


def _attr(kvs: Any, key: str) -> Any:
    for kv in kvs:
        if kv.key == key:
            return kv.value
    return None


def _span_priority(span: Any) -> bool | None:
    """True = must keep, False = must drop, None = defer, per `sampling.priority`."""
    v = _attr(span.attributes, _PRIORITY_ATTR) if len(span.attributes) else None
    if v is None:
        return None
    kind = v.WhichOneof("value")
    if kind == "int_value":
        x: float = v.int_value
    elif kind == "double_value":
        x = v.double_value
    elif kind == "string_value":
        try:
            x = float(v.string_value)
        except ValueError:
            return None
    else:
        return None
    if x == 0:
        return False
    if x > 0:
        return True
    return None


class ProbabilisticSamplerProcessor:
    """Drops the spans or log records the configured sampler does not keep."""

    mutates_data = True

    def __init__(
        self, settings: Settings, config: ProbabilisticSamplerConfig, signal: Signal, next_consumer: Consumer
    ) -> None:
        self._next = next_consumer
        self._signal = signal
        self._logger = settings.logger
        self._label = settings.label
        self._fail_closed = config.fail_closed
        self._precision = config.sampling_precision
        self._seed = config.hash_seed
        self._mode = config.mode
        self._from_attribute = config.from_attribute
        self._trace_id_source = config.attribute_source == "traceID"
        self._priority_attr = config.sampling_priority
        self._never = False
        self._threshold = s.NEVER
        self._ratio = 0.0
        # The Collector holds the percentage as a float32; so do the decisions here.
        pct = s.float32(min(config.sampling_percentage, 100.0))
        if pct == 0:
            self._never = True
        else:
            self._ratio = max(pct / 100.0, s.MIN_PROBABILITY)
            if self._mode == "hash_seed":
                self._threshold = s.hash_seed_threshold(pct)
                self._never = self._threshold == s.NEVER
            elif self._mode == "equalizing":
                t = s.probability_to_threshold(self._ratio, self._precision)
                self._threshold = s.ALWAYS if t is None else t
        pipeline = str(settings.pipeline) if settings.pipeline is not None else ""
        labels = (settings.label, pipeline, signal.value)
        self._sampled_out = settings.metrics.processor_dropped.labels(*labels, "sampled_out")
        self._errored_out = settings.metrics.processor_dropped.labels(*labels, "sampling_error")
        self._logged_error = False
        self._errors = 0
        # Per resource, per scope, per item: keep? Filled by the planning walk of consume().
        self._keep: list[list[list[bool]]] = []

    async def start(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def consume(self, batch: Batch) -> None:
        # Decide on the message as it is; only if something is dropped or rewritten is
        # the batch made mutable (same message object), so untouched batches keep bytes.
        self._errors = 0
        if self._signal is Signal.TRACES:
            plan = self._plan_traces(batch.message)
        else:
            plan = self._plan_logs(batch.message)
        dropped, errored, writes = plan
        if errored:
            self._errored_out.inc(errored)
        if dropped - errored:
            self._sampled_out.inc(dropped - errored)
        if self._errors and not self._logged_error:
            self._logged_error = True
            self._logger.info(
                "Some items had no usable sampling randomness (no trace id, a malformed or "
                "already consistent tracestate); fail_closed decides whether they are kept, and "
                "further cases are only counted.",
                extra={"component": self._label, "items": self._errors, "fail_closed": self._fail_closed},
            )
        if dropped or writes:
            request = batch.mutable()
            for apply in writes:
                apply()
            if dropped:
                _remove_unsampled(self._signal, request, plan_keep=self._keep)
            if batch.items == 0:
                return  # everything was sampled out: accepted, nothing to pass on
        await self._next.consume(batch)

    # -- deciding ------------------------------------------------------------------------

    def _decide(self, rnd: int | None, incoming: int | None) -> int:
        """The threshold for an item with randomness `rnd` and arriving threshold."""
        if self._never:
            return s.NEVER
        if self._mode == "proportional":
            prob = 1.0 if incoming is None else s.threshold_probability(incoming)
            t = s.probability_to_threshold(prob * self._ratio, self._precision)
            return s.NEVER if t is None else t
        if self._mode == "equalizing" and incoming is not None and incoming > self._threshold:
            return incoming
        return self._threshold

    def _error_threshold(self) -> int:
        self._errors += 1
        return s.NEVER if self._fail_closed else s.ALWAYS

    def _plan_traces(self, request: Any) -> tuple[int, int, list[Any]]:
        self._keep = []
        writes: list[Any] = []
        dropped = errored = 0
        for rs in request.resource_spans:
            per_scope = []
            for ss in rs.scope_spans:
                keeps = []
                for span in ss.spans:
                    keep, err, new_ts = self._span(span)
                    keeps.append(keep)
                    if not keep:
                        dropped += 1
                        errored += err
                    elif new_ts is not None:
                        writes.append(_setter(span, new_ts))
                per_scope.append(keeps)
            self._keep.append(per_scope)
        return dropped, errored, writes

    def _span(self, span: Any) -> tuple[bool, bool, str | None]:
        """(keep, dropped for an error, new tracestate or None) for one span."""
        raw = span.trace_state
        tid = bytes(span.trace_id)
        has_tid = any(tid)
        rnd: int | None = None
        carrier: s.TraceState | None
        error = False
        try:
            carrier = s.TraceState.parse(raw)
        except ValueError:
            carrier, error = None, True
        if self._never:
            rnd = _ALL_PROBABILITIES
        elif self._mode == "hash_seed":
            rnd = s.hash_randomness(tid, self._seed) if has_tid else None
            if carrier is not None and (carrier.rv or carrier.th):
                # Consistent sampling is already in use upstream: leave it alone.
                carrier, error = None, True
            elif carrier is not None and rnd is not None:
                carrier.rv = s.rvalue(rnd)
        elif carrier is not None:
            if carrier.rv:
                rnd = s.parse_rvalue(carrier.rv)
            elif has_tid:
                rnd = s.trace_id_randomness(tid)
        incoming = s.parse_tvalue(carrier.th) if carrier is not None and carrier.th else None
        threshold, error, cleared = self._check(rnd, incoming, error)
        if cleared and carrier is not None:
            carrier.th = ""
        priority = _span_priority(span)
        if priority is not None:
            threshold = s.ALWAYS if priority else s.NEVER
        r = _ALL_PROBABILITIES if rnd is None else rnd
        keep = r >= threshold
        new_ts = None
        if keep and carrier is not None:
            _update_threshold(carrier, threshold)
            out = carrier.serialize()
            if out != raw:
                new_ts = out
        return keep, error and priority is None, new_ts

    def _check(self, rnd: int | None, incoming: int | None, error: bool) -> tuple[int, bool, bool]:
        """The Collector's consistency check, then the decision.

        Returns (threshold, was an error, arriving threshold must be cleared). An arriving
        threshold above the randomness says the item should not have been sampled: it is
        wrong, so it is cleared (as the specification recommends) and counts as an error.
        """
        cleared = False
        if not error and rnd is None:
            error = True
        if not error and incoming is not None and rnd is not None and rnd < incoming:
            cleared = error = True
        if error:
            return self._error_threshold(), True, cleared
        return self._decide(rnd, incoming), False, False

    def _plan_logs(self, request: Any) -> tuple[int, int, list[Any]]:
        self._keep = []
        writes: list[Any] = []
        dropped = errored = 0
        for rl in request.resource_logs:
            per_scope = []
            for sl in rl.scope_logs:
                keeps = []
                for record in sl.log_records:
                    keep, err, record_writes = self._record(record)
                    keeps.append(keep)
                    if not keep:
                        dropped += 1
                        errored += err
                    else:
                        writes.extend(record_writes)
                per_scope.append(keeps)
            self._keep.append(per_scope)
        return dropped, errored, writes

    def _record(self, record: Any) -> tuple[bool, bool, list[Any]]:
        """(keep, dropped for an error, attribute writes) for one log record."""
        attrs = record.attributes
        tid = bytes(record.trace_id)
        has_tid = any(tid)
        rv_attr = _str_attr(attrs, _LOG_RANDOMNESS)
        th_attr = _str_attr(attrs, _LOG_THRESHOLD)
        usable = True  # False: no carrier, nothing is written back (as the Collector)
        error = False
        incoming: int | None = None
        explicit: int | None = None
        try:
            incoming = s.parse_tvalue(th_attr) if th_attr else None
            explicit = s.parse_rvalue(rv_attr) if rv_attr else None
        except ValueError:
            usable, error, incoming, explicit = False, True, None, None
        source_value = _attr(attrs, self._from_attribute) if self._from_attribute else None
        rnd: int | None = None
        set_rv = False
        if self._never:
            rnd = _ALL_PROBABILITIES
        elif self._mode == "hash_seed":
            if self._trace_id_source and has_tid:
                rnd = s.hash_randomness(tid, self._seed)
            elif source_value is not None:
                rnd = s.hash_randomness(_value_bytes(source_value), self._seed)
            if usable and (rv_attr or th_attr):
                # Consistent sampling is already in use upstream: leave it alone.
                usable, error, incoming = False, True, None
            set_rv = usable and rnd is not None
        elif usable:
            if explicit is not None:
                rnd = explicit
            elif has_tid:
                rnd = s.trace_id_randomness(tid)
            elif source_value is not None:
                rnd = s.hash_randomness(_value_bytes(source_value), self._seed)
        threshold, error, cleared = self._check(rnd, incoming, error)
        if cleared:
            incoming = None
        if self._priority_attr:
            threshold = min(threshold, self._priority_threshold(attrs))
        keep = (_ALL_PROBABILITIES if rnd is None else rnd) >= threshold
        writes: list[Any] = []
        if cleared:
            writes.append(lambda: _delete_attr(attrs, _LOG_THRESHOLD))
        if keep and usable:
            if set_rv:
                rv = s.rvalue(_ALL_PROBABILITIES if rnd is None else rnd)
                writes.append(lambda: _put_str(attrs, _LOG_RANDOMNESS, rv))
            tv = s.tvalue(threshold)
            # Never lower an arriving threshold: that would raise its probability.
            if (incoming is None or threshold >= incoming) and tv != th_attr:
                writes.append(lambda: _put_str(attrs, _LOG_THRESHOLD, tv))
        return keep, error and not keep, writes

    def _priority_threshold(self, attrs: Any) -> int:
        v = _attr(attrs, self._priority_attr)
        if v is None:
            return s.NEVER
        kind = v.WhichOneof("value")
        if kind == "int_value":
            prob = v.int_value / 100.0
        elif kind == "double_value":
            prob = v.double_value / 100.0
        else:
            return s.NEVER
        if prob == 0:
            return s.NEVER
        # The Collector documents ">= 100 means always sample"; probabilities above 1 are
        # clamped so that they do (its code would otherwise ignore them).
        t = s.probability_to_threshold(min(prob, 1.0), self._precision)
        return s.NEVER if t is None else t


def _update_threshold(carrier: s.TraceState, threshold: int) -> None:
    """Write `threshold` unless it would raise the arriving probability (inconsistent)."""
    if carrier.th and s.parse_tvalue(carrier.th) > threshold:
        return
    carrier.th = s.tvalue(threshold)


def _setter(span: Any, value: str) -> Any:
    def apply() -> None:
        span.trace_state = value

    return apply


def _str_attr(kvs: Any, key: str) -> str:
    v = _attr(kvs, key)
    if v is None or v.WhichOneof("value") != "string_value":
        return ""
    return str(v.string_value)


def _put_str(kvs: Any, key: str, value: str) -> None:
    for kv in kvs:
        if kv.key == key:
            kv.value.string_value = value
            return
    kv = kvs.add()
    kv.key = key
    kv.value.string_value = value


def _delete_attr(kvs: Any, key: str) -> None:
    for i in range(len(kvs) - 1, -1, -1):
        if kvs[i].key == key:
            del kvs[i]


def _remove_unsampled(signal: Signal, request: Any, plan_keep: list[list[list[bool]]]) -> None:
    """Delete the items marked False, then emptied scopes and resources."""
    if signal is Signal.TRACES:
        groups, scopes_of, items_of = request.resource_spans, "scope_spans", "spans"
    else:
        groups, scopes_of, items_of = request.resource_logs, "scope_logs", "log_records"
    for gi in range(len(groups) - 1, -1, -1):
        scopes = getattr(groups[gi], scopes_of)
        for si in range(len(scopes) - 1, -1, -1):
            items = getattr(scopes[si], items_of)
            keeps = plan_keep[gi][si]
            for i in range(len(keeps) - 1, -1, -1):
                if not keeps[i]:
                    del items[i]
            if not items:
                del scopes[si]
        if not scopes:
            del groups[gi]
