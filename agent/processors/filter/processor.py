"""The `filter` processor itself: rules per context, walked over the protobuf in place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.component import Consumer, Settings
from agent.errors import PermanentError
from agent.model import Batch, Signal
from agent.model.attrs import metric_points
from agent.processors.filter import FilterConfig, ottl
from agent.processors.match import Selector

_Rule = Callable[[Any, Any, Any, Any], bool]
_SIGNAL_CONTEXTS = {
    Signal.TRACES: ("resource", "scope", "span", "spanevent"),
    Signal.METRICS: ("resource", "scope", "metric", "datapoint"),
    Signal.LOGS: ("resource", "scope", "log"),
}


def _rules(config: FilterConfig, signal: Signal) -> dict[str, list[_Rule]]:
    """Compiled drop rules by context for `signal` (empty lists where there are none)."""
    contexts = _SIGNAL_CONTEXTS[signal]
    rules: dict[str, list[_Rule]] = {c: [] for c in contexts}

    def legacy(context: str, conditions: list[str]) -> None:
        rules[context].extend(ottl.compile_condition(t, context) for t in conditions)

    inferred: list[str] = []
    if signal is Signal.TRACES:
        if config.traces is not None:
            legacy("span", config.traces.span)
            legacy("spanevent", config.traces.spanevent)
        if config.spans is not None:
            selector = Selector.build(config.spans.include, config.spans.exclude)
            if selector is not None:
                sel = selector
                rules["span"].append(lambda r, s, p, i: not sel.span(r, s, i))
        inferred = config.trace_conditions
    elif signal is Signal.METRICS:
        m = config.metrics
        if m is not None:
            legacy("metric", m.metric)
            legacy("datapoint", m.datapoint)
            if m.include is not None or m.exclude is not None:
                msel = Selector(
                    m.include.matcher() if m.include is not None else None,
                    m.exclude.matcher() if m.exclude is not None else None,
                )
                rules["metric"].append(lambda r, s, p, i: not msel.metric(r, s, i))
        inferred = config.metric_conditions
    else:
        lg = config.logs
        if lg is not None:
            legacy("log", lg.log_record)
            if lg.include is not None or lg.exclude is not None:
                lsel = Selector(
                    lg.include.matcher() if lg.include is not None else None,
                    lg.exclude.matcher() if lg.exclude is not None else None,
                )
                rules["log"].append(lambda r, s, p, i: not lsel.log(r, s, i))
        inferred = config.log_conditions
    for text in inferred:
        context = ottl.infer_context(text, contexts)
        rules[context].append(ottl.compile_condition(text, context, prefixed=True))
    return rules


class FilterProcessor:
    """Drops the items its rules match; see the package docstring for the guarantees."""

    mutates_data = True

    def __init__(self, settings: Settings, config: FilterConfig, signal: Signal, next_consumer: Consumer) -> None:
        self._next = next_consumer
        self._signal = signal
        self._logger = settings.logger
        self._label = settings.label
        self._error_mode = config.error_mode
        self._logged_error = False
        rules = _rules(config, signal)
        self._resource = rules["resource"]
        self._scope = rules["scope"]
        if signal is Signal.TRACES:
            self._item, self._sub = rules["span"], rules["spanevent"]
        elif signal is Signal.METRICS:
            self._item, self._sub = rules["metric"], rules["datapoint"]
        else:
            self._item, self._sub = rules["log"], []
        self._active = any(rules.values())
        self._changed = False
        pipeline = str(settings.pipeline) if settings.pipeline is not None else ""
        labels = (settings.label, pipeline, signal.value)
        self._dropped = settings.metrics.processor_dropped.labels(*labels, "filtered")
        self._errors = settings.metrics.processor_condition_errors.labels(*labels)
        self._walk = {Signal.TRACES: self._traces, Signal.METRICS: self._metrics, Signal.LOGS: self._logs}[signal]

    async def start(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def consume(self, batch: Batch) -> None:
        if self._active:
            # Walk the message as it is and drop the cached bytes only when something was
            # removed, so that a batch the filter keeps whole is forwarded without being
            # encoded again. `mutable()` returns this same message; calling it right after
            # the (synchronous) walk is the same as calling it before.
            self._changed = False
            try:
                dropped = self._walk(batch.message)
            finally:
                if self._changed:
                    batch.mutable()
            if dropped:
                self._dropped.inc(dropped)
            if batch.items == 0:
                return  # everything was filtered out: accepted, nothing to pass on
        await self._next.consume(batch)

    # -- evaluation ----------------------------------------------------------------------

    def _any(self, rules: list[_Rule], r: Any, s: Any, p: Any, i: Any) -> bool:
        for rule in rules:
            try:
                if rule(r, s, p, i):
                    return True
            except ottl.EvalError as exc:
                self._failed(exc)
        return False

    def _failed(self, exc: ottl.EvalError) -> None:
        self._errors.inc()
        if self._error_mode == "propagate":
            raise PermanentError(f"filter {self._label}: a condition could not be evaluated: {exc}")
        if self._error_mode == "ignore" and not self._logged_error:
            self._logged_error = True
            self._logger.warning(
                "A filter condition could not be evaluated and was taken as false; "
                "further errors are only counted.",
                extra={"component": self._label, "error": str(exc)},
            )

    # -- walking each signal -------------------------------------------------------------

    def _prune(self, groups: Any, scopes_field: str, items_field: str,
               count: Callable[[Any], int], filter_items: Callable[[Any, Any, Any], int]) -> int:
        """Drop matching resources, scopes and items of one signal; empty containers go too."""
        dropped = 0
        for gi in range(len(groups) - 1, -1, -1):
            group = groups[gi]
            r = group.resource
            scopes = getattr(group, scopes_field)
            if self._resource and self._any(self._resource, r, None, None, r):
                dropped += sum(count(getattr(sc, items_field)) for sc in scopes)
                self._changed = True
                del groups[gi]
                continue
            for si in range(len(scopes) - 1, -1, -1):
                sc = scopes[si]
                s = sc.scope
                items = getattr(sc, items_field)
                if self._scope and self._any(self._scope, r, s, None, s):
                    dropped += count(items)
                    self._changed = True
                    del scopes[si]
                    continue
                dropped += filter_items(r, s, items)
                if not items:
                    self._changed = True
                    del scopes[si]
            if not scopes:
                self._changed = True
                del groups[gi]
        return dropped

    def _traces(self, request: Any) -> int:
        return self._prune(request.resource_spans, "scope_spans", "spans", len, self._filter_spans)

    def _metrics(self, request: Any) -> int:
        return self._prune(request.resource_metrics, "scope_metrics", "metrics", _count_points, self._filter_metrics)

    def _logs(self, request: Any) -> int:
        return self._prune(request.resource_logs, "scope_logs", "log_records", len, self._filter_records)

    def _filter_spans(self, r: Any, s: Any, spans: Any) -> int:
        item, sub = self._item, self._sub
        dropped = 0
        for i in range(len(spans) - 1, -1, -1):
            span = spans[i]
            if item and self._any(item, r, s, None, span):
                self._changed = True
                del spans[i]
                dropped += 1
                continue
            if sub:
                events = span.events
                for j in range(len(events) - 1, -1, -1):
                    if self._any(sub, r, s, span, events[j]):
                        self._changed = True
                        del events[j]
        return dropped

    def _filter_metrics(self, r: Any, s: Any, metrics: Any) -> int:
        item, sub = self._item, self._sub
        dropped = 0
        for i in range(len(metrics) - 1, -1, -1):
            metric = metrics[i]
            points = metric_points(metric)
            if item and self._any(item, r, s, None, metric):
                dropped += len(points)
                self._changed = True
                del metrics[i]
                continue
            if sub and len(points):
                for j in range(len(points) - 1, -1, -1):
                    if self._any(sub, r, s, metric, points[j]):
                        self._changed = True
                        del points[j]
                        dropped += 1
                if not points:
                    self._changed = True
                    del metrics[i]
        return dropped

    def _filter_records(self, r: Any, s: Any, records: Any) -> int:
        dropped = 0
        if self._item:
            for i in range(len(records) - 1, -1, -1):
                if self._any(self._item, r, s, None, records[i]):
                    self._changed = True
                    del records[i]
                    dropped += 1
        return dropped


def _count_points(metrics: Any) -> int:
    return sum(len(metric_points(m)) for m in metrics)
