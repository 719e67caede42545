"""`attributes`: change the attributes of spans, log records and metric data points.

Actions run in order on each selected item (traces: span attributes, and with
`span_events: true` the attributes of each selected span's events too; logs: log record
attributes; metrics: the attributes of every data point of a selected metric), as in the
Collector:

- `insert` (only when `key` is missing), `update` (only when present), `upsert` (either),
  with the value from `value`, `from_attribute` (another attribute of the same item),
  `from_context` (`metadata.<header>`: the request header the receiver recorded with
  `include_metadata: true`, several values joined with `;`; `client.address`: the sender's
  address; any other name is looked up in the metadata) or, when those give nothing,
  `default_value`;
- `delete` and `hash` (SHA-256, hex) by `key` and/or `pattern` (a regex over attribute names);
- `extract`: search `key`'s string value with `pattern` and upsert each named group as an
  attribute (string values);
- `convert`: `converted_type: int | double | string`; a value that cannot be converted stays.

`include` / `exclude` (see `agent.processors.match`) choose the items the actions apply to.

    processors:
      attributes/model:
        actions:
          - {key: ml.model.name, value: resnet, action: upsert}
          - {key: tenant, from_context: metadata.x-tenant, default_value: unknown, action: insert}
          - {key: user.email, action: hash}
          - {key: url.path, pattern: '^/v1/models/(?P<ml_route_model>[^/:]+)', action: extract}
          - {key: http.response.status_code, action: convert, converted_type: int}
        include:
          match_type: strict
          services: [model-server]

Batches are changed in place (`mutates_data = True`); items are never added or removed.
Nothing is copied out of the protobuf: each item's attribute list is edited where it lies.
"""

from __future__ import annotations

from typing import Any

import msgspec
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from agent.component import Consumer, ProcessorFactory, Settings, Stability
from agent.model import Batch, Signal
from agent.processors.attributes.actions import (
    Actions,
    attributes_tag,
    compile_pattern,
    context_value,
    convert_value,
    hash_value,
    value_template,
)
from agent.processors.match import MatchProperties, Selector

_ACTIONS = ("insert", "update", "upsert", "delete", "hash", "extract", "convert")
_CONVERSIONS = ("int", "double", "string")


class ActionConfig(msgspec.Struct, forbid_unknown_fields=True):
    """One entry of `actions` (the resource processor's `attributes` uses the same shape)."""

    #: insert, update, upsert, delete, hash, extract or convert (any letter case).
    action: str
    #: The attribute to act on.
    key: str = ""
    #: The value to set (insert, update, upsert); its YAML type is kept.
    value: Any = None
    #: Take the value from this attribute of the same item.
    from_attribute: str = ""
    #: Take the value from the request: `metadata.<header>` or `client.address`.
    from_context: str = ""
    #: The value to set when `value`, `from_attribute` or `from_context` gives none.
    default_value: Any = None
    #: delete/hash: a regex over attribute names; extract: a regex with named groups.
    pattern: str = ""
    #: convert: int, double or string.
    converted_type: str = ""

    def __post_init__(self) -> None:
        self.action = self.action.lower()
        if self.action not in _ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; use one of {', '.join(_ACTIONS)}")
        check = getattr(self, f"_check_{self.action}", None) or self._check_set
        check()

    def _sources(self) -> int:
        return sum((self.value is not None, bool(self.from_attribute), bool(self.from_context)))

    def _refuse(self, *fields: str) -> None:
        for name in fields:
            if getattr(self, name) not in (None, ""):
                raise ValueError(f"action {self.action} does not use {name}")

    def _check_set(self) -> None:
        if not self.key:
            raise ValueError(f"action {self.action} needs a key")
        if self._sources() == 0 and self.default_value is None:
            raise ValueError(
                f"action {self.action} needs one of value, from_attribute, from_context or default_value"
            )
        if self._sources() > 1:
            raise ValueError(f"action {self.action} takes only one of value, from_attribute and from_context")
        self._refuse("pattern", "converted_type")
        if self.from_context.startswith("auth."):
            raise ValueError(
                "from_context auth.* reads a server authenticator's data, which Flowglass does not "
                "support; use metadata.<header> or client.address"
            )
        if self.value is not None:
            value_template(self.value)
        if self.default_value is not None:
            value_template(self.default_value)

    def _check_delete(self) -> None:
        if not self.key and not self.pattern:
            raise ValueError(f"action {self.action} needs a key, a pattern or both")
        self._refuse("value", "from_attribute", "from_context", "default_value", "converted_type")
        if self.pattern:
            compile_pattern(self.pattern)

    _check_hash = _check_delete

    def _check_extract(self) -> None:
        if not self.key:
            raise ValueError("action extract needs a key")
        if not self.pattern:
            raise ValueError("action extract needs a pattern with named groups")
        self._refuse("value", "from_attribute", "from_context", "default_value", "converted_type")
        regex = compile_pattern(self.pattern)
        if regex.groups == 0:
            raise ValueError("the extract pattern has no named groups (write (?P<name>...))")
        if len(regex.groupindex) != regex.groups:
            raise ValueError("every group of the extract pattern must be named (write (?P<name>...))")

    def _check_convert(self) -> None:
        if not self.key:
            raise ValueError("action convert needs a key")
        self._refuse("value", "from_attribute", "from_context", "default_value", "pattern")
        if not self.converted_type:
            raise ValueError("action convert needs converted_type: int, double or string")
        if self.converted_type not in _CONVERSIONS:
            raise ValueError(f"converted_type {self.converted_type!r} is not one of int, double, string")


class AttributesConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: What to do, in order.
    actions: list[ActionConfig]
    #: Only items matching this are changed.
    include: MatchProperties | None = None
    #: Items matching this are left alone.
    exclude: MatchProperties | None = None
    #: Flowglass: also run the actions on the attributes of each selected span's events
    #: (the Collector leaves span events alone, so this is off by default). Useful for
    #: `delete` and `hash` of personal data that instrumentation puts on events.
    span_events: bool = False

    def __post_init__(self) -> None:
        if not self.actions:
            raise ValueError("actions must hold at least one action")


# -- the processor -----------------------------------------------------------------------



class AttributesProcessor:
    """Runs the configured actions on every selected item of each batch, in place."""

    mutates_data = True

    def __init__(self, settings: Settings, config: AttributesConfig, signal: Signal, next_consumer: Consumer) -> None:
        for section, props in (("include", config.include), ("exclude", config.exclude)):
            if props is not None:
                problem = props.signal_problem(signal)
                if problem:
                    raise ValueError(f"processors.{settings.id}.{section}: {problem}")
        self._next = next_consumer
        self._signal = signal
        self._actions = Actions(config.actions)
        self._selector = Selector.build(config.include, config.exclude)
        self._span_events = config.span_events
        self._process = {
            Signal.TRACES: self._traces,
            Signal.LOGS: self._logs,
            Signal.METRICS: self._metrics,
        }[signal]

    async def start(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def consume(self, batch: Batch) -> None:
        self._actions.prepare(batch.client)
        self._process(batch.mutable())
        await self._next.consume(batch)

    # Each item's attributes go through `apply_merge` with the item's `MergeFromString`, so
    # inserted attributes are added as wire bytes in one call (see `Actions`).

    def _traces(self, request: Any) -> None:
        apply = self._actions.apply_merge
        selector = self._selector
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                if selector is None and not self._span_events:
                    for span in ss.spans:
                        apply(span.attributes, span.MergeFromString, _SPAN_TAG)
                    continue
                resource, scope = rs.resource, ss.scope
                for span in ss.spans:
                    if selector is None or selector.span(resource, scope, span):
                        apply(span.attributes, span.MergeFromString, _SPAN_TAG)
                        if self._span_events:
                            for event in span.events:
                                apply(event.attributes, event.MergeFromString, _EVENT_TAG)

    def _logs(self, request: Any) -> None:
        apply = self._actions.apply_merge
        selector = self._selector
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                resource, scope = rl.resource, sl.scope
                for record in sl.log_records:
                    if selector is None or selector.log(resource, scope, record):
                        apply(record.attributes, record.MergeFromString, _LOG_TAG)

    def _metrics(self, request: Any) -> None:
        apply = self._actions.apply_merge
        selector = self._selector
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                resource, scope = rm.resource, sm.scope
                for metric in sm.metrics:
                    if selector is not None and not selector.metric(resource, scope, metric):
                        continue
                    kind = metric.WhichOneof("data")
                    if kind is None:
                        continue
                    tag = _POINT_TAGS[kind]
                    for point in getattr(metric, kind).data_points:
                        apply(point.attributes, point.MergeFromString, tag)


_SPAN_TAG = attributes_tag(trace_pb2.Span)
_EVENT_TAG = attributes_tag(trace_pb2.Span.Event)
_LOG_TAG = attributes_tag(logs_pb2.LogRecord)
_POINT_TAGS = {
    "gauge": attributes_tag(metrics_pb2.NumberDataPoint),
    "sum": attributes_tag(metrics_pb2.NumberDataPoint),
    "histogram": attributes_tag(metrics_pb2.HistogramDataPoint),
    "exponential_histogram": attributes_tag(metrics_pb2.ExponentialHistogramDataPoint),
    "summary": attributes_tag(metrics_pb2.SummaryDataPoint),
}


def _create(settings: Settings, config: Any, signal: Signal, next_consumer: Consumer) -> AttributesProcessor:
    assert isinstance(config, AttributesConfig)
    return AttributesProcessor(settings, config, signal, next_consumer)


FACTORY = ProcessorFactory(
    type="attributes",
    config_type=AttributesConfig,
    description=(
        "Inserts, updates, upserts, deletes, hashes, extracts and converts attributes of spans, "
        "log records and metric data points, optionally only for items matching include/exclude."
    ),
    signals={Signal.TRACES: Stability.BETA, Signal.METRICS: Stability.BETA, Signal.LOGS: Stability.BETA},
    create=_create,
)

__all__ = [
    "FACTORY",
    "ActionConfig",
    "Actions",
    "AttributesConfig",
    "AttributesProcessor",
    "attributes_tag",
    "context_value",
    "convert_value",
    "hash_value",
]
