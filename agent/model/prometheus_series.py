"""What OTLP → Prometheus translation produces (`agent.model.prometheus`): families, series
samples as parallel lists, native histograms and exemplars.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.model.prometheus_cumulative import ExpState

Labels = tuple[tuple[str, str], ...]

#: Prometheus's staleness marker: a NaN with this exact bit pattern.
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]

_STALE_BITS = 0x7FF0000000000002


def is_stale(value: float) -> bool:
    """Whether `value` is Prometheus's staleness marker (not just any NaN)."""
    return value != value and struct.pack("<d", value) == struct.pack("<Q", _STALE_BITS)




class MetricType:
    """`prometheus.MetricMetadata.MetricType` values."""

    UNKNOWN, COUNTER, GAUGE, HISTOGRAM, GAUGEHISTOGRAM, SUMMARY, INFO, STATESET = range(8)


@dataclass(frozen=True, slots=True)
class Family:
    """A metric family: its name (without `_total`/`_bucket`/... for those types), type, help, unit."""

    name: str
    type: int
    help: str = ""
    unit: str = ""


@dataclass(slots=True)
class NativeHistogram:
    """A native histogram sample (Remote Write 1.0 `Histogram`, integer counts)."""

    schema: int
    zero_threshold: float
    zero_count: int
    count: int
    sum: float
    positive: list[tuple[int, list[int]]]  # spans: (start bucket index, counts)
    negative: list[tuple[int, list[int]]]
    timestamp_ms: int
    gauge: bool = False


@dataclass(frozen=True, slots=True)
class Exemplar:
    """A sample that links a series to a trace: labels `trace_id` and `span_id` (hex) when set."""

    labels: Labels
    value: float
    timestamp_ms: int


def exemplars_of(exemplars: Iterable[Any]) -> list[Exemplar]:
    """Prometheus exemplars from OTLP ones (the filtered attributes are left out: Prometheus
    allows 128 characters of exemplar labels, which the two ids already take half of)."""
    out = []
    for ex in exemplars:
        labels: list[tuple[str, str]] = []
        if ex.span_id:
            labels.append(("span_id", bytes(ex.span_id).hex()))
        if ex.trace_id:
            labels.append(("trace_id", bytes(ex.trace_id).hex()))
        value = ex.as_double if ex.WhichOneof("value") == "as_double" else float(ex.as_int)
        out.append(Exemplar(tuple(labels), value, ex.time_unix_nano // 1_000_000))
    return out


@dataclass(slots=True)
class Translation:
    families: list[Family] = field(default_factory=list)
    labels: list[Labels] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    histograms: list[tuple[Family, Labels, NativeHistogram]] = field(default_factory=list)
    #: Exemplars with the series they belong to: a counter, or the `_bucket` series whose
    #: bound is the first one at or above the exemplar's value.
    exemplars: list[tuple[Labels, Exemplar]] = field(default_factory=list)
    #: Data points that could not be translated, by reason.
    dropped: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, samples: Iterable[tuple[Family, Labels, float, int]], **rest: Any) -> Translation:
        out = cls(**rest)
        for sample in samples:
            out.add(*sample)
        return out

    def add(self, family: Family, labels: Labels, value: float, timestamp_ms: int) -> None:
        self.families.append(family)
        self.labels.append(labels)
        self.values.append(value)
        self.times.append(timestamp_ms)

    @property
    def samples(self) -> list[tuple[Family, Labels, float, int]]:
        """The samples as `(family, labels, value, timestamp_ms)` tuples (for tests and the pull exporter)."""
        return list(zip(self.families, self.labels, self.values, self.times, strict=True))

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


def _spans(buckets: Mapping[int, int]) -> list[tuple[int, list[int]]]:
    """Consecutive runs of bucket indexes as (start, counts), in Prometheus indexing.

    OTLP bucket `i` holds (base^i, base^(i+1)]; Prometheus bucket `i` holds
    (base^(i-1), base^i], so indexes shift by one. Short gaps (up to two empty buckets)
    are filled with zeros, which is cheaper than a new span.
    """
    spans: list[tuple[int, list[int]]] = []
    for index in sorted(i for i, c in buckets.items() if c):
        prom = index + 1
        if spans:
            start, counts = spans[-1]
            gap = prom - (start + len(counts))
            if gap <= 2:
                counts.extend([0] * gap)
                counts.append(buckets[index])
                continue
        spans.append((prom, [buckets[index]]))
    return spans


def native_histogram(state: ExpState, timestamp_ms: int) -> NativeHistogram:
    """The native histogram of an exponential histogram's content."""
    return NativeHistogram(
        schema=state.scale,
        zero_threshold=state.zero_threshold,
        zero_count=state.zero_count,
        count=state.count,
        sum=state.sum if not math.isnan(state.sum) else 0.0,
        positive=_spans(state.positive),
        negative=_spans(state.negative),
        timestamp_ms=timestamp_ms,
    )
