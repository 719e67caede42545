"""Base-2 exponential histogram buckets for the spanmetrics `duration` metric.

OTLP's exponential histogram: at scale s, bucket i holds the values in
(base**i, base**(i+1)] with base = 2**(2**-s). Recording starts at scale 20 (the Collector's
maximum) and the scale shrinks, halving the resolution each step, whenever the buckets in
use would span more than `max_size` indexes; no value is ever lost, only merged.
"""

from __future__ import annotations

import math

#: Scale an exponential histogram starts at (the Collector's maximum); it only ever shrinks.
_MAX_SCALE = 20


class ExponentialBuckets:
    """A base-2 exponential histogram of positive values that keeps at most `max_size` buckets."""

    __slots__ = ("counts", "hi", "lo", "max_size", "scale", "zero")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.scale = _MAX_SCALE
        self.counts: dict[int, int] = {}
        self.lo = 0
        self.hi = 0
        self.zero = 0

    def observe(self, value: float) -> None:
        if value <= 0.0:
            self.zero += 1
            return
        # Bucket i holds (base**i, base**(i+1)] with base = 2**(2**-scale).
        index = math.ceil(math.ldexp(math.log2(value), self.scale)) - 1
        counts = self.counts
        if not counts:
            self.lo = self.hi = index
        elif index < self.lo or index > self.hi:
            lo, hi = min(self.lo, index), max(self.hi, index)
            shift = 0
            while (hi >> shift) - (lo >> shift) + 1 > self.max_size:
                shift += 1
            if shift:
                self._downscale(shift)
                index >>= shift
                lo >>= shift
                hi >>= shift
            self.lo, self.hi = lo, hi
            counts = self.counts  # replaced by a downscale
        counts[index] = counts.get(index, 0) + 1

    def _downscale(self, shift: int) -> None:
        merged: dict[int, int] = {}
        for i, c in self.counts.items():
            j = i >> shift
            merged[j] = merged.get(j, 0) + c
        self.counts = merged
        self.scale -= shift

    def buckets(self) -> list[int]:
        if not self.counts:
            return []
        get = self.counts.get
        return [get(i, 0) for i in range(self.lo, self.hi + 1)]
