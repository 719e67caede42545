"""`filter`: drop spans, span events, log records, metrics and data points (traces, metrics, logs).

Two ways to say what to drop, as in the Collector:

- OTTL conditions (the subset in `agent.processors.filter.ottl`): an item is dropped when
  any condition of its context is true. Per-context lists — `traces.span`,
  `traces.spanevent`, `metrics.metric`, `metrics.datapoint`, `logs.log_record` — or the
  newer flat lists `trace_conditions`, `metric_conditions`, `log_conditions`, whose paths
  carry their context (`span.name`, `resource.attributes["k"]`, `log.severity_number`) and
  which may also drop whole resources and scopes.
- The legacy `include` / `exclude` match config: `spans` (the same properties as the
  `attributes` processor), `logs.include/exclude` (`match_type`, `resource_attributes`,
  `record_attributes`, `severity_texts`, `severity_number`, `bodies`) and
  `metrics.include/exclude` (`match_type`, `metric_names`, `resource_attributes`). An item
  is kept when it matches `include` (if set) and does not match `exclude`.

    processors:
      filter/noise:
        error_mode: ignore
        trace_conditions:
          - 'span.attributes["url.path"] == "/healthz"'
          - 'span.kind == SPAN_KIND_INTERNAL and span.duration < 1000000'
        log_conditions:
          - 'log.severity_number < SEVERITY_NUMBER_INFO'

Guarantees: dropping a span drops its events; a scope left with no items and a resource left
with no scopes are removed; a metric whose data points were all dropped is removed (a span
whose events were all dropped stays). Dropped items are counted in
`processor_dropped{reason="filtered"}`; a batch left empty is accepted and not passed on.
`error_mode`: `propagate` (default) refuses the batch permanently when a condition cannot
be evaluated; `ignore` treats the condition as false and logs once; `silent` does so
without logging. Errors are counted in `processor_condition_errors`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

from agent.component import Consumer, ProcessorFactory, Settings, Stability
from agent.model import Signal
from agent.processors.filter import ottl
from agent.processors.match import AttributeMatch, Matcher, MatchProperties, SeverityNumberMatch

_TRACE_CONTEXTS = ("resource", "scope", "span", "spanevent")
_METRIC_CONTEXTS = ("resource", "scope", "metric", "datapoint")
_LOG_CONTEXTS = ("resource", "scope", "log")


def _check_conditions(conditions: list[str], context: str) -> None:
    for text in conditions:
        ottl.compile_condition(text, context)


def _check_inferred(conditions: list[str], allowed: tuple[str, ...]) -> None:
    for text in conditions:
        try:
            context = ottl.infer_context(text, allowed)
        except ValueError as exc:
            raise ValueError(f"condition {text!r}: {exc}") from None
        ottl.compile_condition(text, context, prefixed=True)


class LogMatchProperties(msgspec.Struct, forbid_unknown_fields=True):
    match_type: Literal["strict", "regexp"]
    resource_attributes: list[AttributeMatch] = msgspec.field(default_factory=list)
    record_attributes: list[AttributeMatch] = msgspec.field(default_factory=list)
    severity_texts: list[str] = msgspec.field(default_factory=list)
    severity_number: SeverityNumberMatch | None = None
    bodies: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if not (self.resource_attributes or self.record_attributes or self.severity_texts
                or self.severity_number or self.bodies):
            raise ValueError(
                "a logs match section needs at least one of resource_attributes, record_attributes, "
                "severity_texts, severity_number or bodies"
            )
        self.matcher()

    def matcher(self) -> Matcher:
        return Matcher(
            self.match_type,
            attributes=[(a.key, a.value) for a in self.record_attributes],
            resources=[(a.key, a.value) for a in self.resource_attributes],
            log_severity_texts=self.severity_texts,
            log_severity_number=self.severity_number,
            log_bodies=self.bodies,
        )


class MetricMatchProperties(msgspec.Struct, forbid_unknown_fields=True):
    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"expressions"})

    match_type: str
    metric_names: list[str] = msgspec.field(default_factory=list)
    resource_attributes: list[AttributeMatch] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.match_type == "expr":
            raise ValueError("match_type expr is not supported by Flowglass; use strict, regexp or OTTL conditions")
        if self.match_type not in ("strict", "regexp"):
            raise ValueError(f"match_type {self.match_type!r} is not one of strict, regexp")
        if not self.metric_names and not self.resource_attributes:
            raise ValueError("a metrics match section needs metric_names or resource_attributes")
        self.matcher()

    def matcher(self) -> Matcher:
        return Matcher(
            "strict" if self.match_type == "strict" else "regexp",
            metric_names=self.metric_names,
            resources=[(a.key, a.value) for a in self.resource_attributes],
        )


class SpansMatchConfig(msgspec.Struct, forbid_unknown_fields=True):
    include: MatchProperties | None = None
    exclude: MatchProperties | None = None

    def __post_init__(self) -> None:
        for section, props in (("include", self.include), ("exclude", self.exclude)):
            if props is not None:
                problem = props.signal_problem(Signal.TRACES)
                if problem:
                    raise ValueError(f"{section}: {problem}")


class TracesConditions(msgspec.Struct, forbid_unknown_fields=True):
    span: list[str] = msgspec.field(default_factory=list)
    spanevent: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        _check_conditions(self.span, "span")
        _check_conditions(self.spanevent, "spanevent")


class MetricsFilter(msgspec.Struct, forbid_unknown_fields=True):
    include: MetricMatchProperties | None = None
    exclude: MetricMatchProperties | None = None
    metric: list[str] = msgspec.field(default_factory=list)
    datapoint: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if (self.include or self.exclude) and (self.metric or self.datapoint):
            raise ValueError("use either include/exclude or OTTL conditions (metric, datapoint), not both")
        _check_conditions(self.metric, "metric")
        _check_conditions(self.datapoint, "datapoint")


class LogsFilter(msgspec.Struct, forbid_unknown_fields=True):
    include: LogMatchProperties | None = None
    exclude: LogMatchProperties | None = None
    log_record: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if (self.include or self.exclude) and self.log_record:
            raise ValueError("use either include/exclude or OTTL conditions (log_record), not both")
        _check_conditions(self.log_record, "log")


class FilterConfig(msgspec.Struct, forbid_unknown_fields=True):
    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"profile_conditions", "profiles"})

    #: What happens when a condition cannot be evaluated: propagate, ignore or silent.
    error_mode: Literal["propagate", "ignore", "silent"] = "propagate"
    #: Legacy include/exclude for spans.
    spans: SpansMatchConfig | None = None
    #: OTTL conditions per trace context.
    traces: TracesConditions | None = None
    metrics: MetricsFilter | None = None
    logs: LogsFilter | None = None
    #: OTTL conditions whose context is inferred from their paths.
    trace_conditions: list[str] = msgspec.field(default_factory=list)
    metric_conditions: list[str] = msgspec.field(default_factory=list)
    log_conditions: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        _check_inferred(self.trace_conditions, _TRACE_CONTEXTS)
        _check_inferred(self.metric_conditions, _METRIC_CONTEXTS)
        _check_inferred(self.log_conditions, _LOG_CONTEXTS)
        traces_old = self.traces is not None and (self.traces.span or self.traces.spanevent)
        if self.trace_conditions and (traces_old or self.spans is not None):
            raise ValueError("trace_conditions cannot be combined with traces or spans; move them into one list")
        if self.spans is not None and traces_old:
            raise ValueError("use either spans (include/exclude) or traces (OTTL conditions), not both")
        metrics_old = self.metrics is not None and (
            self.metrics.include or self.metrics.exclude or self.metrics.metric or self.metrics.datapoint
        )
        if self.metric_conditions and metrics_old:
            raise ValueError("metric_conditions cannot be combined with metrics; move them into one list")
        logs_old = self.logs is not None and (self.logs.include or self.logs.exclude or self.logs.log_record)
        if self.log_conditions and logs_old:
            raise ValueError("log_conditions cannot be combined with logs; move them into one list")


def _create(settings: Settings, config: Any, signal: Signal, next_consumer: Consumer) -> Any:
    from agent.processors.filter.processor import FilterProcessor

    assert isinstance(config, FilterConfig)
    return FilterProcessor(settings, config, signal, next_consumer)


FACTORY = ProcessorFactory(
    type="filter",
    config_type=FilterConfig,
    description=(
        "Drops spans, span events, log records, metrics and data points matching OTTL conditions "
        "or the legacy include/exclude match config."
    ),
    signals={Signal.TRACES: Stability.BETA, Signal.METRICS: Stability.BETA, Signal.LOGS: Stability.BETA},
    create=_create,
)

__all__ = [
    "FACTORY",
    "FilterConfig",
    "LogMatchProperties",
    "LogsFilter",
    "MetricMatchProperties",
    "MetricsFilter",
    "SpansMatchConfig",
    "TracesConditions",
]
