"""Tail-sampling policies: each looks at one whole trace and answers with a `Decision`.

The decisions and how they combine are the Collector's (`tailsamplingprocessor`); see
`final_decision`. Policies read the trace through `TraceData`, whose OTLP request is parsed
only when a policy needs span content (span count, bytes and the trace id come free).

Where Flowglass differs, on purpose:
- attribute policies compare values of their own type only (a string policy ignores an int
  attribute of the same key; the Collector compares its zero value);
- `latency` measures the whole trace (earliest start to latest end) before comparing;
- `bytes_limiting` counts the trace's encoded protobuf bytes (the Collector estimates them).
"""

from __future__ import annotations

import enum
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from typing import Any, ClassVar, Protocol

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent.processors.tail_sampling import (
    CompositeConfig,
    CompositeSubPolicy,
    PolicyConfig,
    _SharedPolicy,
)

AnyValue = Any


class Decision(enum.IntEnum):
    SAMPLED = 1
    NOT_SAMPLED = 2
    INVERT_SAMPLED = 3
    INVERT_NOT_SAMPLED = 4
    DROPPED = 5


SAMPLED = Decision.SAMPLED
NOT_SAMPLED = Decision.NOT_SAMPLED
INVERT_SAMPLED = Decision.INVERT_SAMPLED
INVERT_NOT_SAMPLED = Decision.INVERT_NOT_SAMPLED
DROPPED = Decision.DROPPED
_YES = (SAMPLED, INVERT_SAMPLED)
_NO = (NOT_SAMPLED, INVERT_NOT_SAMPLED)


class TraceData:
    """One trace as the policies see it. `request` is built and parsed on first use."""

    __slots__ = ("_build", "_request", "composite_policy", "nbytes", "now", "span_count", "trace_id")

    def __init__(
        self, trace_id: bytes, span_count: int, nbytes: int, now: float, build: Callable[[], bytes]
    ) -> None:
        self.trace_id = trace_id
        self.span_count = span_count
        self.nbytes = nbytes
        self.now = now
        self.composite_policy = ""
        self._build = build
        self._request: ExportTraceServiceRequest | None = None

    @property
    def request(self) -> ExportTraceServiceRequest:
        if self._request is None:
            req = ExportTraceServiceRequest()
            req.ParseFromString(self._build())
            self._request = req
        return self._request

    def spans(self) -> Iterator[Any]:
        for rs in self.request.resource_spans:
            for ss in rs.scope_spans:
                yield from ss.spans


class Policy(Protocol):
    name: str

    def evaluate(self, td: TraceData) -> Decision: ...


def final_decision(decisions: Sequence[Decision]) -> tuple[bool, int]:
    """(sampled, index of the deciding policy or -1), by the Collector's rule."""
    if DROPPED in decisions or INVERT_NOT_SAMPLED in decisions:
        return False, -1
    if SAMPLED in decisions:
        return True, decisions.index(SAMPLED)
    if INVERT_SAMPLED in decisions and NOT_SAMPLED not in decisions:
        return True, decisions.index(INVERT_SAMPLED)
    return False, -1


# -- the probabilistic policy's hash -------------------------------------------------------

_FNV64_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1
DEFAULT_HASH_SALT = "default-hash-seed"


def fnv1a_64(data: bytes, h: int = _FNV64_OFFSET) -> int:
    for b in data:
        h = ((h ^ b) * _FNV64_PRIME) & _MASK64
    return h


def probabilistic_threshold(percentage: float) -> int:
    """uint64(big.Float(MaxUint64) × ratio): the product rounded to 64 significant bits
    (nearest, ties to even, as Go's big.Float at precision 64), then truncated."""
    ratio = percentage / 100.0
    exact = Fraction(_MASK64) * Fraction(ratio)
    if exact <= 0:
        return 0
    exp = exact.numerator.bit_length() - exact.denominator.bit_length()
    if Fraction(2) ** exp > exact:
        exp -= 1
    scale = Fraction(2) ** (63 - exp)
    mantissa = round(exact * scale)  # Fraction rounds half to even
    return min(int(Fraction(mantissa) / scale), _MASK64)


class Probabilistic:
    def __init__(self, name: str, salt: str, percentage: float) -> None:
        self.name = name
        self._salt_hash = fnv1a_64((salt or DEFAULT_HASH_SALT).encode())
        self._threshold = probabilistic_threshold(percentage)
        self._never = percentage <= 0

    def evaluate(self, td: TraceData) -> Decision:
        if self._never:
            return NOT_SAMPLED
        return SAMPLED if fnv1a_64(td.trace_id, self._salt_hash) <= self._threshold else NOT_SAMPLED


# -- span-content policies ----------------------------------------------------------------


def _find(kvs: Any, key: str) -> AnyValue | None:
    for kv in kvs:
        if kv.key == key:
            return kv.value
    return None


def _any_attribute(td: TraceData, key: str, match: Callable[[AnyValue], bool]) -> bool:
    """Whether a resource or span attribute `key` of the trace has a value that matches."""
    for rs in td.request.resource_spans:
        v = _find(rs.resource.attributes, key)
        if v is not None and match(v):
            return True
        for ss in rs.scope_spans:
            for span in ss.spans:
                v = _find(span.attributes, key)
                if v is not None and match(v):
                    return True
    return False


class _AttributePolicy:
    name: str
    _key: str
    _invert: bool

    def _matches(self, v: AnyValue) -> bool:
        raise NotImplementedError

    def evaluate(self, td: TraceData) -> Decision:
        found = _any_attribute(td, self._key, self._matches)
        if self._invert:
            return INVERT_NOT_SAMPLED if found else INVERT_SAMPLED
        return SAMPLED if found else NOT_SAMPLED


class NumericAttribute(_AttributePolicy):
    def __init__(self, name: str, key: str, low: int, high: int, invert: bool) -> None:
        self.name, self._key, self._low, self._high, self._invert = name, key, low, high, invert

    def _matches(self, v: AnyValue) -> bool:
        return bool(v.WhichOneof("value") == "int_value" and self._low <= v.int_value <= self._high)


class BooleanAttribute(_AttributePolicy):
    def __init__(self, name: str, key: str, value: bool, invert: bool) -> None:
        self.name, self._key, self._value, self._invert = name, key, value, invert

    def _matches(self, v: AnyValue) -> bool:
        return bool(v.WhichOneof("value") == "bool_value" and v.bool_value == self._value)


class StringAttribute(_AttributePolicy):
    def __init__(
        self, name: str, key: str, values: list[str], regex: bool, cache_size: int, invert: bool
    ) -> None:
        self.name, self._key, self._invert = name, key, invert
        self._values = frozenset(values)
        self._patterns = [re.compile(v) for v in values] if regex else None
        self._cache: OrderedDict[str, bool] = OrderedDict()
        self._cache_size = cache_size

    def _matches(self, v: AnyValue) -> bool:
        if v.WhichOneof("value") != "string_value":
            return False
        s: str = v.string_value
        if self._patterns is None:
            return s in self._values
        hit = self._cache.get(s)
        if hit is not None:
            self._cache.move_to_end(s)
            return hit
        result = any(p.search(s) for p in self._patterns)
        if self._cache_size:
            self._cache[s] = result
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result


def _any_span(td: TraceData, check: Callable[[Any], bool]) -> Decision:
    for span in td.spans():
        if check(span):
            return SAMPLED
    return NOT_SAMPLED


class Latency:
    def __init__(self, name: str, threshold_ms: int, upper_ms: int) -> None:
        self.name, self._low, self._high = name, threshold_ms, upper_ms

    def evaluate(self, td: TraceData) -> Decision:
        start = end = 0
        for span in td.spans():
            s, e = span.start_time_unix_nano, span.end_time_unix_nano
            if start == 0 or s < start:
                start = s
            if end == 0 or e > end:
                end = e
        ms = max(0, end - start) // 1_000_000
        if self._high == 0:
            return SAMPLED if ms >= self._low else NOT_SAMPLED
        return SAMPLED if self._low < ms <= self._high else NOT_SAMPLED


_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}


class StatusCode:
    def __init__(self, name: str, codes: list[str]) -> None:
        self.name = name
        self._codes = frozenset(_STATUS[c] for c in codes)

    def evaluate(self, td: TraceData) -> Decision:
        codes = self._codes
        return _any_span(td, lambda span: span.status.code in codes)


class TraceFlags:
    def __init__(self, name: str) -> None:
        self.name = name

    def evaluate(self, td: TraceData) -> Decision:
        return _any_span(td, lambda span: bool(span.flags & 0x01))


class TraceStatePolicy:
    def __init__(self, name: str, key: str, values: list[str]) -> None:
        self.name, self._key, self._values = name, key, frozenset(values)

    def _check(self, span: Any) -> bool:
        raw: str = span.trace_state
        if not raw:
            return False
        for member in raw.split(","):
            k, sep, v = member.strip(" \t").partition("=")
            if sep and k == self._key and v in self._values:
                return True
        return False

    def evaluate(self, td: TraceData) -> Decision:
        return _any_span(td, self._check)


class SpanCount:
    def __init__(self, name: str, low: int, high: int) -> None:
        self.name, self._low, self._high = name, low, high

    def evaluate(self, td: TraceData) -> Decision:
        n = td.span_count
        return SAMPLED if n >= self._low and (self._high == 0 or n <= self._high) else NOT_SAMPLED


class AlwaysSample:
    def __init__(self, name: str) -> None:
        self.name = name

    def evaluate(self, td: TraceData) -> Decision:
        return SAMPLED


# -- rate policies ------------------------------------------------------------------------


class RateLimiting:
    """Spans of sampled traces counted per clock second; sampled while below the limit."""

    def __init__(self, name: str, spans_per_second: int) -> None:
        self.name, self._limit = name, spans_per_second
        self._second = -1
        self._spans = 0

    def evaluate(self, td: TraceData) -> Decision:
        second = int(td.now)
        if second != self._second:
            self._second, self._spans = second, 0
        if self._spans + td.span_count < self._limit:
            self._spans += td.span_count
            return SAMPLED
        return NOT_SAMPLED


class BytesLimiting:
    """A token bucket of bytes, full at start: a trace passes when its bytes are available."""

    def __init__(self, name: str, per_second: int, burst: int) -> None:
        self.name, self._rate = name, float(per_second)
        self._burst = float(burst or 2 * per_second)
        self._tokens = self._burst
        self._last: float | None = None

    def evaluate(self, td: TraceData) -> Decision:
        if self._last is not None and td.now > self._last:
            self._tokens = min(self._burst, self._tokens + (td.now - self._last) * self._rate)
        self._last = td.now if self._last is None else max(self._last, td.now)
        if td.nbytes <= self._tokens:
            self._tokens -= td.nbytes
            return SAMPLED
        return NOT_SAMPLED


# -- combining policies -------------------------------------------------------------------


class And:
    """Every sub-policy says yes: `matched`; any says no: not sampled."""

    matched: ClassVar[Decision] = SAMPLED

    def __init__(self, name: str, subs: list[Policy]) -> None:
        self.name, self._subs = name, subs

    def evaluate(self, td: TraceData) -> Decision:
        for sub in self._subs:
            if sub.evaluate(td) in _NO:
                return NOT_SAMPLED
        return self.matched


class Drop(And):
    """Like `and`, but a match drops the trace (and wins over every sample)."""

    matched: ClassVar[Decision] = DROPPED


class Composite:
    """Sub-policies in order, each with its share of spans per clock second."""

    def __init__(self, name: str, max_total: int, subs: list[tuple[Policy, int]]) -> None:
        self.name, self._max = name, max_total
        self._subs = subs
        self._used = [0] * len(subs)
        self._second = -1

    def evaluate(self, td: TraceData) -> Decision:
        second = int(td.now)
        if second != self._second:
            self._second = second
            self._used = [0] * len(self._subs)
        for i, (sub, allocated) in enumerate(self._subs):
            if sub.evaluate(td) in _YES:
                if_sampled = self._used[i] + td.span_count
                if if_sampled <= allocated and if_sampled <= self._max:
                    self._used[i] = if_sampled
                    td.composite_policy = sub.name
                    return SAMPLED
                return NOT_SAMPLED
        return NOT_SAMPLED


# -- building policies from the config ----------------------------------------------------


def build(cfg: _SharedPolicy) -> Policy:
    """The policy a (validated) config entry describes, at any nesting level."""
    t, name = cfg.type, cfg.name
    if t == "always_sample":
        return AlwaysSample(name)
    if t == "trace_flags":
        return TraceFlags(name)
    if t == "latency" and cfg.latency:
        return Latency(name, cfg.latency.threshold_ms, cfg.latency.upper_threshold_ms)
    if t == "numeric_attribute" and (n := cfg.numeric_attribute):
        return NumericAttribute(name, n.key, n.low, n.high, n.invert_match)
    if t == "string_attribute" and (s := cfg.string_attribute):
        return StringAttribute(name, s.key, s.values, s.enabled_regex_matching, s.cache_max_size, s.invert_match)
    if t == "boolean_attribute" and (b := cfg.boolean_attribute):
        return BooleanAttribute(name, b.key, b.value, b.invert_match)
    if t == "status_code" and cfg.status_code:
        return StatusCode(name, cfg.status_code.status_codes)
    if t == "probabilistic" and (p := cfg.probabilistic):
        return Probabilistic(name, p.hash_salt, p.sampling_percentage)
    if t == "rate_limiting" and cfg.rate_limiting:
        return RateLimiting(name, cfg.rate_limiting.spans_per_second)
    if t == "bytes_limiting" and (bl := cfg.bytes_limiting):
        return BytesLimiting(name, bl.bytes_per_second, bl.burst_capacity)
    if t == "span_count" and (sc := cfg.span_count):
        return SpanCount(name, sc.min_spans, sc.max_spans)
    if t == "trace_state" and (ts := cfg.trace_state):
        return TraceStatePolicy(name, ts.key, ts.values)
    and_cfg = getattr(cfg, "and_", None)
    if t == "and" and and_cfg is not None:
        return And(name, [build(sub) for sub in and_cfg.and_sub_policy])
    if t == "drop" and isinstance(cfg, PolicyConfig) and cfg.drop:
        return Drop(name, [build(sub) for sub in cfg.drop.drop_sub_policy])
    if t == "composite" and isinstance(cfg, PolicyConfig) and cfg.composite:
        return _composite(name, cfg.composite)
    raise ValueError(f"policy {name!r}: type {t!r} cannot be built here")  # config validation prevents it


def _composite(name: str, cfg: CompositeConfig) -> Composite:
    by_name: dict[str, CompositeSubPolicy] = {p.name: p for p in cfg.composite_sub_policy}
    order = list(cfg.policy_order) + [n for n in by_name if n not in cfg.policy_order]
    default = cfg.max_total_spans_per_second / len(by_name)
    allocated: dict[str, float] = {}
    for alloc in cfg.rate_allocation:
        allocated[alloc.policy] = (
            alloc.percent / 100 * cfg.max_total_spans_per_second if alloc.percent > 0 else default
        )
    subs = [(build(by_name[n]), int(allocated.get(n, 0))) for n in order]
    return Composite(name, cfg.max_total_spans_per_second, subs)
