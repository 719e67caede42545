"""Remote Write 1.0 encoding: series grouped, sharded and written as `WriteRequest` bytes.

The protobuf is written by hand for the hot path (labels and float samples): the encoded
labels of a series are cached, and so is, per series, everything of a one-sample
`TimeSeries` before its value, so a sample costs a `struct.pack` of its value and a place
in its shard's list. That is several times faster than building `TimeSeries` messages through
the protobuf API, and `tests/unit/exporters/prometheusremotewrite/test_encode.py` checks
that the generated `agent._proto.prometheus.remote_pb2.WriteRequest` parses it back to
exactly what was meant. Native histograms (rare) go through the generated message.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from operator import itemgetter
from typing import Any

from agent._proto.prometheus import remote_pb2, types_pb2
from agent.model.prometheus_series import Exemplar, Labels, NativeHistogram, Translation
from agent.model.protowire import LENGTHS, delimited, length, varint

_SAMPLE = struct.Struct("<BBBd")  # field 2 tag, length, Sample.value tag, value
_DOUBLE = struct.Struct("<d")
_EXEMPLAR_VALUE = struct.Struct("<Bd")  # Exemplar.value tag, value
#: Series whose encoded labels are cached (a few hundred bytes each); emptied when full.
_CACHE_LIMIT = 100_000


_field = delimited
_LENGTHS = LENGTHS
_length = length


_first = itemgetter(0)
_second = itemgetter(1)


def _hist_time(hist: NativeHistogram) -> int:
    return hist.timestamp_ms


class Encoder:
    """Writes `WriteRequest` bytes; caches encoded labels and timestamps between calls.

    A series is identified by its encoded labels: bytes objects keep their hash, so after
    the first lookup of a label tuple every later step (grouping, sharding) is cheap.
    """

    def __init__(self) -> None:
        self._labels: dict[Labels, bytes] = {}
        # By object identity first: the translator hands out the same tuple for a series
        # again and again, and a tuple does not keep its hash. The entry holds the tuple, so
        # its id cannot be reused while it is cached.
        self._by_id: dict[int, tuple[Labels, bytes]] = {}
        self._times: dict[int, bytes] = {}
        # Encoded labels → (shard, head of a one-sample series), for `_heads_for`:
        # (timestamp varint length, shards).
        self._heads: dict[bytes, tuple[int, bytes]] = {}
        self._heads_for = (0, 0)

    def labels(self, labels: Labels) -> bytes:
        entry = self._by_id.get(id(labels))
        if entry is not None and entry[0] is labels:
            return entry[1]
        cached = self._labels.get(labels)
        if cached is None:
            parts = []
            for name, value in labels:
                body = _field(0x0A, name.encode()) + _field(0x12, value.encode())
                parts.append(_field(0x0A, body))
            cached = b"".join(parts)
            if len(self._labels) >= _CACHE_LIMIT:
                self._labels.clear()
            self._labels[labels] = cached
        if len(self._by_id) >= _CACHE_LIMIT:
            self._by_id.clear()
        self._by_id[id(labels)] = (labels, cached)
        return cached

    def _time(self, ts: int) -> bytes:
        cached = self._times.get(ts)
        if cached is None:
            if len(self._times) >= 4096:
                self._times.clear()
            cached = self._times[ts] = b"\x10" + varint(ts)
        return cached

    def series(self, labels: bytes, samples: list[tuple[int, float]],
               histograms: list[NativeHistogram] | tuple[()] = (), exemplars: list[Exemplar] | tuple[()] = ()) -> bytes:
        """One `TimeSeries` as a `WriteRequest.timeseries` field (tag, length, body)."""
        parts = [labels]
        pack, time = _SAMPLE.pack, self._time
        for ts, value in samples:
            t = time(ts)
            parts.append(pack(0x12, 9 + len(t), 0x09, value))
            parts.append(t)
        for ex in exemplars:
            body = b"".join(_field(0x0A, _field(0x0A, k.encode()) + _field(0x12, v.encode())) for k, v in ex.labels)
            body += _EXEMPLAR_VALUE.pack(0x11, ex.value) + b"\x18" + varint(ex.timestamp_ms)
            parts.append(_field(0x1A, body))
        for hist in histograms:
            parts.append(_field(0x22, histogram_message(hist).SerializeToString()))
        body = b"".join(parts)
        return b"\x0a" + _length(len(body)) + body

    def metadata(self, translation: Translation) -> bytes:
        """`WriteRequest.metadata` fields for every metric family of the translation."""
        families = {f.name: f for f in translation.families}
        families.update((f.name, f) for f, _, _ in translation.histograms)
        parts = []
        for family in families.values():
            body = b"\x08" + varint(family.type) + _field(0x12, family.name.encode())
            if family.help:
                body += _field(0x22, family.help.encode())
            if family.unit:
                body += _field(0x2A, family.unit.encode())
            parts.append(_field(0x1A, body))
        return b"".join(parts)

    def shard(self, translation: Translation, shards: int, max_bytes: int) -> list[list[tuple[bytes, int]]]:
        """Per shard, `WriteRequest` bodies of at most `max_bytes` (a larger single series goes
        alone) with their item counts. A series always lands on the same shard, and its
        samples in one body are in timestamp order."""
        labels = translation.labels
        # Every sample's series as its encoded labels. An entry of `_by_id` holds its tuple,
        # so a live tuple with that id is that tuple: a hit needs no further check.
        entries: list[Any] = list(map(self._by_id.get, map(id, labels)))
        i = -1
        for _ in range(entries.count(None)):  # new tuples (a few a batch, such as target_info)
            i = entries.index(None, i + 1)
            self.labels(labels[i])
            entries[i] = self._by_id[id(labels[i])]
        keys = list(map(_second, entries))
        if translation.histograms or translation.exemplars or len(set(keys)) != len(keys):
            return self._shard_general(translation, keys, shards, max_bytes)
        return self._shard_simple(translation, keys, shards, max_bytes)

    def _shard_simple(self, translation: Translation, keys: list[bytes], shards: int,
                      max_bytes: int) -> list[list[tuple[bytes, int]]]:
        """`shard` for the common case: one float sample per series and nothing else.

        A series is three pieces — its head (tag, length, labels, sample tag; cached with
        the series' shard), the packed value and the timestamp varint — put into its
        shard's list by one short loop and joined once per shard. Timestamps, values and
        heads are looked up by `map` over the whole batch first."""
        times_ms = translation.times
        times, time = self._times, self._time
        # The batch's few distinct timestamps, held here: `_time` may empty its cache.
        stamp_of = {ts: times.get(ts) or time(ts) for ts in set(times_ms)}
        if len(set(map(len, stamp_of.values()))) != 1:  # none, or varints of different lengths
            return self._shard_general(translation, keys, shards, max_bytes)
        tlen = len(next(iter(stamp_of.values())))
        if self._heads_for != (tlen, shards):
            self._heads.clear()
            self._heads_for = (tlen, shards)
        heads = self._heads
        entries: list[Any] = list(map(heads.get, keys))
        if None in entries:
            tail = bytes((0x12, 9 + tlen, 0x09))
            if len(heads) >= _CACHE_LIMIT:
                heads.clear()
            for i, key in enumerate(keys):
                if entries[i] is None:
                    n = len(key) + 11 + tlen
                    entry = heads[key] = (hash(key) % shards, b"".join((b"\x0a", _length(n), key, tail)))
                    entries[i] = entry
        stamps = list(map(stamp_of.__getitem__, times_ms))
        values = list(map(_DOUBLE.pack, translation.values))
        parts: list[list[bytes]] = [[] for _ in range(shards)]
        for (shard, head), value, t in zip(entries, values, stamps, strict=True):
            parts[shard] += (head, value, t)
        out: list[list[tuple[bytes, int]]] = []
        for own in parts:
            if not own:
                out.append([])
                continue
            body = b"".join(own)
            if len(body) <= max_bytes:
                out.append([(body, len(own) // 3)])
            else:  # cut by series: each is three pieces
                series = [b"".join(own[i:i + 3]) for i in range(0, len(own), 3)]
                out.append(list(_cut(series, [1] * len(series), max_bytes)))
        return out

    def _shard_general(self, translation: Translation, keys: list[bytes], shards: int,
                       max_bytes: int) -> list[list[tuple[bytes, int]]]:
        """`shard` for batches with several samples of a series, native histograms or exemplars."""
        labels_of = self.labels
        # Series → index of its sample; a series with more than one sample in the batch
        # keeps the rest in `more`. Ints and bytes keep the collector out of it.
        groups: dict[bytes, int] = {}
        more: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys):
            if groups.setdefault(key, i) != i:
                more.setdefault(key, []).append(i)
        values, times_ms = translation.values, translation.times
        hists: dict[bytes, list[NativeHistogram]] = {}
        for _, labels, hist in translation.histograms:
            hists.setdefault(labels_of(labels), []).append(hist)
        exemplars: dict[bytes, list[Exemplar]] = {}
        for labels, ex in translation.exemplars:
            exemplars.setdefault(labels_of(labels), []).append(ex)
        # Per shard, encoded series and their item counts, side by side (no tuple per series).
        encoded: list[list[bytes]] = [[] for _ in range(shards)]
        counts: list[list[int]] = [[] for _ in range(shards)]
        pack, time, times, series, lengths = _SAMPLE.pack, self._time, self._times, self.series, _LENGTHS
        for key, i in groups.items():
            if not hists and (not more or key not in more) and (not exemplars or key not in exemplars):
                # One sample, nothing else, written inline.
                ts, value = times_ms[i], values[i]
                t = times.get(ts) or time(ts)
                n = len(key) + 11 + len(t)
                shard = hash(key) % shards
                encoded[shard].append(b"".join((
                    b"\x0a", lengths[n] if n < 0x4000 else varint(n), key,
                    pack(0x12, 9 + len(t), 0x09, value), t)))
                counts[shard].append(1)
                continue
            samples = [(times_ms[j], values[j]) for j in (i, *more.get(key, ()))]
            if len(samples) > 1:
                samples.sort(key=_first)
            own: list[NativeHistogram] = hists.pop(key, []) if hists else []
            own.sort(key=_hist_time)
            body = series(key, samples, own, exemplars.get(key, ()) if exemplars else ())
            shard = hash(key) % shards
            encoded[shard].append(body)
            counts[shard].append(len(samples) + len(own))
        for key, own in hists.items():
            own.sort(key=_hist_time)
            shard = hash(key) % shards
            encoded[shard].append(self.series(key, [], own))
            counts[shard].append(len(own))
        return [list(_cut(parts, n, max_bytes)) for parts, n in zip(encoded, counts, strict=True)]


def _cut(series: list[bytes], counts: list[int], max_bytes: int) -> Iterator[tuple[bytes, int]]:
    """`WriteRequest` bodies of at most `max_bytes` (a larger single series goes alone)."""
    if not series:
        return
    if sum(map(len, series)) <= max_bytes:  # the usual case: one body per shard
        yield b"".join(series), sum(counts)
        return
    parts: list[bytes] = []
    size = items = 0
    for encoded, n in zip(series, counts, strict=True):
        if parts and size + len(encoded) > max_bytes:
            yield b"".join(parts), items
            parts, size, items = [], 0, 0
        parts.append(encoded)
        size += len(encoded)
        items += n
    if parts:
        yield b"".join(parts), items


def histogram_message(hist: NativeHistogram) -> types_pb2.Histogram:
    msg = types_pb2.Histogram(
        count_int=hist.count,
        sum=hist.sum,
        schema=hist.schema,
        zero_threshold=hist.zero_threshold,
        zero_count_int=hist.zero_count,
        timestamp=hist.timestamp_ms,
        reset_hint=types_pb2.Histogram.GAUGE if hist.gauge else types_pb2.Histogram.UNKNOWN,
    )
    for spans, deltas, source in ((msg.positive_spans, msg.positive_deltas, hist.positive),
                                  (msg.negative_spans, msg.negative_deltas, hist.negative)):
        previous_end = 0
        previous_count = 0
        for i, (start, counts) in enumerate(source):
            # The first span's offset is its start index; later ones are the gap after the previous span.
            spans.add(offset=start if i == 0 else start - previous_end, length=len(counts))
            previous_end = start + len(counts)
            for c in counts:
                deltas.append(c - previous_count)
                previous_count = c
    return msg


def split(body: bytes) -> list[bytes]:
    """A `WriteRequest` body cut into two halves by series (for finding a rejected series)."""
    request = remote_pb2.WriteRequest.FromString(body)
    half = len(request.timeseries) // 2
    out = []
    for part in (request.timeseries[:half], request.timeseries[half:]):
        sub = remote_pb2.WriteRequest()
        sub.timeseries.extend(part)
        out.append(sub.SerializeToString())
    return out


def count(body: bytes) -> tuple[int, int]:
    """(series, items) of a `WriteRequest` body."""
    request = remote_pb2.WriteRequest.FromString(body)
    return len(request.timeseries), sum(len(ts.samples) + len(ts.histograms) for ts in request.timeseries)
