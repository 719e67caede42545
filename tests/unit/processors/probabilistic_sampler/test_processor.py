"""The `probabilistic_sampler` processor: config, traces and logs through the public kit."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from agent.component import Kind, Settings
from agent.components import default_registry
from agent.config.types import dec_hook
from agent.model import Batch, Signal, new_request
from agent.processors.probabilistic_sampler import FACTORY, ProbabilisticSamplerConfig
from agent.processors.probabilistic_sampler import sampling as s
from agent.testing import Sink, attrs_dict, key_values, make_traces, spans_of

ID = "probabilistic_sampler/t"


def convert(raw: dict[str, Any]) -> ProbabilisticSamplerConfig:
    return msgspec.convert(raw, ProbabilisticSamplerConfig, dec_hook=dec_hook)


def make(signal: Signal, **raw: Any) -> tuple[Any, Sink, Settings]:
    sink = Sink()
    settings = Settings.for_test(ID, Kind.PROCESSOR, signal.value)
    assert FACTORY.create is not None
    return FACTORY.create(settings, convert(raw), signal, sink), sink, settings


def dropped(settings: Settings, signal: Signal, reason: str = "sampled_out") -> float:
    value = settings.metrics.registry.get_sample_value(
        "flowglass_processor_dropped_items_total",
        {"component": ID, "pipeline": signal.value, "signal": signal.value, "reason": reason},
    )
    return value or 0.0


def one_span(tid: str, tracestate: str = "", attrs: dict[str, Any] | None = None) -> Batch:
    req: Any = new_request(Signal.TRACES)
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = bytes.fromhex(tid)
    span.span_id = b"\x01" * 8
    span.trace_state = tracestate
    if attrs:
        span.attributes.extend(key_values(attrs))
    return Batch(Signal.TRACES, req)


def spans_for(tids: list[bytes], per_resource: int = 10) -> Batch:
    req: Any = new_request(Signal.TRACES)
    for i in range(0, len(tids), per_resource):
        ss = req.resource_spans.add().scope_spans.add()
        for tid in tids[i:i + per_resource]:
            span = ss.spans.add()
            span.trace_id = tid
            span.span_id = b"\x02" * 8
    return Batch(Signal.TRACES, req)


def one_log(tid: str = "", attrs: dict[str, Any] | None = None) -> Batch:
    req: Any = new_request(Signal.LOGS)
    lr = req.resource_logs.add().scope_logs.add().log_records.add()
    lr.trace_id = bytes.fromhex(tid) if tid else b""
    lr.body.string_value = "hello"
    if attrs:
        lr.attributes.extend(key_values(attrs))
    return Batch(Signal.LOGS, req)


def kept_tracestate(sink: Sink) -> str | None:
    spans = spans_of(sink.batches)
    if not spans:
        return None
    assert len(spans) == 1
    return str(spans[0].trace_state)


def kept_log_attrs(sink: Sink) -> dict[str, Any] | None:
    records = [lr for b in sink.batches for rl in b.message.resource_logs  # type: ignore[union-attr]
               for sl in rl.scope_logs for lr in sl.log_records]
    if not records:
        return None
    assert len(records) == 1
    return attrs_dict(records[0].attributes)


# -- config ------------------------------------------------------------------------------


def test_defaults() -> None:
    c = convert({})
    assert c.sampling_percentage == 0
    assert c.hash_seed == 0
    assert c.mode == "hash_seed"
    assert c.fail_closed is True
    assert c.sampling_precision == 4
    assert c.attribute_source == "traceID"
    assert c.from_attribute == ""
    assert c.sampling_priority == ""


def test_registered_for_traces_and_logs() -> None:
    f = default_registry().get(Kind.PROCESSOR, "probabilistic_sampler")
    assert f is FACTORY
    assert set(FACTORY.signals) == {Signal.TRACES, Signal.LOGS}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"sampling_percentage": float("nan")}, "not a number"),
        ({"sampling_percentage": float("inf")}, "not a number"),
        ({"sampling_percentage": -1}, "must not be negative"),
        ({"sampling_percentage": 1e-16}, "below the smallest probability"),
        ({"sampling_percentage": 10, "sampling_precision": 0}, "between 1 and 14"),
        ({"sampling_percentage": 10, "sampling_precision": 15}, "between 1 and 14"),
        ({"sampling_percentage": 10, "attribute_source": "record"}, "needs from_attribute"),
        ({"sampling_percentage": 10, "mode": "random"}, "Invalid enum value"),
        ({"sampling_percentage": 10, "attribute_source": "span"}, "Invalid enum value"),
        ({"sampling_percentage": 10, "hash_seed": -1}, "Expected"),
        ({"sampling_percentage": 10, "hash_seed": 2**32}, "Expected"),
        ({"sampling_percentage": 10, "bogus": 1}, "unknown field"),
    ],
)
def test_invalid_config(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        convert(raw)


def test_percentage_above_100_is_allowed() -> None:
    assert convert({"sampling_percentage": 250}).sampling_percentage == 250


# -- traces: hash_seed -----------------------------------------------------------------


@pytest.mark.parametrize(("seed", "tid", "kept"), [
    (0, "4bf92f3577b34da6a3ce929d0e0e4736", True),   # bucket 141 < 1638
    (0, "0102030405060708090a0b0c0d0e0f10", False),  # bucket 6693
    (22, "5b8efff798038103d269b633813fc60c", False),  # bucket 3273 >= 1638
    (22, "00000000000000000000000000000001", False),
])
async def test_hash_seed_traces_at_10_percent(seed: int, tid: str, kept: bool) -> None:
    proc, sink, settings = make(Signal.TRACES, sampling_percentage=10, hash_seed=seed)
    await proc.consume(one_span(tid))
    ts = kept_tracestate(sink)
    assert (ts is not None) == kept
    if kept:
        rv = s.rvalue(s.hash_randomness(bytes.fromhex(tid), seed))
        assert ts == f"ot=rv:{rv};th:e668"  # (0x4000 - 1638) << 42 = 0x399a << 42
    assert dropped(settings, Signal.TRACES) == (0 if kept else 1)


async def test_hash_seed_leaves_consistent_tracestate_alone_and_fails_closed() -> None:
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"  # kept by the hash at 10%
    proc, sink, settings = make(Signal.TRACES, sampling_percentage=10)
    await proc.consume(one_span(tid, "ot=th:8"))
    assert kept_tracestate(sink) is None
    assert dropped(settings, Signal.TRACES, "sampling_error") == 1
    proc, sink, _ = make(Signal.TRACES, sampling_percentage=10, fail_closed=False)
    await proc.consume(one_span(tid, "ot=rv:00000000000001"))
    assert kept_tracestate(sink) == "ot=rv:00000000000001"


async def test_missing_trace_id_fail_closed_and_open() -> None:
    zero = "0" * 32
    proc, sink, settings = make(Signal.TRACES, sampling_percentage=100)
    await proc.consume(one_span(zero))
    assert sink.items == 0
    assert dropped(settings, Signal.TRACES, "sampling_error") == 1
    for mode in ("hash_seed", "proportional", "equalizing"):
        proc, sink, _ = make(Signal.TRACES, sampling_percentage=1, fail_closed=False, mode=mode)
        await proc.consume(one_span(zero))
        assert sink.items == 1, mode


async def test_malformed_tracestate_is_an_error() -> None:
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    proc, sink, _ = make(Signal.TRACES, sampling_percentage=100, mode="proportional")
    await proc.consume(one_span(tid, "ot=rv:zz"))
    assert sink.items == 0
    proc, sink, _ = make(Signal.TRACES, sampling_percentage=100, mode="proportional", fail_closed=False)
    await proc.consume(one_span(tid, "ot=rv:zz"))
    assert kept_tracestate(sink) == "ot=rv:zz"  # left as it arrived


# -- traces: proportional / equalizing (the Collector's own table) ------------------------

TID_80 = "fefefefefefefefefe80000000000000"  # randomness 0x80000000000000

# The Collector's own table (Test_tracesamplerprocessor_SamplingProbabilityTraceState),
# run with fail_closed false as its zero-value Config does unless a case sets it.
# (name, config, trace id, tracestate, expected tracestate per mode; absent = dropped)
IMPROBABLE = "ffffffffffffffffffffffffffffffff"
CONSISTENT_CASES = [
    ("100 percent", {"sampling_percentage": 100}, TID_80, "", {m: "ot=th:0" for m in ("equalizing", "proportional")}),
    ("50 percent sampled", {"sampling_percentage": 50}, TID_80, "", {m: "ot=th:8" for m in ("equalizing", "proportional")}),
    ("1 percent sampled", {"sampling_percentage": 1}, TID_80, "ot=rv:FD70A3D70A3D71",
     {m: "ot=rv:FD70A3D70A3D71;th:fd70a3d70a3d71" for m in ("equalizing", "proportional")}),
    ("1 percent not sampled with rvalue", {"sampling_percentage": 1}, TID_80, "ot=rv:FD70A3D70A3D70", {}),
    ("49 percent not sampled", {"sampling_percentage": 49}, TID_80, "", {}),
    ("1 percent sampled with rvalue", {"sampling_percentage": 1}, TID_80, "ot=rv:fd70B000000000",
     {m: "ot=rv:fd70B000000000;th:fd70a3d70a3d71" for m in ("equalizing", "proportional")}),
    ("1 percent sampled with tid", {"sampling_percentage": 1, "sampling_precision": 4},
     "a0a0a0a0a0a0a0a0a0fe000000000000", "", {m: "ot=th:fd70a" for m in ("equalizing", "proportional")}),
    ("incoming 50 percent with rvalue", {"sampling_percentage": 50}, TID_80,
     "ot=rv:90000000000000;th:80000000000000", {"equalizing": "ot=rv:90000000000000;th:8"}),
    ("incoming 50 percent at 25 percent not sampled", {"sampling_percentage": 25}, TID_80, "ot=th:8", {}),
    ("incoming 50 percent at 25 percent sampled", {"sampling_percentage": 25}, IMPROBABLE, "ot=th:8",
     {"equalizing": "ot=th:c", "proportional": "ot=th:e"}),
    ("equalizing vs proportional", {"sampling_percentage": 50}, TID_80, "ot=rv:c0000000000000;th:8",
     {"equalizing": "ot=rv:c0000000000000;th:8", "proportional": "ot=rv:c0000000000000;th:c"}),
    ("inconsistent arriving threshold", {"sampling_percentage": 100}, TID_80, "ot=rv:40000000000000;th:8",
     {m: "ot=rv:40000000000000;th:0" for m in ("equalizing", "proportional")}),
    ("inconsistent arriving threshold not sampled", {"sampling_percentage": 1, "fail_closed": True}, TID_80,
     "ot=rv:40000000000000;th:8", {}),
    ("40 percent precision 3 with rvalue", {"sampling_percentage": 40, "sampling_precision": 3}, TID_80,
     "ot=rv:a0000000000000", {m: "ot=rv:a0000000000000;th:99a" for m in ("equalizing", "proportional")}),
    ("arriving 50 percent sampled at 40 percent precision 6 with tid",
     {"sampling_percentage": 40, "sampling_precision": 6}, "a0a0a0a0a0a0a0a0a0d0000000000000", "ot=th:8",
     {"proportional": "ot=th:cccccd", "equalizing": "ot=th:99999a"}),
    ("arriving 50 percent sampled at 40 percent partly sampled",
     {"sampling_percentage": 40, "sampling_precision": 3}, "a0a0a0a0a0a0a0a0a0b0000000000000", "ot=th:8",
     {"equalizing": "ot=th:99a"}),
    ("arriving 50 percent sampled at 40 percent not sampled",
     {"sampling_percentage": 40, "sampling_precision": 3}, "a0a0a0a0a0a0a0a0a080000000000000", "ot=th:8", {}),
    ("200 percent equals 100 percent", {"sampling_percentage": 200}, TID_80, "", {m: "ot=th:0" for m in ("equalizing", "proportional")}),
    ("tiny probability rounding", {"sampling_percentage": 100 * 2**-14}, IMPROBABLE, "ot=th:fffc",
     {"equalizing": "ot=th:fffc", "proportional": "ot=th:fffffff"}),
    ("almost 100pct sampling", {"sampling_percentage": (1 - 8e-7) * 100, "sampling_precision": 10}, IMPROBABLE,
     "", {m: "ot=th:00000cccccccd" for m in ("equalizing", "proportional")}),
    ("probability underflow", {"sampling_percentage": 2**-4}, IMPROBABLE, "ot=th:fffffffffffff8",
     {"equalizing": "ot=th:fffffffffffff8"}),
    # Ours: other vendors' members follow the rewritten `ot` member.
    ("other vendors kept after ot", {"sampling_percentage": 50}, TID_80, "congo=t61rcWkgMzE",
     {m: "ot=th:8,congo=t61rcWkgMzE" for m in ("equalizing", "proportional")}),
]


@pytest.mark.parametrize("mode", ["equalizing", "proportional"])
@pytest.mark.parametrize(("name", "cfg", "tid", "ts", "expect"), CONSISTENT_CASES, ids=[c[0] for c in CONSISTENT_CASES])
async def test_consistent_modes(
    mode: str, name: str, cfg: dict[str, Any], tid: str, ts: str, expect: dict[str, str]
) -> None:
    # The Collector's test runs at full precision unless a case says otherwise (its zero
    # value, which its config validation refuses); 14 digits is the same thing.
    raw = {"sampling_precision": 14, "fail_closed": False, **cfg, "mode": mode}
    proc, sink, _ = make(Signal.TRACES, **raw)
    await proc.consume(one_span(tid, ts))
    assert kept_tracestate(sink) == expect.get(mode)


@pytest.mark.parametrize(("pct", "tv"), [(100, "0"), (75, "4"), (50, "8"), (25, "c"), (10, "e668"), (100 / 3, "aaac")])
async def test_hash_seed_writes_14_bit_threshold(pct: float, tv: str) -> None:
    # The Collector's Test_tracesamplerprocessor_HashSeedTraceState table.
    rng = random.Random(5)
    proc, sink, _ = make(Signal.TRACES, sampling_percentage=pct, hash_seed=1)
    await proc.consume(spans_for([rng.getrandbits(128).to_bytes(16, "big") for _ in range(50)]))
    kept = spans_of(sink.batches)
    assert kept
    for span in kept:
        state = s.TraceState.parse(span.trace_state)
        assert state.th == tv
        assert s.parse_rvalue(state.rv) >= s.parse_tvalue(state.th)


async def test_one_percent_with_trace_id_randomness_default_precision() -> None:
    proc, sink, _ = make(Signal.TRACES, sampling_percentage=1, mode="proportional")
    await proc.consume(one_span("a0a0a0a0a0a0a0a0a0fe000000000000"))
    assert kept_tracestate(sink) == "ot=th:fd70a"


async def test_proportional_chains_probabilities() -> None:
    # Two 50% proportional samplers in a row keep 25%, and say so: th:c.
    first, mid, _ = make(Signal.TRACES, sampling_percentage=50, mode="proportional")
    second, sink, _ = make(Signal.TRACES, sampling_percentage=50, mode="proportional")
    await first.consume(one_span("ffffffffffffffffffe0000000000000"))
    await second.consume(mid.batches[0])
    assert kept_tracestate(sink) == "ot=th:c"


# -- sampling.priority -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hash_seed", "proportional", "equalizing"])
@pytest.mark.parametrize(("value", "kept"), [(0, False), (0.0, False), ("0", False), (2, True), (1.5, True), ("7", True)])
async def test_span_priority_overrides(mode: str, value: Any, kept: bool) -> None:
    pct = 100 if not kept else 0.0001  # the opposite of what the priority says
    tid = "0102030405060708090a0b0c0d0e0f10"
    proc, sink, _ = make(Signal.TRACES, sampling_percentage=pct, mode=mode)
    await proc.consume(one_span(tid, attrs={"sampling.priority": value}))
    assert (sink.items == 1) == kept
    if kept:
        assert "th:0" in str(kept_tracestate(sink))


async def test_span_priority_ignored_when_negative_or_unparsable() -> None:
    for value in (-1, "high", True):
        proc, sink, _ = make(Signal.TRACES, sampling_percentage=100)
        await proc.consume(one_span("4bf92f3577b34da6a3ce929d0e0e4736", attrs={"sampling.priority": value}))
        assert sink.items == 1


async def test_priority_keeps_despite_fail_closed() -> None:
    proc, sink, _ = make(Signal.TRACES, sampling_percentage=50)
    await proc.consume(one_span("0" * 32, attrs={"sampling.priority": 1}))
    assert sink.items == 1


# -- batch handling ----------------------------------------------------------------------


async def test_drops_in_place_and_removes_empty_scopes_and_resources() -> None:
    keep = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")  # kept at 10%, seed 0
    drop = bytes.fromhex("0102030405060708090a0b0c0d0e0f10")
    batch = spans_for([drop, drop, keep, drop, drop, drop], per_resource=2)
    proc, sink, settings = make(Signal.TRACES, sampling_percentage=10)
    await proc.consume(batch)
    assert sink.batches[0] is batch
    assert len(batch.message.resource_spans) == 1  # type: ignore[union-attr]
    assert batch.items == 1
    assert dropped(settings, Signal.TRACES) == 5


async def test_all_dropped_is_not_forwarded() -> None:
    proc, sink, settings = make(Signal.TRACES, sampling_percentage=0)
    await proc.consume(make_traces(8, seed=3))
    assert sink.batches == []
    assert dropped(settings, Signal.TRACES) == 8


async def test_batch_with_nothing_to_change_keeps_its_bytes() -> None:
    # A span whose tracestate already says what the sampler would write is kept as is.
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    first, mid, _ = make(Signal.TRACES, sampling_percentage=50, mode="equalizing")
    await first.consume(one_span(tid))
    data = mid.batches[0].serialize()
    batch = Batch.parse(Signal.TRACES, data)
    second, sink, _ = make(Signal.TRACES, sampling_percentage=50, mode="equalizing")
    await second.consume(batch)
    assert sink.batches[0] is batch
    assert batch._data is data  # no mutable() call: the cached encoding is forwarded


# -- logs --------------------------------------------------------------------------------


async def test_logs_by_trace_id_agree_with_traces() -> None:
    rng = random.Random(7)
    tids = [rng.getrandbits(128).to_bytes(16, "big") for _ in range(400)]
    tproc, tsink, _ = make(Signal.TRACES, sampling_percentage=30, hash_seed=5)
    lproc, lsink, _ = make(Signal.LOGS, sampling_percentage=30, hash_seed=5)
    await tproc.consume(spans_for(tids))
    req: Any = new_request(Signal.LOGS)
    sl = req.resource_logs.add().scope_logs.add()
    for tid in tids:
        sl.log_records.add().trace_id = tid
    await lproc.consume(Batch(Signal.LOGS, req))
    kept_spans = {bytes(sp.trace_id) for sp in spans_of(tsink.batches)}
    kept_logs = {bytes(lr.trace_id) for b in lsink.batches for rl in b.message.resource_logs  # type: ignore[union-attr]
                 for sl in rl.scope_logs for lr in sl.log_records}
    assert kept_spans == kept_logs
    assert 80 < len(kept_logs) < 160


async def test_log_hash_seed_writes_randomness_and_threshold() -> None:
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    proc, sink, _ = make(Signal.LOGS, sampling_percentage=10)
    await proc.consume(one_log(tid))
    attrs = kept_log_attrs(sink)
    assert attrs == {"sampling.randomness": "fdc80d0b42008d", "sampling.threshold": "e668"}


async def test_logs_by_record_attribute() -> None:
    proc, sink, _ = make(Signal.LOGS, sampling_percentage=50, attribute_source="record", from_attribute="log.id",
                         hash_seed=3)
    ids = [f"log-{i}" for i in range(200)]
    req: Any = new_request(Signal.LOGS)
    sl = req.resource_logs.add().scope_logs.add()
    for i in ids:
        lr = sl.log_records.add()
        lr.trace_id = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")  # ignored with `record`
        lr.attributes.extend(key_values({"log.id": i}))
    await proc.consume(Batch(Signal.LOGS, req))
    kept = {attrs_dict(lr.attributes)["log.id"] for b in sink.batches for rl in b.message.resource_logs  # type: ignore[union-attr]
            for sl in rl.scope_logs for lr in sl.log_records}
    expected = {i for i in ids if s.seeded_hash(i.encode(), 3) & 0x3FFF < 8192}
    assert kept == expected
    assert 70 < len(kept) < 130


async def test_logs_attribute_used_when_trace_id_missing() -> None:
    proc, sink, _ = make(Signal.LOGS, sampling_percentage=50, from_attribute="log.id")
    keep = next(i for i in range(100) if s.seeded_hash(str(i).encode(), 0) & 0x3FFF < 8192)
    drop = next(i for i in range(100) if s.seeded_hash(str(i).encode(), 0) & 0x3FFF >= 8192)
    await proc.consume(one_log(attrs={"log.id": str(drop)}))
    assert sink.items == 0
    await proc.consume(one_log(attrs={"log.id": str(keep)}))
    assert sink.items == 1


async def test_logs_without_randomness_fail_closed_or_open() -> None:
    proc, sink, settings = make(Signal.LOGS, sampling_percentage=100)
    await proc.consume(one_log())
    assert sink.items == 0
    assert dropped(settings, Signal.LOGS, "sampling_error") == 1
    proc, sink, _ = make(Signal.LOGS, sampling_percentage=100, fail_closed=False)
    await proc.consume(one_log())
    assert sink.items == 1


async def test_logs_proportional_threshold_attribute() -> None:
    proc, sink, _ = make(Signal.LOGS, sampling_percentage=50, mode="proportional")
    await proc.consume(one_log(TID_80, attrs={"sampling.threshold": "8"}))
    assert sink.items == 0  # 25% now: R 0x80… < T 0xc…
    proc, sink, _ = make(Signal.LOGS, sampling_percentage=50, mode="proportional")
    await proc.consume(one_log("ffffffffffffffffffe0000000000000", attrs={"sampling.threshold": "8"}))
    assert kept_log_attrs(sink) == {"sampling.threshold": "c"}
    proc, sink, _ = make(Signal.LOGS, sampling_percentage=50, mode="equalizing")
    await proc.consume(one_log(attrs={"sampling.randomness": "90000000000000"}))
    assert kept_log_attrs(sink) == {"sampling.randomness": "90000000000000", "sampling.threshold": "8"}


async def test_logs_inconsistent_threshold_is_cleared() -> None:
    proc, sink, _ = make(Signal.LOGS, sampling_percentage=100, mode="equalizing", fail_closed=False)
    await proc.consume(one_log(attrs={"sampling.randomness": "40000000000000", "sampling.threshold": "8"}))
    assert kept_log_attrs(sink) == {"sampling.randomness": "40000000000000", "sampling.threshold": "0"}


@pytest.mark.parametrize(("priority", "kept"), [(100, True), (100.0, True), (250, True), (0, False), ("100", False)])
async def test_logs_sampling_priority_raises_probability(priority: Any, kept: bool) -> None:
    proc, sink, _ = make(Signal.LOGS, sampling_percentage=0.0001, sampling_priority="prio")
    await proc.consume(one_log("0102030405060708090a0b0c0d0e0f10", attrs={"prio": priority}))
    assert (sink.items == 1) == kept


async def test_logs_priority_cannot_lower_probability() -> None:
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"  # bucket 141: kept at 10%, not at 0.5%
    proc, sink, _ = make(Signal.LOGS, sampling_percentage=10, sampling_priority="prio")
    await proc.consume(one_log(tid, attrs={"prio": 0.5}))
    assert sink.items == 1


# -- statistics --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hash_seed", "proportional"])
@pytest.mark.parametrize("pct", [1, 10, 33.3, 50, 90])
async def test_kept_fraction_within_binomial_bounds(mode: str, pct: float) -> None:
    n = 100_000
    rng = random.Random(int(pct * 1000) + len(mode))
    tids = [rng.getrandbits(128).to_bytes(16, "big") for _ in range(n)]
    proc, sink, _ = make(Signal.TRACES, sampling_percentage=pct, mode=mode, hash_seed=11)
    await proc.consume(spans_for(tids, per_resource=1000))
    if mode == "hash_seed":
        p = s.scaled_sample_rate(pct) / 0x4000  # the hash keeps whole 1/16384 buckets
    else:
        p = s.threshold_probability(s.probability_to_threshold(pct / 100, 4) or 0)
    sigma = (n * p * (1 - p)) ** 0.5
    assert abs(sink.items - n * p) < 5 * sigma, (sink.items, n * p, sigma)
