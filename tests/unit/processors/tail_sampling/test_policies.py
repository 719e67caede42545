"""Each tail-sampling policy on hand-built traces, the decision rule, and the Collector's hash."""

from __future__ import annotations

import math
import random
from typing import Any

import msgspec
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent.config.types import dec_hook
from agent.processors.tail_sampling import PolicyConfig
from agent.processors.tail_sampling import policies as pol
from agent.processors.tail_sampling.policies import (
    DROPPED,
    INVERT_NOT_SAMPLED,
    INVERT_SAMPLED,
    NOT_SAMPLED,
    SAMPLED,
    TraceData,
)
from agent.testing import key_values

TID = bytes(range(16))
MS = 1_000_000


def trace(*spans: dict[str, Any], resource: dict[str, Any] | None = None, trace_id: bytes = TID) -> ExportTraceServiceRequest:
    """One resource, one scope, a span per dict (keys: attrs, start, end, status, flags, state)."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(key_values(resource or {"service.name": "svc"}))
    ss = rs.scope_spans.add()
    for i, s in enumerate(spans):
        span = ss.spans.add()
        span.trace_id = trace_id
        span.span_id = bytes([i + 1] * 8)
        span.name = "op"
        span.start_time_unix_nano = s.get("start", 1000 * MS)
        span.end_time_unix_nano = s.get("end", span.start_time_unix_nano + 10 * MS)
        span.attributes.extend(key_values(s.get("attrs", {})))
        span.status.code = s.get("status", 0)
        span.flags = s.get("flags", 0)
        span.trace_state = s.get("state", "")
    return req


def data(req: ExportTraceServiceRequest, now: float = 0.0) -> TraceData:
    encoded = req.SerializeToString()
    n = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
    return TraceData(TID, n, len(encoded), now, lambda: encoded)


def policy(raw: dict[str, Any]) -> pol.Policy:
    return pol.build(msgspec.convert({"name": "p", **raw}, PolicyConfig, dec_hook=dec_hook))


def decide(raw: dict[str, Any], req: ExportTraceServiceRequest, now: float = 0.0) -> pol.Decision:
    return policy(raw).evaluate(data(req, now))


# -- decision rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(("decisions", "expected"), [
    ([SAMPLED, NOT_SAMPLED], (True, 0)),
    ([NOT_SAMPLED, SAMPLED], (True, 1)),
    ([NOT_SAMPLED, NOT_SAMPLED], (False, -1)),
    ([SAMPLED, DROPPED], (False, -1)),
    ([SAMPLED, INVERT_NOT_SAMPLED], (False, -1)),
    ([INVERT_SAMPLED, NOT_SAMPLED], (False, -1)),
    ([INVERT_SAMPLED], (True, 0)),
    ([NOT_SAMPLED, INVERT_SAMPLED, SAMPLED], (True, 2)),
    ([], (False, -1)),
])
def test_final_decision_follows_the_collectors_rule(decisions: list[pol.Decision], expected: tuple[bool, int]) -> None:
    assert pol.final_decision(decisions) == expected


# -- probabilistic ---------------------------------------------------------------------------


def reference_fnv1a_64(data: bytes) -> int:
    h = 14695981039346656037
    for byte in data:
        h ^= byte
        h = (h * 1099511628211) % 2**64
    return h


def test_fnv1a_64_matches_the_published_test_vectors() -> None:
    assert pol.fnv1a_64(b"") == 0xCBF29CE484222325
    assert pol.fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert pol.fnv1a_64(b"foobar") == 0x85944171F73967E8


def test_threshold_arithmetic() -> None:
    assert pol.probabilistic_threshold(0) == 0
    assert pol.probabilistic_threshold(100) == 2**64 - 1
    # (2^64 - 1) * 0.5 = 2^63 - 0.5 fits in 64 significant bits; truncation gives 2^63 - 1.
    assert pol.probabilistic_threshold(50) == 2**63 - 1
    # 25%: (2^64 - 1) / 4 = 2^62 - 0.25, exact at 64 bits, truncated.
    assert pol.probabilistic_threshold(25) == 2**62 - 1
    # 10%: 0.1 as a double times 2^64 - 1, rounded to 64 bits, truncated: within 2^11 of the ideal.
    assert abs(pol.probabilistic_threshold(10) - (2**64 - 1) // 10) < 2**11


@pytest.mark.parametrize("salt", ["", "tier-2"])
def test_probabilistic_decides_by_the_salted_hash_of_the_trace_id(salt: str) -> None:
    threshold = pol.probabilistic_threshold(30)
    p = pol.Probabilistic("p", salt, 30)
    salt_bytes = (salt or "default-hash-seed").encode()
    for i in range(300):
        tid = i.to_bytes(4, "big") * 4
        expected = reference_fnv1a_64(salt_bytes + tid) <= threshold
        td = TraceData(tid, 1, 10, 0.0, lambda: b"")
        assert (p.evaluate(td) is SAMPLED) == expected


def test_probabilistic_hand_computed_ids() -> None:
    # Hashes computed by hand with FNV-1a over "default-hash-seed" + the 16 id bytes.
    zero, ones = bytes(16), bytes([0xFF] * 16)
    h_zero = reference_fnv1a_64(b"default-hash-seed" + zero)
    h_ones = reference_fnv1a_64(b"default-hash-seed" + ones)
    for pct in (1, 10, 50, 99):
        t = pol.probabilistic_threshold(pct)
        p = pol.Probabilistic("p", "", pct)
        assert (p.evaluate(TraceData(zero, 1, 1, 0, lambda: b"")) is SAMPLED) == (h_zero <= t)
        assert (p.evaluate(TraceData(ones, 1, 1, 0, lambda: b"")) is SAMPLED) == (h_ones <= t)
    assert pol.Probabilistic("p", "", 0).evaluate(TraceData(zero, 1, 1, 0, lambda: b"")) is NOT_SAMPLED
    assert pol.Probabilistic("p", "", 100).evaluate(TraceData(zero, 1, 1, 0, lambda: b"")) is SAMPLED


# -- attribute policies ----------------------------------------------------------------------


def test_string_attribute_exact_on_span_and_resource() -> None:
    raw = {"type": "string_attribute", "string_attribute": {"key": "tier", "values": ["gold", "silver"]}}
    assert decide(raw, trace({"attrs": {"tier": "gold"}})) is SAMPLED
    assert decide(raw, trace({"attrs": {"tier": "bronze"}})) is NOT_SAMPLED
    assert decide(raw, trace({}, resource={"tier": "silver"})) is SAMPLED
    assert decide(raw, trace({"attrs": {"tier": 1}})) is NOT_SAMPLED
    assert decide(raw, trace({"attrs": {"tier": "goldish"}})) is NOT_SAMPLED


def test_string_attribute_regex_searches_and_caches() -> None:
    raw = {"type": "string_attribute", "string_attribute": {
        "key": "url.path", "values": ["^/v1/name/.+", "health"], "enabled_regex_matching": True, "cache_max_size": 2}}
    p = policy(raw)
    assert p.evaluate(data(trace({"attrs": {"url.path": "/v1/name/42"}}))) is SAMPLED
    assert p.evaluate(data(trace({"attrs": {"url.path": "/v1/name/"}}))) is NOT_SAMPLED
    assert p.evaluate(data(trace({"attrs": {"url.path": "/healthz"}}))) is SAMPLED
    for path in ("/a", "/b", "/c", "/v1/name/42"):  # past the cache size, answers stay right
        p.evaluate(data(trace({"attrs": {"url.path": path}})))
    assert p.evaluate(data(trace({"attrs": {"url.path": "/v1/name/42"}}))) is SAMPLED
    assert p.evaluate(data(trace({"attrs": {"url.path": "/c"}}))) is NOT_SAMPLED


def test_string_attribute_invert_match() -> None:
    raw = {"type": "string_attribute", "string_attribute": {"key": "svc", "values": ["acme"], "invert_match": True}}
    assert decide(raw, trace({"attrs": {"svc": "other"}})) is INVERT_SAMPLED
    assert decide(raw, trace({})) is INVERT_SAMPLED  # key absent: sampled, as the Collector does
    assert decide(raw, trace({"attrs": {"svc": "other"}}, {"attrs": {"svc": "acme"}})) is INVERT_NOT_SAMPLED
    assert decide(raw, trace({}, resource={"svc": "acme"})) is INVERT_NOT_SAMPLED
    regex = {"type": "string_attribute", "string_attribute": {
        "key": "svc", "values": ["^ac"], "enabled_regex_matching": True, "invert_match": True}}
    assert decide(regex, trace({"attrs": {"svc": "acme"}})) is INVERT_NOT_SAMPLED
    assert decide(regex, trace({"attrs": {"svc": "xacme"}})) is INVERT_SAMPLED


def test_numeric_attribute_range_bounds_and_invert() -> None:
    raw = {"type": "numeric_attribute", "numeric_attribute": {"key": "code", "min_value": 400, "max_value": 599}}
    assert decide(raw, trace({"attrs": {"code": 400}})) is SAMPLED
    assert decide(raw, trace({"attrs": {"code": 599}})) is SAMPLED
    assert decide(raw, trace({"attrs": {"code": 600}})) is NOT_SAMPLED
    assert decide(raw, trace({"attrs": {"code": "500"}})) is NOT_SAMPLED
    assert decide(raw, trace({}, resource={"code": 500})) is SAMPLED
    only_min = {"type": "numeric_attribute", "numeric_attribute": {"key": "code", "min_value": 400}}
    assert decide(only_min, trace({"attrs": {"code": 10**12}})) is SAMPLED
    only_max = {"type": "numeric_attribute", "numeric_attribute": {"key": "code", "max_value": 10}}
    assert decide(only_max, trace({"attrs": {"code": -5}})) is SAMPLED
    inv = {"type": "numeric_attribute", "numeric_attribute": {
        "key": "code", "min_value": 200, "max_value": 299, "invert_match": True}}
    assert decide(inv, trace({"attrs": {"code": 500}})) is INVERT_SAMPLED
    assert decide(inv, trace({"attrs": {"code": 500}}, {"attrs": {"code": 204}})) is INVERT_NOT_SAMPLED


def test_boolean_attribute_and_invert() -> None:
    raw = {"type": "boolean_attribute", "boolean_attribute": {"key": "force", "value": True}}
    assert decide(raw, trace({"attrs": {"force": True}})) is SAMPLED
    assert decide(raw, trace({"attrs": {"force": False}})) is NOT_SAMPLED
    assert decide(raw, trace({"attrs": {"force": 1}})) is NOT_SAMPLED
    inv = {"type": "boolean_attribute", "boolean_attribute": {"key": "skip", "value": True, "invert_match": True}}
    assert decide(inv, trace({"attrs": {"skip": False}})) is INVERT_SAMPLED
    assert decide(inv, trace({"attrs": {"skip": True}})) is INVERT_NOT_SAMPLED


# -- span-content policies -------------------------------------------------------------------


def test_latency_threshold_is_inclusive_over_the_whole_trace() -> None:
    raw = {"type": "latency", "latency": {"threshold_ms": 500}}
    assert decide(raw, trace({"start": 0 + MS, "end": 500 * MS + MS})) is SAMPLED
    assert decide(raw, trace({"start": MS, "end": 500 * MS})) is NOT_SAMPLED
    # Two short spans far apart make a long trace.
    assert decide(raw, trace({"start": MS, "end": 2 * MS}, {"start": 600 * MS, "end": 601 * MS})) is SAMPLED


def test_latency_with_an_upper_bound() -> None:
    raw = {"type": "latency", "latency": {"threshold_ms": 100, "upper_threshold_ms": 200}}
    assert decide(raw, trace({"start": MS, "end": 101 * MS})) is NOT_SAMPLED  # exactly 100 ms: not above
    assert decide(raw, trace({"start": MS, "end": 102 * MS})) is SAMPLED
    assert decide(raw, trace({"start": MS, "end": 201 * MS})) is SAMPLED
    assert decide(raw, trace({"start": MS, "end": 202 * MS})) is NOT_SAMPLED


def test_status_code() -> None:
    raw = {"type": "status_code", "status_code": {"status_codes": ["ERROR"]}}
    assert decide(raw, trace({"status": 1}, {"status": 2})) is SAMPLED
    assert decide(raw, trace({"status": 1}, {"status": 0})) is NOT_SAMPLED
    unset = {"type": "status_code", "status_code": {"status_codes": ["UNSET", "OK"]}}
    assert decide(unset, trace({"status": 0})) is SAMPLED
    assert decide(unset, trace({"status": 2})) is NOT_SAMPLED


def test_span_count_bounds_are_inclusive() -> None:
    raw = {"type": "span_count", "span_count": {"min_spans": 2, "max_spans": 3}}
    assert decide(raw, trace({})) is NOT_SAMPLED
    assert decide(raw, trace({}, {})) is SAMPLED
    assert decide(raw, trace({}, {}, {})) is SAMPLED
    assert decide(raw, trace({}, {}, {}, {})) is NOT_SAMPLED
    assert decide({"type": "span_count", "span_count": {"min_spans": 2}}, trace(*[{}] * 50)) is SAMPLED


def test_trace_state_and_trace_flags() -> None:
    raw = {"type": "trace_state", "trace_state": {"key": "team", "values": ["ml", "data"]}}
    assert decide(raw, trace({"state": "vendor=x,team=ml"})) is SAMPLED
    assert decide(raw, trace({"state": "team=web"})) is NOT_SAMPLED
    assert decide(raw, trace({})) is NOT_SAMPLED
    flags = {"type": "trace_flags"}
    assert decide(flags, trace({"flags": 0x301})) is SAMPLED
    assert decide(flags, trace({"flags": 0x300})) is NOT_SAMPLED


# -- rate policies ---------------------------------------------------------------------------


def test_rate_limiting_counts_spans_per_clock_second() -> None:
    p = policy({"type": "rate_limiting", "rate_limiting": {"spans_per_second": 10}})
    four = trace({}, {}, {}, {})
    assert [p.evaluate(data(four, 5.1)) for _ in range(3)] == [SAMPLED, SAMPLED, NOT_SAMPLED]
    assert p.evaluate(data(four, 6.0)) is SAMPLED  # a new second, a new budget


def test_bytes_limiting_token_bucket() -> None:
    one = trace({})
    size = len(one.SerializeToString())
    p = policy({"type": "bytes_limiting", "bytes_limiting": {"bytes_per_second": size, "burst_capacity": 2 * size}})
    assert [p.evaluate(data(one, 0.0)) for _ in range(3)] == [SAMPLED, SAMPLED, NOT_SAMPLED]
    assert p.evaluate(data(one, 0.5)) is NOT_SAMPLED  # half a trace's worth refilled
    assert p.evaluate(data(one, 1.0)) is SAMPLED
    default_burst = policy({"type": "bytes_limiting", "bytes_limiting": {"bytes_per_second": size}})
    assert [default_burst.evaluate(data(one, 0.0)) for _ in range(3)] == [SAMPLED, SAMPLED, NOT_SAMPLED]


# -- combining policies ----------------------------------------------------------------------

ERR = {"name": "err", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}}
GOLD = {"name": "gold", "type": "string_attribute", "string_attribute": {"key": "tier", "values": ["gold"]}}
NOT_ACME = {"name": "na", "type": "string_attribute", "string_attribute": {"key": "svc", "values": ["acme"], "invert_match": True}}


def test_and_needs_every_sub_policy() -> None:
    raw = {"type": "and", "and": {"and_sub_policy": [ERR, GOLD]}}
    assert decide(raw, trace({"status": 2, "attrs": {"tier": "gold"}})) is SAMPLED
    assert decide(raw, trace({"status": 2, "attrs": {"tier": "lead"}})) is NOT_SAMPLED
    inv = {"type": "and", "and": {"and_sub_policy": [NOT_ACME, ERR]}}
    assert decide(inv, trace({"status": 2, "attrs": {"svc": "x"}})) is SAMPLED
    assert decide(inv, trace({"status": 2, "attrs": {"svc": "acme"}})) is NOT_SAMPLED


def test_drop_drops_when_every_sub_policy_matches() -> None:
    raw = {"type": "drop", "drop": {"drop_sub_policy": [
        {"name": "h", "type": "string_attribute", "string_attribute": {
            "key": "url.path", "values": ["/health"], "enabled_regex_matching": True}}]}}
    assert decide(raw, trace({"attrs": {"url.path": "/healthz"}})) is DROPPED
    assert decide(raw, trace({"attrs": {"url.path": "/predict"}})) is NOT_SAMPLED


def test_composite_allocates_spans_per_second_in_policy_order() -> None:
    p = policy({"type": "composite", "composite": {
        "max_total_spans_per_second": 10,
        "policy_order": ["err", "rest"],
        "composite_sub_policy": [{"name": "rest", "type": "always_sample"}, ERR],
        "rate_allocation": [{"policy": "err", "percent": 50}, {"policy": "rest", "percent": 50}],
    }})
    err2 = trace({"status": 2}, {"status": 2})
    ok2 = trace({}, {})
    td = data(err2, 1.0)
    assert p.evaluate(td) is SAMPLED and td.composite_policy == "err"
    assert p.evaluate(data(err2, 1.0)) is SAMPLED
    # err's 5 spans/s are spent (4 used, 2 more would be 6): the composite says no.
    assert p.evaluate(data(err2, 1.0)) is NOT_SAMPLED
    td = data(ok2, 1.0)
    assert p.evaluate(td) is SAMPLED and td.composite_policy == "rest"
    assert p.evaluate(data(ok2, 1.0)) is SAMPLED
    assert p.evaluate(data(ok2, 1.0)) is NOT_SAMPLED
    assert p.evaluate(data(err2, 2.0)) is SAMPLED  # next second


def test_composite_sub_policy_without_allocation_samples_nothing() -> None:
    p = policy({"type": "composite", "composite": {
        "max_total_spans_per_second": 100, "composite_sub_policy": [{"name": "a", "type": "always_sample"}]}})
    assert p.evaluate(data(trace({}), 1.0)) is NOT_SAMPLED
    zero = policy({"type": "composite", "composite": {
        "max_total_spans_per_second": 100, "composite_sub_policy": [{"name": "a", "type": "always_sample"}],
        "rate_allocation": [{"policy": "a", "percent": 0}]}})  # 0 = an equal share, as the Collector
    assert zero.evaluate(data(trace({}), 1.0)) is SAMPLED


@pytest.mark.parametrize(("pct", "salt"), [(25, ""), (33, ""), (33, "test-salt"), (1, "")])
def test_probabilistic_fraction_over_100k_random_ids_is_within_binomial_bounds(pct: float, salt: str) -> None:
    rng = random.Random(pct * 1000 + len(salt))
    p = pol.Probabilistic("p", salt, pct)
    n = 100_000
    kept = sum(p.evaluate(TraceData(rng.randbytes(16), 1, 1, 0.0, lambda: b"")) is SAMPLED for _ in range(n))
    expected = n * pct / 100
    sigma = math.sqrt(n * (pct / 100) * (1 - pct / 100))
    assert abs(kept - expected) < 5 * sigma
