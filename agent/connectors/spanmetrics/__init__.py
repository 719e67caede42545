"""`spanmetrics`: request, error and duration (RED) metrics from spans (traces → metrics).

Every span counts once in `calls` (a monotonic sum) and, unless `histogram.disable`, adds
its duration (end − start, in `histogram.unit`) to `duration` (an explicit-bucket or an
exponential histogram). Both metrics are named under `namespace` (default
`traces.span.metrics.calls` and `traces.span.metrics.duration`) and carry, per data point,
`service.name` (from the resource), `span.name`, `span.kind` (`SPAN_KIND_SERVER`, ...) and
`status.code` (`STATUS_CODE_UNSET`, `STATUS_CODE_OK`, `STATUS_CODE_ERROR`), minus
`exclude_dimensions`, plus each configured dimension, looked up in the span's attributes and
then its resource's, falling back to its `default` (omitted when there is none). One
ResourceMetrics is built per span resource (by all its attributes, or only
`resource_metrics_key_attributes`), with that resource's attributes.

    connectors:
      spanmetrics:
        dimensions:
          - name: ml.model.name
          - name: ml.model.version
            default: unknown
        metrics_flush_interval: 15s
    service:
      pipelines:
        traces:
          receivers: [otlp]
          exporters: [spanmetrics]
        metrics:
          receivers: [spanmetrics]
          exporters: [prometheusremotewrite]

Guarantees:

- Spans are read in place from the OTLP protobuf; nothing is copied into Python objects.
  The input batch is never changed (`mutates_data = False`).
- State is bounded. At most `aggregation_cardinality_limit` series (or, when that is 0, the
  Collector's `dimensions_cache_size`, default 1000) are tracked across all resources; a span
  that would open one more series is added to its resource's overflow series, whose only
  attribute is `otel.metric.overflow=true` (counted in
  `flowglass_connector_spanmetrics_overflow_spans_total`). At most
  `resource_metrics_cache_size` resources are tracked; spans of further resources go to one
  overflow series under an empty resource. Totals therefore stay right while per-dimension
  queries undercount, as with the OpenTelemetry SDKs' cardinality limit.
- Metrics are emitted every `metrics_flush_interval` (default 60s) and once more at
  shutdown, so what was aggregated reaches the next pipeline. With cumulative temporality a
  failed emission loses nothing (the next one carries the totals); with delta temporality
  the interval's counts are lost and counted (`outcome="failed"`).
- `metrics_expiration` (0 = never) drops series that saw no span for that long; a series
  that comes back starts again from zero with a new start time.

Differences from the Collector: the series limit counts series across the whole connector
(the Collector limits per resource), `histogram.unit` defaults to `ms` (the Collector's
long-standing default; newer Collectors switch to `s` behind a feature gate), spans whose
resource has no `service.name` are skipped (as the Collector does) and counted, and the
options in `__upstream_options__` are refused by the config layer.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, ClassVar, Final, Literal

import msgspec

from agent.component import ConnectorFactory, Consumer, Settings, Stability
from agent.config.types import Duration
from agent.model import Signal

Temporality = Literal["AGGREGATION_TEMPORALITY_CUMULATIVE", "AGGREGATION_TEMPORALITY_DELTA"]
CUMULATIVE: Final = "AGGREGATION_TEMPORALITY_CUMULATIVE"
DELTA: Final = "AGGREGATION_TEMPORALITY_DELTA"
DEFAULT_NAMESPACE = "traces.span.metrics"
#: The Collector's default explicit buckets, in milliseconds (2ms … 15s).
DEFAULT_BUCKETS_MS = (2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000)
#: The dimensions every span has, in the order they appear on a data point.
DEFAULT_DIMENSIONS = ("service.name", "span.name", "span.kind", "status.code")

_Size = Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]


class DimensionConfig(msgspec.Struct, forbid_unknown_fields=True):
    """An extra dimension: an attribute looked up in the span, then in its resource."""

    name: Annotated[str, msgspec.Meta(min_length=1)]
    #: The value used when neither the span nor its resource has the attribute; without a
    #: default the dimension is left out of that data point.
    default: str | None = None

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"glob"})


class ExplicitHistogramConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: Upper bounds of the buckets, as durations (`2ms`, `1s`); the Collector's list when unset.
    buckets: list[Duration] | None = None

    def __post_init__(self) -> None:
        if self.buckets is not None:
            for a, b in itertools.pairwise(self.buckets):
                if b <= a:
                    raise ValueError("histogram.explicit.buckets must be in strictly increasing order")


class ExponentialHistogramConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: Most buckets for positive values; 0 means the Collector's default, 160.
    max_size: Annotated[int, msgspec.Meta(ge=0, le=16384)] = 160

    def __post_init__(self) -> None:
        if self.max_size == 0:
            self.max_size = 160
        elif self.max_size < 2:
            raise ValueError("histogram.exponential.max_size must be at least 2 (or 0 for the default, 160)")


class HistogramConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    #: No `duration` metric at all (only `calls`).
    disable: bool = False
    #: Unit of the recorded durations.
    unit: Literal["ms", "s"] = "ms"
    #: Explicit buckets (the default kind). `explicit:` with no value means default buckets.
    explicit: ExplicitHistogramConfig | msgspec.UnsetType | None = msgspec.UNSET
    #: Base-2 exponential buckets instead of explicit ones.
    exponential: ExponentialHistogramConfig | msgspec.UnsetType | None = msgspec.UNSET

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"dimensions"})

    def __post_init__(self) -> None:
        if self.explicit is None:
            self.explicit = ExplicitHistogramConfig()
        if self.exponential is None:
            self.exponential = ExponentialHistogramConfig()
        if isinstance(self.explicit, ExplicitHistogramConfig) and isinstance(
            self.exponential, ExponentialHistogramConfig
        ):
            raise ValueError("use either histogram.explicit or histogram.exponential, not both")

    @property
    def exponential_config(self) -> ExponentialHistogramConfig | None:
        return self.exponential if isinstance(self.exponential, ExponentialHistogramConfig) else None

    def bounds(self) -> tuple[float, ...]:
        """Explicit bucket bounds in `unit`."""
        explicit = self.explicit if isinstance(self.explicit, ExplicitHistogramConfig) else None
        scale = 1000.0 if self.unit == "ms" else 1.0
        if explicit is None or explicit.buckets is None:
            return tuple(ms / 1000.0 * scale for ms in DEFAULT_BUCKETS_MS)
        return tuple(float(d) * scale for d in explicit.buckets)


class ExemplarsConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: Attach spans (trace and span ids, duration) to data points as exemplars.
    enabled: bool = False
    #: Most exemplars per data point per flush.
    max_per_data_point: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5


class SpanMetricsConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: Dimensions on top of service.name, span.name, span.kind and status.code.
    dimensions: list[DimensionConfig] = msgspec.field(default_factory=list)
    #: Default dimensions to leave out.
    exclude_dimensions: list[str] = msgspec.field(default_factory=list)
    #: Most series tracked when `aggregation_cardinality_limit` is 0 (see the module docs).
    dimensions_cache_size: _Size = 1000
    #: Most resources tracked at once.
    resource_metrics_cache_size: _Size = 1000
    #: Resource attributes that identify a resource (all of them when empty).
    resource_metrics_key_attributes: list[str] = msgspec.field(default_factory=list)
    aggregation_temporality: Temporality = CUMULATIVE
    histogram: HistogramConfig = msgspec.field(default_factory=HistogramConfig)
    #: How often the metrics are emitted.
    metrics_flush_interval: Duration = Duration(60.0)
    #: Series with no span for this long are dropped; 0 = never.
    metrics_expiration: Duration = Duration(0.0)
    #: Prefix of the metric names (`<namespace>.calls`); empty for bare `calls`/`duration`.
    namespace: str = DEFAULT_NAMESPACE
    exemplars: ExemplarsConfig = msgspec.field(default_factory=ExemplarsConfig)
    #: Most series tracked across all resources; 0 = `dimensions_cache_size`.
    aggregation_cardinality_limit: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 0

    #: Collector options Flowglass does not implement (the config layer reports them).
    __upstream_options__: ClassVar[frozenset[str]] = frozenset(
        {
            "calls_dimensions",
            "events",
            "include_instrumentation_scope",
            "add_resource_attributes",
            "metric_timestamp_cache_size",
            "series_expiration",
            "enable_metrics_sampling_method",
            "resources",
        }
    )

    def __post_init__(self) -> None:
        seen = set(DEFAULT_DIMENSIONS)
        for dim in self.dimensions:
            if dim.name in seen:
                raise ValueError(f"duplicate dimension name {dim.name!r} (the defaults are {', '.join(DEFAULT_DIMENSIONS)})")
            seen.add(dim.name)
        for name in self.exclude_dimensions:
            if name not in DEFAULT_DIMENSIONS:
                raise ValueError(
                    f"exclude_dimensions: {name!r} is not a default dimension "
                    f"(one of {', '.join(DEFAULT_DIMENSIONS)})"
                )
        if self.metrics_flush_interval <= 0:
            raise ValueError("metrics_flush_interval must be greater than 0")

    @property
    def delta(self) -> bool:
        return self.aggregation_temporality == DELTA

    @property
    def series_limit(self) -> int:
        """Most series tracked across all resources (the overflow series come on top)."""
        return self.aggregation_cardinality_limit or self.dimensions_cache_size


def _create(
    settings: Settings, config: Any, input_signal: Signal, consumers: Any
) -> Any:
    from agent.connectors.spanmetrics.connector import SpanMetricsConnector

    assert isinstance(config, SpanMetricsConfig)
    out: dict[Signal, Consumer] = dict(consumers)
    return SpanMetricsConnector(settings, config, out[Signal.METRICS])


FACTORY = ConnectorFactory(
    type="spanmetrics",
    config_type=SpanMetricsConfig,
    description=(
        "Aggregates spans into calls and duration metrics (RED) per service, span name, kind, "
        "status and configured dimensions, with a bounded number of series."
    ),
    signals={(Signal.TRACES, Signal.METRICS): Stability.ALPHA},
    create=_create,
)

__all__ = [
    "FACTORY",
    "DimensionConfig",
    "ExemplarsConfig",
    "ExplicitHistogramConfig",
    "ExponentialHistogramConfig",
    "HistogramConfig",
    "SpanMetricsConfig",
]
