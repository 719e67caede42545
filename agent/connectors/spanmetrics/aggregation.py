"""The spanmetrics state: series per resource, bounded, read from spans and built into OTLP.

`Aggregator.add` walks an `ExportTraceServiceRequest` in place (protobuf fields only, no
span objects) and updates one `_Series` per (resource, span name, kind, status, dimension
values). `Aggregator.build` turns the state into an `ExportMetricsServiceRequest`;
`Aggregator.after_flush` resets it (delta) or drops exemplars and expired series
(cumulative). Everything here is synchronous and runs on the event loop between awaits, so
no lock is needed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Exemplar
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agent.connectors.spanmetrics import SpanMetricsConfig
from agent.connectors.spanmetrics.exponential import ExponentialBuckets

#: Name of the attribute that marks an overflow series (OpenTelemetry SDK convention).
OVERFLOW_ATTRIBUTE = "otel.metric.overflow"
#: The instrumentation scope of the metrics built here (the Collector's name for it).
SCOPE_NAME = "spanmetricsconnector"

_KIND_NAMES = tuple(Span.SpanKind.Name(i) for i in range(len(Span.SpanKind.keys())))
_STATUS_NAMES = tuple(Status.StatusCode.Name(i) for i in range(len(Status.StatusCode.keys())))


def _str_value(text: str) -> AnyValue:
    return AnyValue(string_value=text)


def _kv(key: str, value: AnyValue) -> KeyValue:
    kv = KeyValue(key=key)
    kv.value.CopyFrom(value)
    return kv


def _enum_name(names: tuple[str, ...], value: int, prefix: str) -> str:
    return names[value] if 0 <= value < len(names) else f"{prefix}{value}"


class _Series:
    """One combination of dimension values: its counts since `start_ns` (or the last flush)."""

    __slots__ = ("attributes", "calls", "counts", "exemplars", "expo", "last_seen_ns", "start_ns", "sum")

    def __init__(self, attributes: list[KeyValue], n_buckets: int, expo_size: int, now_ns: int) -> None:
        self.attributes = attributes
        self.calls = 0
        self.sum = 0.0
        self.counts = [0] * n_buckets
        self.expo = ExponentialBuckets(expo_size) if expo_size else None
        self.exemplars: list[tuple[bytes, bytes, float, int]] = []
        self.start_ns = now_ns
        self.last_seen_ns = now_ns


class _Resource:
    """The series of one span resource; `overflow` takes spans past the series limit."""

    __slots__ = ("overflow", "resource", "series")

    def __init__(self, resource: bytes) -> None:
        #: The serialized `Resource` message the metrics are emitted under.
        self.resource = resource
        self.series: dict[tuple[object, ...], _Series] = {}
        self.overflow: _Series | None = None

    def all_series(self) -> Iterable[_Series]:
        yield from self.series.values()
        if self.overflow is not None:
            yield self.overflow


@dataclass
class AddResult:
    """What one `add` did: spans aggregated, spans skipped (no service.name), spans that overflowed."""

    aggregated: int = 0
    skipped: int = 0
    overflowed: int = 0


class Aggregator:
    """Bounded RED state of one connector instance; see the package docstring for the rules."""

    def __init__(self, config: SpanMetricsConfig) -> None:
        hist = config.histogram
        self._histogram = not hist.disable
        expo = hist.exponential_config
        self._expo_size = expo.max_size if (expo is not None and self._histogram) else 0
        self._bounds = hist.bounds() if (self._histogram and not self._expo_size) else ()
        self._n_buckets = len(self._bounds) + 1 if self._bounds else 0
        self._unit = hist.unit
        self._divisor = 1e6 if hist.unit == "ms" else 1e9
        excluded = set(config.exclude_dimensions)
        self._with_service = "service.name" not in excluded
        self._with_name = "span.name" not in excluded
        self._with_kind = "span.kind" not in excluded
        self._with_status = "status.code" not in excluded
        self._dims = [
            (d.name, None if d.default is None else _str_value(d.default)) for d in config.dimensions
        ]
        self._dim_names = frozenset(d.name for d in config.dimensions)
        self._key_attrs = frozenset(config.resource_metrics_key_attributes)
        self._limit = config.series_limit
        self._max_resources = config.resource_metrics_cache_size
        self._delta = config.delta
        self._temporality = (
            AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
            if config.delta
            else AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
        )
        self._expiration_ns = int(float(config.metrics_expiration) * 1e9)
        self._exemplars = config.exemplars.max_per_data_point if config.exemplars.enabled else 0
        prefix = f"{config.namespace}." if config.namespace else ""
        self.calls_name = f"{prefix}calls"
        self.duration_name = f"{prefix}duration"

        self._resources: dict[object, _Resource] = {}
        #: Spans of resources past `resource_metrics_cache_size` land in its overflow series.
        self._overflow_resource = _Resource(b"")
        self._series = 0
        self._interval_start_ns = 0

    # -- state -----------------------------------------------------------------------------

    @property
    def series(self) -> int:
        """Series tracked, overflow series included."""
        overflow = sum(1 for r in self._resources.values() if r.overflow is not None)
        return self._series + overflow + (1 if self._overflow_resource.overflow is not None else 0)

    @property
    def resources(self) -> int:
        return len(self._resources)

    def start(self, now_ns: int) -> None:
        self._interval_start_ns = now_ns

    # -- aggregation -----------------------------------------------------------------------

    def add(self, request: ExportTraceServiceRequest, now_ns: int) -> AddResult:
        """Aggregate every span of `request` (read in place, never changed)."""
        result = AddResult()
        for rs in request.resource_spans:
            service: AnyValue | None = None
            resource_dims: dict[str, AnyValue] = {}
            dim_names = self._dim_names
            for kv in rs.resource.attributes:
                key = kv.key
                if key == "service.name":
                    service = kv.value
                if key in dim_names:
                    resource_dims[key] = kv.value
            if service is None:
                result.skipped += sum(len(ss.spans) for ss in rs.scope_spans)
                continue
            resource = self._resource_for(rs)
            for ss in rs.scope_spans:
                self._add_spans(ss.spans, resource, service, resource_dims, now_ns, result)
        return result

    def _resource_for(self, rs: object) -> _Resource:
        res = rs.resource  # type: ignore[attr-defined]
        key: object
        if self._key_attrs:
            key = tuple(
                sorted((kv.key, kv.value.SerializeToString()) for kv in res.attributes if kv.key in self._key_attrs)
            )
        else:
            key = res.SerializeToString(deterministic=True)
        resource = self._resources.get(key)
        if resource is None:
            if len(self._resources) >= self._max_resources:
                return self._overflow_resource
            data = key if isinstance(key, bytes) else res.SerializeToString()
            resource = self._resources[key] = _Resource(data)
        return resource

    def _add_spans(
        self,
        spans: Iterable[Span],
        resource: _Resource,
        service: AnyValue,
        resource_dims: dict[str, AnyValue],
        now_ns: int,
        result: AddResult,
    ) -> None:
        # The hot loop: locals only, one dict lookup per span on the common path.
        series_map = resource.series
        overflow_only = resource is self._overflow_resource
        dims = self._dims
        dim_names = self._dim_names
        with_name, with_kind, with_status = self._with_name, self._with_kind, self._with_status
        histogram = self._histogram
        bounds = self._bounds
        expo = self._expo_size
        divisor = self._divisor
        exemplars = self._exemplars
        n = 0
        for span in spans:
            n += 1
            key: tuple[object, ...] = (
                span.name if with_name else "",
                span.kind if with_kind else 0,
                span.status.code if with_status else 0,
            )
            values: list[AnyValue | None] | None = None
            if dims:
                found: dict[str, AnyValue] = {}
                for kv in span.attributes:
                    if kv.key in dim_names:
                        found[kv.key] = kv.value
                values = []
                parts: list[object] = []
                for name, default in dims:
                    v = found.get(name)
                    if v is None:
                        v = resource_dims.get(name, default)
                    values.append(v)
                    parts.append(None if v is None else v.SerializeToString())
                key = (*key, *parts)
            if overflow_only:
                st = self._overflow_of(resource, now_ns)
                result.overflowed += 1
            else:
                found_st = series_map.get(key)
                if found_st is None:
                    if self._series >= self._limit:
                        found_st = self._overflow_of(resource, now_ns)
                        result.overflowed += 1
                    else:
                        found_st = self._new_series(span, service, values, now_ns)
                        series_map[key] = found_st
                        self._series += 1
                st = found_st
            st.calls += 1
            st.last_seen_ns = now_ns
            if histogram:
                nanos = span.end_time_unix_nano - span.start_time_unix_nano
                duration = nanos / divisor if nanos > 0 else 0.0
                st.sum += duration
                if expo:
                    st.expo.observe(duration)  # type: ignore[union-attr]
                else:
                    st.counts[bisect_left(bounds, duration)] += 1
                if exemplars and len(st.exemplars) < exemplars and span.trace_id:
                    st.exemplars.append((span.trace_id, span.span_id, duration, span.end_time_unix_nano))
        result.aggregated += n

    def _new_series(
        self, span: Span, service: AnyValue, values: list[AnyValue | None] | None, now_ns: int
    ) -> _Series:
        attrs: list[KeyValue] = []
        if self._with_service:
            attrs.append(_kv("service.name", service))
        if self._with_name:
            attrs.append(_kv("span.name", _str_value(span.name)))
        if self._with_kind:
            attrs.append(_kv("span.kind", _str_value(_enum_name(_KIND_NAMES, span.kind, "SPAN_KIND_"))))
        if self._with_status:
            code = _enum_name(_STATUS_NAMES, span.status.code, "STATUS_CODE_")
            attrs.append(_kv("status.code", _str_value(code)))
        if values is not None:
            for (name, _), value in zip(self._dims, values, strict=True):
                if value is not None:
                    attrs.append(_kv(name, value))
        return _Series(attrs, self._n_buckets, self._expo_size, now_ns)

    def _overflow_of(self, resource: _Resource, now_ns: int) -> _Series:
        st = resource.overflow
        if st is None:
            attrs = [_kv(OVERFLOW_ATTRIBUTE, AnyValue(bool_value=True))]
            st = resource.overflow = _Series(attrs, self._n_buckets, self._expo_size, now_ns)
        return st

    # -- output ----------------------------------------------------------------------------

    def _all_resources(self) -> Iterable[_Resource]:
        yield from self._resources.values()
        if self._overflow_resource.overflow is not None:
            yield self._overflow_resource

    def build(self, now_ns: int) -> ExportMetricsServiceRequest | None:
        """The state as OTLP metrics at `now_ns`; None when there is nothing to emit."""
        request = ExportMetricsServiceRequest()
        for resource in self._all_resources():
            series = list(resource.all_series())
            if not series:
                continue
            rm = request.resource_metrics.add()
            if resource.resource:
                rm.resource.ParseFromString(resource.resource)
            sm = rm.scope_metrics.add()
            sm.scope.name = SCOPE_NAME
            self._build_calls(sm.metrics.add(), series, now_ns)
            if self._histogram:
                self._build_duration(sm.metrics.add(), series, now_ns)
        return request if request.resource_metrics else None

    def _start_of(self, st: _Series) -> int:
        return self._interval_start_ns if self._delta else st.start_ns

    def _build_calls(self, metric: object, series: list[_Series], now_ns: int) -> None:
        metric.name = self.calls_name  # type: ignore[attr-defined]
        total = metric.sum  # type: ignore[attr-defined]
        total.is_monotonic = True
        total.aggregation_temporality = self._temporality
        for st in series:
            dp = total.data_points.add()
            dp.attributes.extend(st.attributes)
            dp.start_time_unix_nano = self._start_of(st)
            dp.time_unix_nano = now_ns
            dp.as_int = st.calls
            _add_exemplars(dp.exemplars, st)

    def _build_duration(self, metric: object, series: list[_Series], now_ns: int) -> None:
        metric.name = self.duration_name  # type: ignore[attr-defined]
        metric.unit = self._unit  # type: ignore[attr-defined]
        if self._expo_size:
            hist = metric.exponential_histogram  # type: ignore[attr-defined]
        else:
            hist = metric.histogram  # type: ignore[attr-defined]
        hist.aggregation_temporality = self._temporality
        for st in series:
            dp = hist.data_points.add()
            dp.attributes.extend(st.attributes)
            dp.start_time_unix_nano = self._start_of(st)
            dp.time_unix_nano = now_ns
            dp.count = st.calls
            dp.sum = st.sum
            if st.expo is not None:
                dp.scale = st.expo.scale
                dp.zero_count = st.expo.zero
                dp.positive.offset = st.expo.lo
                dp.positive.bucket_counts.extend(st.expo.buckets())
            else:
                dp.explicit_bounds.extend(self._bounds)
                dp.bucket_counts.extend(st.counts)
            _add_exemplars(dp.exemplars, st)

    def after_flush(self, now_ns: int) -> int:
        """Reset for the next interval; returns how many series expired."""
        if self._delta:
            self._resources.clear()
            self._overflow_resource = _Resource(b"")
            self._series = 0
            self._interval_start_ns = now_ns
            return 0
        expired = 0
        horizon = now_ns - self._expiration_ns
        for key, resource in list(self._resources.items()):
            for st in resource.all_series():
                st.exemplars.clear()
            if self._expiration_ns:
                stale = [k for k, st in resource.series.items() if st.last_seen_ns <= horizon]
                for k in stale:
                    del resource.series[k]
                expired += len(stale)
                self._series -= len(stale)
                if resource.overflow is not None and resource.overflow.last_seen_ns <= horizon:
                    resource.overflow = None
                    expired += 1
                if not resource.series and resource.overflow is None:
                    del self._resources[key]
        overflow = self._overflow_resource.overflow
        if overflow is not None:
            overflow.exemplars.clear()
            if self._expiration_ns and overflow.last_seen_ns <= horizon:
                self._overflow_resource.overflow = None
                expired += 1
        return expired


def _add_exemplars(target: object, st: _Series) -> None:
    for trace_id, span_id, value, time_ns in st.exemplars:
        ex: Exemplar = target.add()  # type: ignore[attr-defined]
        ex.trace_id = trace_id
        ex.span_id = span_id
        ex.as_double = value
        ex.time_unix_nano = time_ns
