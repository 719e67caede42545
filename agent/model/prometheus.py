"""OTLP metrics → Prometheus series, shared by the `prometheusremotewrite` and `prometheus` exporters.

The rules are the OpenTelemetry specification's Prometheus compatibility rules as the
Collector applies them:

- gauges → one sample; monotonic sums → a counter named `…_total`; non-monotonic sums → a
  gauge;
- explicit histograms → `…_bucket{le}` (cumulative counts, the last `le="+Inf"` equal to
  the count), `…_sum`, `…_count`;
- summaries → `…{quantile}`, `…_sum`, `…_count`;
- exponential histograms → native histograms (`NativeHistogram`, scales above 8 are
  merged down to 8, which is the finest Prometheus supports);
- `job` = `service.namespace/service.name` (or `service.name`), `instance` =
  `service.instance.id`; the other resource attributes go to one `target_info` series
  per resource (unless `target_info` is off) or, with `resource_to_telemetry_conversion`,
  onto every series;
- data point attributes become labels (names sanitized, values of colliding names joined
  with `;`); `external_labels` are added where a series does not carry that label already;
- a data point flagged "no recorded value" becomes a staleness marker.

Delta temporality: the Collector drops delta sums and histograms; here they pass through
`Cumulator` (bounded per-series running totals, see `agent.model.prometheus_cumulative`)
and come out cumulative.

Output is a `Translation`: samples as four parallel lists (family, labels, value,
timestamp in ms) with labels a sorted tuple of `(name, value)` pairs including `__name__`,
native histograms and exemplars. Parallel lists of shared objects rather than a tuple per
sample keep the garbage collector out of the hot path: the label tuples come from a cache,
and floats and ints are not tracked by the collector.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from agent.model.prometheus_cumulative import Cumulator, ExpState
from agent.model.prometheus_names import COUNTER, GAUGE, OTHER, format_float, label_name, metric_name
from agent.model.prometheus_names import _label_cache as _label_names
from agent.model.prometheus_series import (
    STALE_NAN,
    Family,
    Labels,
    MetricType,
    Translation,
    exemplars_of,
    native_histogram,
)

_DELTA = 1  # AggregationTemporality.DELTA
_FLAG_NO_RECORDED_VALUE = 1
_serialize_kv = KeyValue.SerializeToString
#: Resource attributes that become `job` and `instance` instead of `target_info` labels.
_IDENTITY_KEYS = frozenset({"service.name", "service.namespace", "service.instance.id"})
_MAX_SCHEMA = 8
_MIN_SCHEMA = -4


def attribute_text(value: AnyValue) -> str:
    """An attribute value as a label value (strings as they are; others as OTLP/JSON would)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return str(value.string_value)
    if kind is None:
        return ""
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return format_float(value.double_value)
    if kind == "bytes_value":
        return bytes(value.bytes_value).hex()
    if kind == "array_value":
        return "[" + ",".join(_json_item(v) for v in value.array_value.values) + "]"
    return "{" + ",".join(f'"{kv.key}":{_json_item(kv.value)}' for kv in value.kvlist_value.values) + "}"


def _json_item(value: AnyValue) -> str:
    text = attribute_text(value)
    return f'"{text}"' if value.WhichOneof("value") in ("string_value", "bytes_value") else text


def _labels_of(attributes: Iterable[KeyValue]) -> dict[str, str]:
    out: dict[str, str] = {}
    names = _label_names
    for kv in attributes:
        key = kv.key
        name = names.get(key) or label_name(key)
        value = kv.value
        text = value.string_value if value.WhichOneof("value") == "string_value" else attribute_text(value)
        if name in out:  # two keys sanitized to one name: the values are joined
            out[name] = f"{out[name]};{text}"
        else:
            out[name] = text
    return out


class _Keys:
    """The sorted label tuples of one data point's series: its labels plus `__name__`
    (and `le` or `quantile`), built by joining pre-sorted parts instead of sorting each."""

    __slots__ = ("head", "tail")

    def __init__(self, labels: Mapping[str, str]) -> None:
        pairs = sorted(labels.items())
        i = bisect_left(pairs, ("__name__", ""))
        self.head = tuple(pairs[:i])
        self.tail = tuple(pairs[i:])

    def named(self, name: str) -> Labels:
        return (*self.head, ("__name__", name), *self.tail)

    def parts(self, name: str, key: str) -> tuple[Labels, Labels]:
        """(before, after) such that `before + ((key, value),) + after` is sorted."""
        j = bisect_left(self.tail, (key, ""))
        return (*self.head, ("__name__", name), *self.tail[:j]), self.tail[j:]


_le_pairs: dict[float, tuple[str, str]] = {}
#: Data points whose label tuples are cached (a histogram point holds one tuple per bucket,
#: about 2 KB in all): emptied when full, so memory stays bounded (~40 MB) and a stream
#: with more distinct points than this only loses the speed-up.
_KEYS_CACHE_LIMIT = 20_000


def _le_pair(bound: float) -> tuple[str, str]:
    """The `("le", "0.5")` label of a bucket bound (cached: a stream has few distinct bounds)."""
    if len(_le_pairs) > 10_000:
        _le_pairs.clear()
    pair = _le_pairs[bound] = ("le", format_float(bound))
    return pair


@dataclass(frozen=True)
class TranslationOptions:
    namespace: str = ""
    add_metric_suffixes: bool = True
    resource_to_telemetry_conversion: bool = False
    target_info: bool = True
    #: Labels every series gets unless it carries that label already.
    external_labels: Mapping[str, str] = field(default_factory=dict)


class Translator:
    """Turns OTLP metrics requests into Prometheus series; holds the delta → cumulative state."""

    def __init__(self, options: TranslationOptions, cumulator: Cumulator | None = None) -> None:
        self.options = options
        self.cumulator = cumulator or Cumulator()
        self._external = tuple((label_name(k), v) for k, v in options.external_labels.items())
        self._target_family = Family("target_info", MetricType.GAUGE, "Target metadata")
        # The label tuples of a data point's series, by (name, resource labels' number, the
        # wire bytes of each attribute, bounds or None): a stream repeats its series, and
        # reusing the same tuple objects lets the remote write encoder find their encoding by
        # identity. Attributes are keyed by their bytes because one `SerializeToString` a
        # KeyValue costs far less than reading key and value through upb wrappers; equal
        # bytes are equal attributes (equal attributes written differently only miss).
        self._keys: dict[tuple[Any, ...], Any] = {}
        # The labels of the current resource as a small number (cache keys compare and hash
        # an int faster than a tuple of pairs); numbered in `_bases`, dropped with `_keys`.
        self._base_id = 0
        self._bases: dict[tuple[tuple[str, str], ...], int] = {}
        self._families: dict[tuple[str, int, str, str], Family] = {}
        #: Per OTLP metric (name, unit, description, monotonic or None for histograms): its
        #: Prometheus name(s) and family.
        self._named: dict[tuple[str, str, str, bool | None], Any] = {}

    def translate(self, request: ExportMetricsServiceRequest, now_ns: int) -> Translation:
        out = Translation()
        self.cumulator.expire(now_ns)
        for rm in request.resource_metrics:
            base, info = self._resource_labels(rm.resource.attributes)
            self._base_id = self._base_number(tuple(base.items()))
            latest = 0
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    t = self._metric(metric, base, out)
                    if t > latest:
                        latest = t
            if info is not None and latest:
                out.add(self._target_family, info, 1.0, latest // 1_000_000)
        return out

    def _resource_labels(self, attributes: Iterable[KeyValue]) -> tuple[dict[str, str], Labels | None]:
        """(labels every series of the resource gets, the `target_info` labels or None)."""
        attrs = {kv.key: kv.value for kv in attributes}
        base: dict[str, str] = {}
        others = {k: v for k, v in attrs.items() if k not in _IDENTITY_KEYS}
        if self.options.resource_to_telemetry_conversion:
            base.update(_labels_of(KeyValue(key=k, value=v) for k, v in others.items()))
        identity: dict[str, str] = {}
        if "service.name" in attrs:
            job = attribute_text(attrs["service.name"])
            if "service.namespace" in attrs:
                job = f"{attribute_text(attrs['service.namespace'])}/{job}"
            identity["job"] = job
        if "service.instance.id" in attrs:
            identity["instance"] = attribute_text(attrs["service.instance.id"])
        base.update(identity)
        info = None
        if self.options.target_info and others:
            info_labels = _labels_of(KeyValue(key=k, value=v) for k, v in others.items())
            info_labels.update(identity)
            for name, value in self._external:
                info_labels.setdefault(name, value)
            info = _Keys(info_labels).named(self._target_name())
        return base, info

    def _target_name(self) -> str:
        ns = self.options.namespace
        return f"{ns}_target_info" if ns else "target_info"

    def _series(self, base: Mapping[str, str], attributes: Iterable[KeyValue], *reserved: str) -> _Keys:
        labels = _labels_of(attributes)
        labels.update(base)  # job and instance win over data point attributes
        for name in reserved:
            labels.pop(name, None)
        labels.pop("__name__", None)
        for name, value in self._external:
            labels.setdefault(name, value)
        return _Keys(labels)

    def _name_number(self, name: str, unit: str, help_text: str, monotonic: bool) -> tuple[str, Family]:
        """(Prometheus name, family) of a gauge or sum, cached in `_named`."""
        opts = self.options
        prom = metric_name(name, unit, COUNTER if monotonic else GAUGE,
                           suffixes=opts.add_metric_suffixes, namespace=opts.namespace)
        family = self._family(prom, MetricType.COUNTER if monotonic else MetricType.GAUGE, help_text, unit)
        if len(self._named) >= _KEYS_CACHE_LIMIT:
            self._named.clear()
        self._named[(name, unit, help_text, monotonic)] = (prom, family)
        return prom, family

    def _name_histogram(self, name: str, unit: str, help_text: str) -> tuple[str, Family, str, str, str]:
        """(name, family, bucket, sum and count names) of an explicit histogram, cached in `_named`."""
        opts = self.options
        prom = metric_name(name, unit, OTHER, suffixes=opts.add_metric_suffixes, namespace=opts.namespace)
        family = self._family(prom, MetricType.HISTOGRAM, help_text, unit)
        named = (prom, family, f"{prom}_bucket", f"{prom}_sum", f"{prom}_count")
        if len(self._named) >= _KEYS_CACHE_LIMIT:
            self._named.clear()
        self._named[(name, unit, help_text, None)] = named
        return named

    def _base_number(self, labels: tuple[tuple[str, str], ...]) -> int:
        number = self._bases.get(labels)
        if number is None:
            if len(self._bases) >= _KEYS_CACHE_LIMIT:
                self._bases.clear()
                self._keys.clear()  # their keys hold the numbers just given up
            number = self._bases[labels] = len(self._bases)
        return number

    def _family(self, name: str, type_: int, help_text: str, unit: str) -> Family:
        key = (name, type_, help_text, unit)
        family = self._families.get(key)
        if family is None:
            if len(self._families) >= _KEYS_CACHE_LIMIT:
                self._families.clear()
            family = self._families[key] = Family(name, type_, help_text, unit)
        return family

    def _remember(self, key: tuple[Any, ...], value: Any) -> Any:
        if len(self._keys) >= _KEYS_CACHE_LIMIT:
            self._keys.clear()
        self._keys[key] = value
        return value

    def _metric(self, metric: Any, base: dict[str, str], out: Translation) -> int:
        """Translate one OTLP metric into `out`; the latest data point time (ns)."""
        kind = metric.WhichOneof("data")
        name: str = metric.name
        unit: str = metric.unit
        help_text: str = metric.description
        latest = 0
        if kind == "gauge" or kind == "sum":
            data = getattr(metric, kind)
            monotonic = kind == "sum" and data.is_monotonic
            delta = kind == "sum" and data.aggregation_temporality == _DELTA
            named = self._named.get((name, unit, help_text, monotonic))
            if named is None:
                named = self._name_number(name, unit, help_text, monotonic)
            prom, family = named
            cache, base_id = self._keys, self._base_id
            families, labels, values, times = (out.families.append, out.labels.append,
                                               out.values.append, out.times.append)
            for dp in data.data_points:
                attributes = dp.attributes
                ck = (prom, base_id, tuple(map(_serialize_kv, attributes)), None)
                key = cache.get(ck)
                if key is None:
                    key = self._remember(ck, self._series(base, attributes).named(prom))
                value = dp.as_double if dp.WhichOneof("value") == "as_double" else float(dp.as_int)
                t = dp.time_unix_nano
                if t > latest:
                    latest = t
                if dp.flags & _FLAG_NO_RECORDED_VALUE:
                    value = STALE_NAN
                elif delta:
                    total = self.cumulator.add_sum(key, value, t)
                    if total is None:
                        out.drop(self.cumulator.last_refusal)
                        continue
                    value = total
                families(family)
                labels(key)
                values(value)
                times(t // 1_000_000)
                if monotonic and dp.exemplars:
                    out.exemplars.extend((key, ex) for ex in exemplars_of(dp.exemplars))
        elif kind == "histogram":
            latest = self._histogram(metric.histogram, name, unit, help_text, base, out)
        elif kind == "summary":
            latest = self._summary(metric.summary, name, unit, help_text, base, out)
        elif kind == "exponential_histogram":
            latest = self._exponential(metric.exponential_histogram, name, unit, help_text,
                                       base, out)
        return latest

    def _histogram(self, data: Any, name: str, unit: str, help_text: str,
                   base: dict[str, str], out: Translation) -> int:
        named = self._named.get((name, unit, help_text, None))
        if named is None:
            named = self._name_histogram(name, unit, help_text)
        prom, family, bucket_name, sum_name, count_name = named
        delta = data.aggregation_temporality == _DELTA
        latest = 0
        cache, base_id = self._keys, self._base_id
        for dp in data.data_points:
            bounds = tuple(dp.explicit_bounds)
            ck = (prom, base_id, tuple(map(_serialize_kv, dp.attributes)), bounds)
            entry = cache.get(ck)
            if entry is None:
                keys = self._series(base, dp.attributes, "le")
                before, after = keys.parts(bucket_name, "le")
                bucket_keys = tuple([(*before, _le_pair(b), *after) for b in bounds])
                inf_key = (*before, ("le", "+Inf"), *after)
                # The labels of the point's samples in output order: _sum, _count, buckets, +Inf.
                block = (keys.named(sum_name), keys.named(count_name), *bucket_keys, inf_key)
                entry = self._remember(ck, (keys.named(prom), bucket_keys, inf_key, block))
            series_key, bucket_keys, inf_key, block = entry
            t = dp.time_unix_nano
            if t > latest:
                latest = t
            ms = t // 1_000_000
            counts = list(dp.bucket_counts)
            count, total = dp.count, dp.sum
            stale = dp.flags & _FLAG_NO_RECORDED_VALUE
            if delta and not stale:
                state = self.cumulator.add_histogram(series_key, list(bounds), counts, count, total, t)
                if state is None:
                    out.drop(self.cumulator.last_refusal)
                    continue
                counts, count, total = state
            n = len(block)
            out.families.extend([family] * n)
            out.times.extend([ms] * n)
            out.labels.extend(block)
            if stale:
                out.values.extend([STALE_NAN] * n)
                continue
            values = out.values
            values.append(total)
            values.append(float(count))
            nb = n - 3
            if len(counts) != nb:  # one more count than bounds (+Inf is `count`); fewer: malformed
                counts = counts[:nb]
                counts.extend([0] * (nb - len(counts)))
            values.extend(map(float, accumulate(counts)))
            values.append(float(count))
            if dp.exemplars:
                for ex in exemplars_of(dp.exemplars):
                    i = bisect_left(bounds, ex.value)
                    out.exemplars.append((bucket_keys[i] if i < nb else inf_key, ex))
        return latest

    def _summary(self, data: Any, name: str, unit: str, help_text: str,
                 base: dict[str, str], out: Translation) -> int:
        opts = self.options
        prom = metric_name(name, unit, OTHER, suffixes=opts.add_metric_suffixes, namespace=opts.namespace)
        family = self._family(prom, MetricType.SUMMARY, help_text, unit)
        latest = 0
        for dp in data.data_points:
            keys = self._series(base, dp.attributes, "quantile")
            t = dp.time_unix_nano
            latest = max(latest, t)
            ms = t // 1_000_000
            stale = bool(dp.flags & _FLAG_NO_RECORDED_VALUE)
            out.add(family, keys.named(f"{prom}_sum"), STALE_NAN if stale else dp.sum, ms)
            out.add(family, keys.named(f"{prom}_count"), STALE_NAN if stale else float(dp.count), ms)
            before, after = keys.parts(prom, "quantile")
            for q in dp.quantile_values:
                out.add(family, (*before, ("quantile", format_float(q.quantile)), *after),
                        STALE_NAN if stale else q.value, ms)
        return latest

    def _exponential(self, data: Any, name: str, unit: str, help_text: str,
                     base: dict[str, str], out: Translation) -> int:
        opts = self.options
        prom = metric_name(name, unit, OTHER, suffixes=opts.add_metric_suffixes, namespace=opts.namespace)
        family = self._family(prom, MetricType.HISTOGRAM, help_text, unit)
        delta = data.aggregation_temporality == _DELTA
        latest = 0
        for dp in data.data_points:
            key = self._series(base, dp.attributes).named(prom)
            t = dp.time_unix_nano
            latest = max(latest, t)
            if dp.scale < _MIN_SCHEMA:
                out.drop("scale_too_small")
                continue
            state = ExpState.from_point(dp)
            if delta:
                merged = self.cumulator.add_exponential(key, state, t)
                if merged is None:
                    out.drop(self.cumulator.last_refusal)
                    continue
                state = merged
            if state.scale > _MAX_SCHEMA:
                state = state.downscaled(state.scale - _MAX_SCHEMA)
            out.histograms.append((family, key, native_histogram(state, t // 1_000_000)))
        return latest
