"""Delta → cumulative for Prometheus: running totals per series, bounded and expiring.

Prometheus stores counters and histograms as cumulative values; OTLP senders may send
deltas (each point counts what happened since the previous one). The Collector's
Prometheus exporters drop delta points; Flowglass adds them up here instead.

- One stream per series (the sorted label tuple, `__name__` included). A delta point adds
  to its stream's totals and the totals are emitted with the point's timestamp.
- A point not newer than the last one of its stream is refused (`out_of_order`): adding
  it would count it twice when a sender retries.
- At most `max_streams` streams are kept; a point of a new stream beyond that is refused
  (`max_streams`) until streams expire. A stream not updated for `max_stale` is forgotten,
  and its next point starts from zero (Prometheus sees a counter reset, which `rate()`
  handles).
- Explicit histograms whose bounds change restart their stream; exponential histograms
  of different scales are merged at the coarser scale.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_STREAMS = 100_000
DEFAULT_MAX_STALE_NS = 5 * 60 * 1_000_000_000


@dataclass(slots=True)
class ExpState:
    """An exponential histogram's content, with buckets keyed by OTLP index."""

    scale: int
    zero_threshold: float = 0.0
    zero_count: int = 0
    count: int = 0
    sum: float = 0.0
    positive: dict[int, int] = field(default_factory=dict)
    negative: dict[int, int] = field(default_factory=dict)

    @classmethod
    def from_point(cls, dp: Any) -> ExpState:
        pos = {dp.positive.offset + i: c for i, c in enumerate(dp.positive.bucket_counts) if c}
        neg = {dp.negative.offset + i: c for i, c in enumerate(dp.negative.bucket_counts) if c}
        return cls(dp.scale, dp.zero_threshold, dp.zero_count, dp.count, dp.sum, pos, neg)

    def downscaled(self, by: int) -> ExpState:
        """The same histogram at scale `scale - by` (each step merges pairs of buckets)."""
        if by <= 0:
            return self
        return ExpState(self.scale - by, self.zero_threshold, self.zero_count, self.count, self.sum,
                        _merge(self.positive, by), _merge(self.negative, by))

    def add(self, other: ExpState) -> ExpState:
        scale = min(self.scale, other.scale)
        a, b = self.downscaled(self.scale - scale), other.downscaled(other.scale - scale)
        pos = dict(a.positive)
        for i, c in b.positive.items():
            pos[i] = pos.get(i, 0) + c
        neg = dict(a.negative)
        for i, c in b.negative.items():
            neg[i] = neg.get(i, 0) + c
        return ExpState(scale, max(a.zero_threshold, b.zero_threshold), a.zero_count + b.zero_count,
                        a.count + b.count, a.sum + b.sum, pos, neg)


def _merge(buckets: dict[int, int], by: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for i, c in buckets.items():
        j = i >> by  # floor division by 2**by, also for negative indexes
        out[j] = out.get(j, 0) + c
    return out


@dataclass(slots=True)
class _Stream:
    last_ns: int
    value: Any


class Cumulator:
    """Per-series running totals of delta points (see the module docstring)."""

    def __init__(self, max_streams: int = DEFAULT_MAX_STREAMS, max_stale_ns: int = DEFAULT_MAX_STALE_NS) -> None:
        self.max_streams = max_streams
        self.max_stale_ns = max_stale_ns
        # Least recently updated first, so expiry looks only at the front.
        self._streams: OrderedDict[Hashable, _Stream] = OrderedDict()
        #: When each stream was last updated, by the clock `expire` is given.
        self._updated_ns: dict[Hashable, int] = {}
        self._now_ns = 0
        #: Why the last `add_*` returned None: `out_of_order` or `max_streams`.
        self.last_refusal = ""

    def __len__(self) -> int:
        return len(self._streams)

    def expire(self, now_ns: int) -> int:
        """Set the time of the updates that follow to `now_ns` and forget streams not updated
        within `max_stale` of it; how many were forgotten."""
        self._now_ns = now_ns
        cutoff = now_ns - self.max_stale_ns
        forgotten = 0
        while self._streams:
            key = next(iter(self._streams))
            if self._updated_ns[key] >= cutoff:
                break
            del self._streams[key]
            del self._updated_ns[key]
            forgotten += 1
        return forgotten

    def _stream(self, key: Hashable, t: int) -> tuple[_Stream | None, bool]:
        """(the stream, whether it is new) or (None, False) when the point is refused."""
        stream = self._streams.get(key)
        if stream is None:
            if len(self._streams) >= self.max_streams:
                self.last_refusal = "max_streams"
                return None, False
            return _Stream(t, None), True
        if t <= stream.last_ns:
            self.last_refusal = "out_of_order"
            return None, False
        return stream, False

    def _store(self, key: Hashable, stream: _Stream, t: int) -> None:
        stream.last_ns = t
        self._streams[key] = stream
        self._streams.move_to_end(key)
        self._updated_ns[key] = self._now_ns

    def add_sum(self, key: Hashable, delta: float, t: int) -> float | None:
        """The running total after adding `delta` at `t`, or None when refused."""
        stream, _ = self._stream(key, t)
        if stream is None:
            return None
        stream.value = (stream.value or 0.0) + delta
        self._store(key, stream, t)
        return float(stream.value)

    def add_histogram(self, key: Hashable, bounds: list[float], counts: list[int], count: int,
                      total: float, t: int) -> tuple[list[int], int, float] | None:
        """(bucket counts, count, sum) after adding a delta histogram, or None when refused."""
        stream, _ = self._stream(key, t)
        if stream is None:
            return None
        previous = stream.value
        if previous is not None and previous[0] == bounds and len(previous[1]) == len(counts):
            counts = [a + b for a, b in zip(previous[1], counts, strict=True)]
            count += previous[2]
            total += previous[3]
        stream.value = (bounds, counts, count, total)
        self._store(key, stream, t)
        return counts, count, total

    def add_exponential(self, key: Hashable, delta: ExpState, t: int) -> ExpState | None:
        stream, _ = self._stream(key, t)
        if stream is None:
            return None
        merged = delta if stream.value is None else stream.value.add(delta)
        stream.value = merged
        self._store(key, stream, t)
        return merged
