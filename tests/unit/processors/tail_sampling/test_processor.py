"""The tail_sampling processor: buffering, decisions over a generated workload, late spans,
eviction, shutdown, record_policy and its metrics. Time is a fake clock; nothing sleeps."""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter, defaultdict
from typing import Any

import msgspec
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent.component import Kind, Settings
from agent.config.types import dec_hook
from agent.errors import PermanentError, RetryableError, ShuttingDownError
from agent.model import Batch, Signal
from agent.processors.tail_sampling import FACTORY, TailSamplingConfig
from agent.processors.tail_sampling.processor import DECIDE_CHUNK, SEND_ATTEMPTS, TailSamplingProcessor
from agent.testing import Sink, attrs_dict, key_values, make_traces, spans_of

MS = 1_000_000
ALWAYS = {"name": "all", "type": "always_sample"}
ERRORS = {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}}


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(**raw: Any) -> tuple[TailSamplingProcessor, Sink, Clock, Settings]:
    raw.setdefault("policies", [ALWAYS])
    config = msgspec.convert(raw, TailSamplingConfig, dec_hook=dec_hook)
    settings = Settings.for_test("tail_sampling", Kind.PROCESSOR, pipeline="traces")
    sink, clock = Sink(), Clock()
    return TailSamplingProcessor(settings, config, sink, clock=clock), sink, clock, settings


def metric(settings: Settings, name: str, **labels: str) -> float:
    value = settings.metrics.registry.get_sample_value(
        name, {"component": "tail_sampling", "pipeline": "traces", **labels})
    return value or 0.0


def request(spans: list[tuple[bytes, dict[str, Any]]], resource: dict[str, Any] | None = None,
            scope: str = "lib") -> Batch:
    """One resource and scope; each span is (trace id, fields: start/end ms, status, root, attrs)."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(key_values(resource or {"service.name": "svc"}))
    ss = rs.scope_spans.add()
    ss.scope.name = scope
    for i, (tid, f) in enumerate(spans):
        s = ss.spans.add()
        s.trace_id = tid
        s.span_id = random.Random(f"{tid.hex()}{i}{f}").randbytes(8)
        if not f.get("root", False):
            s.parent_span_id = b"\x01" * 8
        s.name = f.get("name", "op")
        s.start_time_unix_nano = f.get("start", 0) * MS + 10**18
        s.end_time_unix_nano = f.get("end", 1) * MS + 10**18
        s.status.code = f.get("status", 0)
        s.attributes.extend(key_values(f.get("attrs", {})))
    return Batch(Signal.TRACES, req)


def tid(i: int) -> bytes:
    return i.to_bytes(16, "big")


def kept_ids(sink: Sink) -> Counter[bytes]:
    return Counter(bytes(s.trace_id) for s in spans_of(sink.batches))


# -- the generated workload ------------------------------------------------------------------


def reference_fnv1a_64(data: bytes) -> int:
    h = 14695981039346656037
    for byte in data:
        h = ((h ^ byte) * 1099511628211) % 2**64
    return h


async def test_policy_mix_keeps_exactly_what_a_plain_reference_selection_keeps() -> None:
    """10k traces with known latency, errors and span counts, decided over simulated seconds:
    the kept set is errors ∪ slower than 500 ms ∪ 5% by hash ∪ the per-second span budget."""
    rng = random.Random(2024)
    traces_per_second, seconds, wait, budget = 500, 20, 5, 40
    proc, sink, clock, settings = make(decision_wait=f"{wait}s", policies=[
        ERRORS,
        {"name": "slow", "type": "latency", "latency": {"threshold_ms": 501}},
        {"name": "some", "type": "probabilistic", "probabilistic": {"sampling_percentage": 5}},
        {"name": "budget", "type": "rate_limiting", "rate_limiting": {"spans_per_second": budget}},
    ])
    truth: dict[bytes, dict[str, Any]] = {}
    arrivals: dict[int, list[bytes]] = defaultdict(list)
    for second in range(seconds):
        first_half: list[tuple[bytes, dict[str, Any]]] = []
        second_half: list[tuple[bytes, dict[str, Any]]] = []
        for _ in range(traces_per_second):
            t = rng.randbytes(16)
            n = rng.randint(1, 6)
            latency = rng.randint(501, 3000) if rng.random() < 0.05 else rng.randint(1, 500)
            error = rng.random() < 0.03
            truth[t] = {"spans": n, "latency": latency, "error": error}
            arrivals[second].append(t)
            for i in range(n):
                fields = {"root": i == 0, "start": 0 if i == 0 else rng.randint(0, latency - 1),
                          "end": latency if i == 0 else None,
                          "status": 2 if (error and i == n - 1) else 1,
                          "attrs": {"ml.model.name": rng.choice(["resnet", "bert"])}}
                if fields["end"] is None:
                    fields["end"] = rng.randint(fields["start"] + 1, latency)
                (first_half if i % 2 == 0 else second_half).append((t, fields))
        rng.shuffle(second_half)
        await proc.consume(request(first_half))
        await proc.consume(request(second_half))
        clock.now += 1
        await proc.decide_due()
    for _ in range(wait):
        clock.now += 1
        await proc.decide_due()
    assert metric(settings, "flowglass_processor_tail_sampling_buffered_traces") == 0

    threshold = (2**64 - 1) // 20  # 5%: differs from the Collector's rounding only far below 1 in 10^12
    expected: set[bytes] = set()
    probabilistic = 0
    for second in range(seconds):
        used = 0  # the rate limiter's window is the decision second, in arrival order
        for t in arrivals[second]:
            info = truth[t]
            by_hash = reference_fnv1a_64(b"default-hash-seed" + t) <= threshold
            probabilistic += by_hash
            by_budget = used + info["spans"] < budget
            if by_budget:
                used += info["spans"]
            if info["error"] or info["latency"] > 500 or by_hash or by_budget:
                expected.add(t)
    kept = kept_ids(sink)
    assert set(kept) == expected
    assert all(kept[t] == truth[t]["spans"] for t in kept)  # whole traces, every span
    n = len(truth)
    assert n >= 10_000
    sigma = math.sqrt(n * 0.05 * 0.95)
    assert abs(probabilistic - n * 0.05) < 5 * sigma
    assert metric(settings, "flowglass_processor_tail_sampling_traces_total", decision="sampled") == len(expected)
    assert metric(settings, "flowglass_processor_tail_sampling_traces_total", decision="not_sampled") == n - len(expected)
    assert metric(settings, "flowglass_processor_tail_sampling_policy_traces_total", policy="errors", sampled="true") == sum(
        1 for v in truth.values() if v["error"])
    assert metric(settings, "flowglass_processor_tail_sampling_decision_latency_seconds_count") == n
    assert metric(settings, "flowglass_processor_tail_sampling_evaluated_traces_total") == n
    passes = metric(settings, "flowglass_processor_tail_sampling_evaluation_seconds_count")
    assert 1 <= passes <= n
    assert metric(settings, "flowglass_processor_tail_sampling_evaluation_seconds_sum") > 0


# -- buffering and decisions -----------------------------------------------------------------


async def test_a_trace_is_decided_decision_wait_after_its_first_span() -> None:
    proc, sink, clock, settings = make(decision_wait="10s")
    await proc.consume(request([(tid(1), {})]))
    clock.now += 5
    await proc.consume(request([(tid(1), {}), (tid(2), {})]))
    clock.now += 4.9
    await proc.decide_due()
    assert sink.batches == []
    assert metric(settings, "flowglass_processor_tail_sampling_buffered_traces") == 2
    assert metric(settings, "flowglass_processor_tail_sampling_buffered_spans") == 3
    clock.now += 0.1
    await proc.decide_due()
    assert kept_ids(sink) == {tid(1): 2}
    clock.now += 5
    await proc.decide_due()
    assert kept_ids(sink) == {tid(1): 2, tid(2): 1}
    assert metric(settings, "flowglass_processor_tail_sampling_buffered_bytes") == 0


async def test_a_long_pass_lets_intake_run_between_chunks() -> None:
    proc, sink, clock, _ = make(decision_wait="1s", num_traces=5000)
    n = DECIDE_CHUNK * 2 + 10
    await proc.consume(request([(tid(i), {}) for i in range(n)]))
    clock.now += 1
    seen: list[int] = []
    real = sink.consume

    async def consume_and_feed(batch: Batch) -> None:
        await real(batch)
        seen.append(batch.items)
        if len(seen) == 1:  # intake between chunks: a span for a trace of a later chunk
            await proc.consume(request([(tid(n - 1), {})]))

    sink.consume = consume_and_feed  # type: ignore[method-assign]
    await proc.decide_due()
    assert seen == [DECIDE_CHUNK, DECIDE_CHUNK, 11]
    assert kept_ids(sink)[tid(n - 1)] == 2


async def test_kept_spans_are_grouped_per_resource_and_scope() -> None:
    proc, sink, clock, _ = make(decision_wait="1s")
    for _ in range(3):
        await proc.consume(request([(tid(1), {}), (tid(2), {})], resource={"service.name": "a"}, scope="s1"))
        await proc.consume(request([(tid(1), {})], resource={"service.name": "b"}, scope="s1"))
        await proc.consume(request([(tid(2), {})], resource={"service.name": "a"}, scope="s2"))
    clock.now += 1
    await proc.decide_due()
    assert len(sink.batches) == 1
    out = sink.batches[0].message
    layout = {(attrs_dict(rs.resource.attributes)["service.name"], ss.scope.name): len(ss.spans)
              for rs in out.resource_spans for ss in rs.scope_spans}
    assert layout == {("a", "s1"): 6, ("b", "s1"): 3, ("a", "s2"): 3}
    assert len(out.resource_spans) == 2
    assert sink.batches[0].items == 12


async def test_root_span_shortens_the_wait_when_configured() -> None:
    proc, sink, clock, _ = make(decision_wait="30s", decision_wait_after_root_received="2s")
    await proc.consume(request([(tid(1), {}), (tid(2), {})]))
    clock.now += 1
    await proc.consume(request([(tid(1), {"root": True})]))
    clock.now += 2
    await proc.decide_due()
    assert kept_ids(sink) == {tid(1): 2}
    clock.now += 27
    await proc.decide_due()
    assert kept_ids(sink) == {tid(1): 2, tid(2): 1}


async def test_many_parentless_spans_queue_one_early_deadline() -> None:
    proc, sink, clock, _ = make(decision_wait="30s", decision_wait_after_root_received="1s")
    await proc.consume(request([(tid(1), {"root": True}) for _ in range(50)]))
    assert len(proc._root_due) == 1
    clock.now += 1
    await proc.decide_due()
    assert kept_ids(sink) == {tid(1): 50}


async def test_the_input_batch_is_not_changed() -> None:
    proc, sink, clock, _ = make(decision_wait="1s", record_policy=True)
    batch = make_traces(20, traces=4, seed=3)
    before = batch.message.SerializeToString()
    await proc.consume(batch)
    clock.now += 1
    await proc.decide_due()
    assert batch.message.SerializeToString() == before
    assert proc.mutates_data is False
    assert sorted(s.SerializeToString() for s in spans_of([batch])) == sorted(
        s.SerializeToString() for s in spans_of(sink.batches))


async def test_sample_on_first_match_skips_later_policies() -> None:
    proc, sink, clock, settings = make(decision_wait="1s", sample_on_first_match=True,
                                       policies=[ALWAYS, ERRORS])
    await proc.consume(request([(tid(1), {"status": 2})]))
    clock.now += 1
    await proc.decide_due()
    assert kept_ids(sink) == {tid(1): 1}
    assert metric(settings, "flowglass_processor_tail_sampling_policy_traces_total", policy="errors", sampled="true") == 0


async def test_drop_policy_wins_over_sample() -> None:
    proc, sink, clock, settings = make(decision_wait="1s", policies=[ALWAYS, {
        "name": "no-health", "type": "drop", "drop": {"drop_sub_policy": [
            {"name": "h", "type": "string_attribute", "string_attribute": {"key": "url.path", "values": ["/health"]}}]}}])
    await proc.consume(request([(tid(1), {"attrs": {"url.path": "/health"}}), (tid(2), {"attrs": {"url.path": "/x"}})]))
    clock.now += 1
    await proc.decide_due()
    assert kept_ids(sink) == {tid(2): 1}
    assert metric(settings, "flowglass_processor_dropped_items_total", signal="traces", reason="not_sampled") == 1


# -- late spans ------------------------------------------------------------------------------


async def test_late_spans_follow_the_decision_still_in_the_buffer() -> None:
    proc, sink, clock, settings = make(decision_wait="1s", policies=[ERRORS])
    await proc.consume(request([(tid(1), {"status": 2}), (tid(2), {})]))
    clock.now += 1
    await proc.decide_due()
    assert kept_ids(sink) == {tid(1): 1}
    await proc.consume(request([(tid(1), {}), (tid(2), {"status": 2})]))  # late for both
    assert kept_ids(sink) == {tid(1): 2}  # sent on at once, without waiting
    clock.now += 5
    await proc.decide_due()
    assert kept_ids(sink) == {tid(1): 2}  # tid 2 stays dropped though its late span has an error
    late = "flowglass_processor_tail_sampling_late_spans_total"
    assert metric(settings, late, decision="sampled", source="buffer") == 1
    assert metric(settings, late, decision="not_sampled", source="buffer") == 1


async def test_late_spans_without_a_remembered_decision_start_a_new_window() -> None:
    proc, sink, clock, _ = make(decision_wait="1s", num_traces=2, policies=[ERRORS])
    await proc.consume(request([(tid(1), {})]))
    clock.now += 1
    await proc.decide_due()  # tid 1 not sampled
    await proc.consume(request([(tid(2), {}), (tid(3), {})]))  # pushes tid 1's decision out
    await proc.consume(request([(tid(1), {"status": 2})]))
    clock.now += 1
    await proc.decide_due()
    assert kept_ids(sink) == {tid(1): 1}  # decided afresh, on the late span alone


async def test_decision_cache_remembers_decisions_after_the_buffer_forgot() -> None:
    proc, sink, clock, settings = make(
        decision_wait="1s", num_traces=2, policies=[ERRORS],
        decision_cache={"sampled_cache_size": 10, "non_sampled_cache_size": 10})
    await proc.consume(request([(tid(1), {"status": 2}), (tid(2), {})]))
    clock.now += 1
    await proc.decide_due()
    await proc.consume(request([(tid(3), {}), (tid(4), {})]))  # both decisions leave the buffer
    await proc.consume(request([(tid(1), {}), (tid(2), {"status": 2})]))
    assert kept_ids(sink) == {tid(1): 2}
    clock.now += 1
    await proc.decide_due()
    assert kept_ids(sink) == {tid(1): 2}
    late = "flowglass_processor_tail_sampling_late_spans_total"
    assert metric(settings, late, decision="sampled", source="cache") == 1
    assert metric(settings, late, decision="not_sampled", source="cache") == 1


# -- bounds ----------------------------------------------------------------------------------


async def test_num_traces_evicts_the_oldest_waiting_trace() -> None:
    proc, sink, clock, settings = make(decision_wait="10s", num_traces=3)
    await proc.consume(request([(tid(i), {}) for i in range(1, 5)]))
    await proc.consume(request([(tid(1), {})]))  # evicted: comes back as a new trace, evicting tid 2
    clock.now += 10
    await proc.decide_due()
    assert kept_ids(sink) == {tid(3): 1, tid(4): 1, tid(1): 1}
    evicted = "flowglass_processor_tail_sampling_evicted_traces_total"
    assert metric(settings, evicted, reason="num_traces") == 2
    assert metric(settings, evicted, reason="max_buffered_bytes") == 0
    assert metric(settings, "flowglass_processor_dropped_items_total", signal="traces", reason="evicted") == 2


async def test_max_buffered_bytes_evicts_the_oldest_waiting_traces() -> None:
    one = request([(tid(0), {})])
    span_size = len(one.message.resource_spans[0].scope_spans[0].spans[0].SerializeToString()) + 2
    proc, sink, clock, settings = make(decision_wait="10s", max_buffered_bytes=span_size * 5)
    for i in range(1, 4):  # three traces of two spans
        await proc.consume(request([(tid(i), {"name": "a"}), (tid(i), {"name": "b"})]))
        clock.now += 1
    assert metric(settings, "flowglass_processor_tail_sampling_buffered_traces") == 2
    assert metric(settings, "flowglass_processor_tail_sampling_buffered_bytes") <= span_size * 5
    clock.now += 10
    await proc.decide_due()
    assert kept_ids(sink) == {tid(2): 2, tid(3): 2}
    assert metric(settings, "flowglass_processor_tail_sampling_evicted_traces_total", reason="max_buffered_bytes") == 1


async def test_one_huge_trace_cannot_hold_more_than_the_byte_bound() -> None:
    proc, _, _, settings = make(decision_wait="10s", max_buffered_bytes=2000)
    await proc.consume(request([(tid(1), {"attrs": {"blob": "x" * 5000}})]))
    assert metric(settings, "flowglass_processor_tail_sampling_buffered_bytes") == 0
    assert metric(settings, "flowglass_processor_tail_sampling_evicted_traces_total", reason="max_buffered_bytes") == 1


# -- shutdown and downstream errors ----------------------------------------------------------


async def test_shutdown_decides_and_flushes_waiting_traces() -> None:
    proc, sink, _, settings = make(decision_wait="30s", policies=[ERRORS])
    await proc.start()
    await proc.consume(request([(tid(1), {"status": 2}), (tid(2), {}), (tid(1), {})]))
    await proc.shutdown()
    assert kept_ids(sink) == {tid(1): 2}
    assert metric(settings, "flowglass_processor_tail_sampling_buffered_traces") == 0
    with pytest.raises(ShuttingDownError):
        await proc.consume(request([(tid(3), {})]))
    await proc.shutdown()  # idempotent
    assert len(sink.batches) == 1


async def test_the_ticker_decides_on_its_own() -> None:
    proc, sink, clock, _ = make(decision_wait="10ms")
    await proc.start()
    await proc.consume(request([(tid(1), {})]))
    clock.now += 1
    async with sink._received:
        await sink._received.wait_for(lambda: len(sink.batches) == 1)
    await proc.shutdown()
    assert kept_ids(sink) == {tid(1): 1}


async def test_a_failing_decision_pass_is_reported_and_the_ticker_goes_on() -> None:
    reports: list[BaseException | None] = []
    config = msgspec.convert({"decision_wait": "10ms", "policies": [ALWAYS]}, TailSamplingConfig, dec_hook=dec_hook)
    base = Settings.for_test("tail_sampling", Kind.PROCESSOR, pipeline="traces")
    settings = dataclasses.replace(base, report_status=lambda _c, exc: reports.append(exc))
    sink, clock = Sink(), Clock()
    proc = TailSamplingProcessor(settings, config, sink, clock=clock)
    real, calls = proc.decide_due, []

    async def flaky() -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise RuntimeError("boom")
        await real()

    proc.decide_due = flaky  # type: ignore[method-assign]
    await proc.start()
    await proc.consume(request([(tid(1), {})]))
    clock.now += 1
    async with sink._received:
        await sink._received.wait_for(lambda: len(sink.batches) == 1)
    await proc.shutdown()
    assert kept_ids(sink) == {tid(1): 1}
    assert len(reports) == 2 and isinstance(reports[0], RuntimeError) and reports[1] is None


async def test_a_retryable_refusal_is_tried_again_on_the_next_pass() -> None:
    proc, sink, clock, settings = make(decision_wait="1s")
    sink.fail_with, sink.fail_times = RetryableError("down"), 1
    await proc.consume(request([(tid(1), {}), (tid(2), {})]))
    clock.now += 1
    await proc.decide_due()
    assert sink.batches == []
    await proc.consume(request([(tid(3), {})]))
    clock.now += 1
    await proc.decide_due()
    assert kept_ids(sink) == {tid(1): 1, tid(2): 1, tid(3): 1}
    assert [b.items for b in sink.batches] == [2, 1]  # oldest first
    assert metric(settings, "flowglass_processor_dropped_items_total", signal="traces", reason="send_failed") == 0


async def test_downstream_errors_are_counted_not_lost_silently() -> None:
    proc, sink, clock, settings = make(decision_wait="1s")
    sink.fail_with = PermanentError("never")
    await proc.consume(request([(tid(1), {}), (tid(2), {})]))
    clock.now += 1
    await proc.decide_due()
    failed = "flowglass_processor_dropped_items_total"
    assert metric(settings, failed, signal="traces", reason="send_failed") == 2
    sink.fail_with = RetryableError("down for good")
    await proc.consume(request([(tid(3), {})]))
    for _ in range(SEND_ATTEMPTS):
        clock.now += 1
        await proc.decide_due()
    assert metric(settings, failed, signal="traces", reason="send_failed") == 3
    assert sink.batches == []


async def test_shutdown_tries_the_backlog_once_more() -> None:
    proc, sink, clock, _ = make(decision_wait="1s")
    sink.fail_with, sink.fail_times = RetryableError("down"), 1
    await proc.consume(request([(tid(1), {})]))
    clock.now += 1
    await proc.decide_due()
    await proc.consume(request([(tid(2), {})]))
    await proc.shutdown()
    assert kept_ids(sink) == {tid(1): 1, tid(2): 1}
    proc2, sink2, _, settings2 = make(decision_wait="1s")
    sink2.fail_with = RetryableError("down")  # still down at shutdown: counted
    await proc2.consume(request([(tid(1), {})]))
    await proc2.shutdown()
    assert metric(settings2, "flowglass_processor_dropped_items_total", signal="traces", reason="send_failed") == 1


# -- record_policy ---------------------------------------------------------------------------


async def test_record_policy_names_the_deciding_policy_on_kept_scopes() -> None:
    proc, sink, clock, _ = make(decision_wait="1s", record_policy=True, policies=[
        ERRORS,
        {"name": "budget", "type": "composite", "composite": {
            "max_total_spans_per_second": 100, "composite_sub_policy": [{"name": "any", "type": "always_sample"}],
            "rate_allocation": [{"policy": "any", "percent": 100}]}},
    ])
    await proc.consume(request([(tid(1), {"status": 2}), (tid(2), {})]))
    clock.now += 1
    await proc.decide_due()
    by_trace: dict[bytes, dict[str, Any]] = {}
    for rs in sink.batches[0].message.resource_spans:
        for ss in rs.scope_spans:
            assert ss.scope.name == "lib"
            for s in ss.spans:
                by_trace[bytes(s.trace_id)] = attrs_dict(ss.scope.attributes)
    # As in the Collector, a composite that sampled marks the trace even when an earlier policy decided.
    assert by_trace[tid(1)] == {"tailsampling.policy": "errors", "tailsampling.composite_policy": "any"}
    assert by_trace[tid(2)] == {"tailsampling.policy": "budget", "tailsampling.composite_policy": "any"}


async def test_without_record_policy_scopes_are_unchanged() -> None:
    proc, sink, clock, _ = make(decision_wait="1s")
    await proc.consume(request([(tid(1), {})]))
    clock.now += 1
    await proc.decide_due()
    assert list(sink.batches[0].message.resource_spans[0].scope_spans[0].scope.attributes) == []


def test_the_factory_builds_a_traces_processor() -> None:
    assert FACTORY.type == "tail_sampling"
    assert set(FACTORY.signals) == {Signal.TRACES}
