"""The hand-written WriteRequest encoding parses back, with the generated module, to what was meant."""

from __future__ import annotations

import math

from agent._proto.prometheus import remote_pb2
from agent.exporters.prometheusremotewrite.encode import Encoder, count, split, varint
from agent.model.prometheus_series import (
    STALE_NAN,
    Exemplar,
    Family,
    MetricType,
    NativeHistogram,
    Translation,
)

FAM = Family("x", MetricType.GAUGE)


def test_varint() -> None:
    assert varint(0) == b"\x00"
    assert varint(300) == b"\xac\x02"
    assert len(varint(-1)) == 10


def encode(tr: Translation, shards: int = 1, max_bytes: int = 10**6) -> list[list[tuple[bytes, int]]]:
    return Encoder().shard(tr, shards, max_bytes)


def test_samples_and_labels_round_trip() -> None:
    labels = (("__name__", "up"), ("job", "ünïcode"), ("z", ""))
    other = (("__name__", "b"),)
    tr = Translation.of([(FAM, labels, 0.0, 0), (FAM, labels, 1.5, 1_700_000_000_123), (FAM, labels, -2.0, -5),
                              (FAM, other, math.inf, 1), (FAM, other, STALE_NAN, 2), (FAM, (("__name__", "c"),), 3.0, 7)])
    (bodies,) = encode(tr)
    ((body, items),) = bodies
    assert items == 6
    req = remote_pb2.WriteRequest.FromString(body)
    ts0 = req.timeseries[0]
    assert [(lb.name, lb.value) for lb in ts0.labels] == list(labels)
    # Samples of a series are put in timestamp order.
    assert [(s.timestamp, s.value) for s in ts0.samples] == [(-5, -2.0), (0, 0.0), (1_700_000_000_123, 1.5)]
    assert req.timeseries[1].samples[0].value == math.inf
    assert math.isnan(req.timeseries[1].samples[1].value)
    assert [(s.timestamp, s.value) for s in req.timeseries[2].samples] == [(7, 3.0)]  # the inline path


def test_native_histogram_spans_and_deltas() -> None:
    hist = NativeHistogram(schema=3, zero_threshold=1e-9, zero_count=1, count=9, sum=10.0,
                           positive=[(-1, [1, 0, 2]), (5, [5])], negative=[], timestamp_ms=42)
    labels = (("__name__", "h"),)
    tr = Translation.of([(FAM, (("__name__", "g"),), 1.0, 1)], histograms=[(FAM, labels, hist)])
    ((body, items),) = encode(tr)[0]
    assert items == 2
    req = remote_pb2.WriteRequest.FromString(body)
    h = next(ts for ts in req.timeseries if ts.histograms).histograms[0]
    assert (h.count_int, h.zero_count_int, h.schema, h.sum, h.timestamp) == (9, 1, 3, 10.0, 42)
    assert [(s.offset, s.length) for s in h.positive_spans] == [(-1, 3), (3, 1)]
    assert list(h.positive_deltas) == [1, -1, 2, 3]


def test_bodies_respect_max_bytes_and_split_halves() -> None:
    tr = Translation.of([(FAM, (("__name__", f"m{i}"),), float(i), i) for i in range(100)])
    (bodies,) = encode(tr, max_bytes=500)
    assert len(bodies) > 1
    assert all(len(b) <= 500 for b, _ in bodies)
    assert sum(n for _, n in bodies) == 100
    halves = split(bodies[0][0])
    assert sum(count(h)[0] for h in halves) == count(bodies[0][0])[0]


def test_a_series_always_lands_on_the_same_shard() -> None:
    encoder = Encoder()
    names = [f"m{i}" for i in range(40)]

    def where() -> dict[str, int]:
        tr = Translation.of([(FAM, (("__name__", n),), 1.0, 1) for n in names])
        out = {}
        for shard, bodies in enumerate(encoder.shard(tr, 4, 10**6)):
            for body, _ in bodies:
                for ts in remote_pb2.WriteRequest.FromString(body).timeseries:
                    out[ts.labels[0].value] = shard
        return out

    first = where()
    assert len(set(first.values())) > 1
    names.reverse()
    assert where() == first


def test_exemplars_are_encoded_with_their_series() -> None:
    labels = (("__name__", "c_total"),)
    tr = Translation.of([(FAM, labels, 5.0, 10)],
                     exemplars=[(labels, Exemplar((("trace_id", "ab" * 16),), 1.25, 9))])
    ((body, items),) = encode(tr)[0]
    ts = remote_pb2.WriteRequest.FromString(body).timeseries[0]
    assert items == 1
    assert [(s.timestamp, s.value) for s in ts.samples] == [(10, 5.0)]
    (ex,) = ts.exemplars
    assert [(lb.name, lb.value) for lb in ex.labels] == [("trace_id", "ab" * 16)]
    assert (ex.value, ex.timestamp) == (1.25, 9)


def test_the_one_sample_fast_path_writes_what_the_general_path_writes() -> None:
    # One encoder across batches whose shard count, timestamp varint length and size limit
    # change, so cached series heads are made, reused and dropped.
    encoder = Encoder()
    for shards, base_ms, max_bytes in ((4, 1, 10**6), (4, 1_700_000_000_000, 10**6),
                                       (3, 1_700_000_000_000, 400), (1, 5, 10**6), (4, 1, 10**6)):
        tr = Translation.of([(FAM, (("__name__", f"m{i}"), ("i", str(i))), float(i), base_ms + i % 3)
                             for i in range(50)])
        got = encoder.shard(tr, shards, max_bytes)
        assert got == encoder._shard_general(tr, [encoder.labels(lb) for lb in tr.labels], shards, max_bytes)
        assert sum(n for bodies in got for _, n in bodies) == 50
        assert all(len(body) <= max_bytes for bodies in got for body, _ in bodies)
        parsed = [remote_pb2.WriteRequest.FromString(body) for bodies in got for body, _ in bodies]
        samples = {ts.labels[1].value: (ts.samples[0].value, ts.samples[0].timestamp)
                   for req in parsed for ts in req.timeseries}
        assert samples == {str(i): (float(i), base_ms + i % 3) for i in range(50)}


def test_a_batch_with_more_timestamps_than_the_timestamp_cache_holds() -> None:
    tr = Translation.of([(FAM, (("__name__", "m"), ("i", str(i))), 1.0, 1_700_000_000_000 + i) for i in range(5000)])
    got = Encoder().shard(tr, 2, 10**7)
    stamps = {ts.labels[1].value: ts.samples[0].timestamp for bodies in got for body, _ in bodies
              for ts in remote_pb2.WriteRequest.FromString(body).timeseries}
    assert stamps == {str(i): 1_700_000_000_000 + i for i in range(5000)}
