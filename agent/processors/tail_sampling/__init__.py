"""`tail_sampling`: keep or drop whole traces once all their spans have arrived (traces).

Spans are grouped by trace id as they arrive. `decision_wait` after a trace's first span (or
`decision_wait_after_root_received` after its root span, if set and sooner) every policy is
evaluated over the whole trace, and the trace is kept or dropped as the Collector's
`tailsamplingprocessor` does:

- any `drop` policy that drops, or any inverted match that says "not sampled" → dropped;
- else any policy that samples (or an inverted match that samples while no policy said
  "not sampled") → kept;
- else dropped.

Policy types and their options are the Collector's: `always_sample`, `latency`,
`numeric_attribute`, `string_attribute`, `boolean_attribute`, `status_code`, `probabilistic`
(the Collector's FNV-1a hash, so both agree trace by trace), `rate_limiting`,
`bytes_limiting`, `span_count`, `trace_state`, `trace_flags`, `and`, `drop` and `composite`
(`ottl_condition` is not supported). Attribute policies look at resource and span attributes.

    processors:
      tail_sampling:
        decision_wait: 10s
        policies:
          - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
          - {name: slow, type: latency, latency: {threshold_ms: 500}}
          - {name: some, type: probabilistic, probabilistic: {sampling_percentage: 5}}

Guarantees: at most `num_traces` traces (waiting or recently decided) and, beyond the
Collector, at most `max_buffered_bytes` of encoded spans are held; past either bound the
oldest waiting trace is evicted undecided and counted in
`flowglass_processor_tail_sampling_evicted_traces_total{reason}`. Kept traces are sent on
with their spans grouped per resource and scope. Spans arriving after their trace was decided
follow that decision while it is remembered (in the buffer or the `decision_cache`),
otherwise they start a new decision window. `shutdown()` decides every waiting trace at once
and sends the kept ones on. Kept spans were already accepted upstream, so a retryable
refusal downstream is tried again on the next decision passes (bounded: a few tries, a few
dozen batches); what still fails, or is refused for good, is counted
(`processor_dropped{reason="send_failed"}`) and logged, never lost silently.

Beyond the Collector's options: `max_buffered_bytes` and `record_policy` (the Collector's
`recordpolicy` feature gate as an option). `sample_on_first_match` is the Collector's.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

import msgspec

from agent.component import Consumer, ProcessorFactory, Settings, Stability
from agent.config.types import ByteSize, Duration
from agent.model import Signal

_NonNeg = Annotated[int, msgspec.Meta(ge=0)]
_Positive = Annotated[int, msgspec.Meta(ge=1)]
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
STATUS_CODES = ("OK", "ERROR", "UNSET")


class LatencyConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: Kept when the trace lasts at least this long (ms); with an upper bound, longer than it.
    threshold_ms: _NonNeg = 0
    #: Kept only up to this duration (ms); 0 = no upper bound.
    upper_threshold_ms: _NonNeg = 0

    def __post_init__(self) -> None:
        if self.threshold_ms == 0 and self.upper_threshold_ms == 0:
            raise ValueError("latency needs threshold_ms or upper_threshold_ms (both are 0)")
        if self.upper_threshold_ms and self.upper_threshold_ms <= self.threshold_ms:
            raise ValueError(
                f"upper_threshold_ms ({self.upper_threshold_ms}) must be above threshold_ms ({self.threshold_ms})"
            )


class NumericAttributeConfig(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    min_value: int | None = None
    max_value: int | None = None
    invert_match: bool = False

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("numeric_attribute needs a key")
        if self.min_value is None and self.max_value is None:
            raise ValueError("numeric_attribute needs min_value, max_value or both")
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            raise ValueError(f"min_value ({self.min_value}) is above max_value ({self.max_value})")

    @property
    def low(self) -> int:
        return _INT64_MIN if self.min_value is None else self.min_value

    @property
    def high(self) -> int:
        return _INT64_MAX if self.max_value is None else self.max_value


class StringAttributeConfig(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    values: list[str]
    #: Values are regular expressions (Python `re`, searched anywhere in the value).
    enabled_regex_matching: bool = False
    #: Attribute values whose regex outcome is remembered (LRU); 0 = no cache.
    cache_max_size: _NonNeg = 128
    invert_match: bool = False

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("string_attribute needs a key")
        if not self.values:
            raise ValueError("string_attribute needs at least one value")
        if self.enabled_regex_matching:
            for v in self.values:
                try:
                    re.compile(v)
                except re.error as exc:
                    raise ValueError(f"value {v!r} is not a valid regular expression: {exc}") from None


class BooleanAttributeConfig(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    value: bool = False
    invert_match: bool = False

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("boolean_attribute needs a key")


class StatusCodeConfig(msgspec.Struct, forbid_unknown_fields=True):
    status_codes: list[str]

    def __post_init__(self) -> None:
        if not self.status_codes:
            raise ValueError("status_codes must name at least one of OK, ERROR, UNSET")
        for code in self.status_codes:
            if code not in STATUS_CODES:
                raise ValueError(f"unknown status code {code!r} (expected OK, ERROR or UNSET)")


class ProbabilisticConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: Salt of the hash; tiers sampling at different rates should use different salts.
    hash_salt: str = ""
    sampling_percentage: float = 0.0

    def __post_init__(self) -> None:
        pct = self.sampling_percentage
        if not 0.0 <= pct <= 100.0:  # also false for NaN
            raise ValueError(f"sampling_percentage must be between 0 and 100, got {pct}")


class RateLimitingConfig(msgspec.Struct, forbid_unknown_fields=True):
    spans_per_second: _Positive


class BytesLimitingConfig(msgspec.Struct, forbid_unknown_fields=True):
    bytes_per_second: _Positive
    #: Most bytes admitted in a burst; 0 = twice bytes_per_second.
    burst_capacity: _NonNeg = 0


class SpanCountConfig(msgspec.Struct, forbid_unknown_fields=True):
    min_spans: _NonNeg = 0
    #: 0 = no upper bound.
    max_spans: _NonNeg = 0

    def __post_init__(self) -> None:
        if self.min_spans == 0 and self.max_spans == 0:
            raise ValueError("span_count needs min_spans or max_spans")
        if self.max_spans and self.max_spans < self.min_spans:
            raise ValueError(f"max_spans ({self.max_spans}) is below min_spans ({self.min_spans})")


class TraceStateConfig(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    values: list[str]

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("trace_state needs a key")
        if not self.values:
            raise ValueError("trace_state needs at least one value")


_SHARED_TYPES = (
    "always_sample", "latency", "numeric_attribute", "string_attribute", "boolean_attribute",
    "status_code", "probabilistic", "rate_limiting", "bytes_limiting", "span_count",
    "trace_state", "trace_flags",
)
#: Types whose options live in a section named after the type.
_SECTIONED = frozenset(_SHARED_TYPES) - {"always_sample", "trace_flags"} | {"and", "drop", "composite"}
_UNSUPPORTED = {"ottl_condition": "OTTL conditions are not supported by Flowglass"}


class _SharedPolicy(msgspec.Struct, forbid_unknown_fields=True):
    """Fields every policy may have; the subclasses say which types a level allows."""

    name: str
    type: str
    latency: LatencyConfig | None = None
    numeric_attribute: NumericAttributeConfig | None = None
    string_attribute: StringAttributeConfig | None = None
    boolean_attribute: BooleanAttributeConfig | None = None
    status_code: StatusCodeConfig | None = None
    probabilistic: ProbabilisticConfig | None = None
    rate_limiting: RateLimitingConfig | None = None
    bytes_limiting: BytesLimitingConfig | None = None
    span_count: SpanCountConfig | None = None
    trace_state: TraceStateConfig | None = None

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"ottl_condition"})
    _allowed: ClassVar[tuple[str, ...]] = _SHARED_TYPES
    _level: ClassVar[str] = "an and or drop policy"

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("every policy needs a name")
        if self.type in _UNSUPPORTED:
            raise ValueError(f"policy type {self.type!r}: {_UNSUPPORTED[self.type]}")
        if self.type not in self._allowed:
            if self.type in ("and", "drop", "composite"):
                raise ValueError(f"policy type {self.type!r} is not allowed inside {self._level} (nested too deep)")
            raise ValueError(f"unknown policy type {self.type!r} (known: {', '.join(self._allowed)})")
        for section in _SECTIONED:
            present = getattr(self, "and_" if section == "and" else section, None) is not None
            if section == self.type and not present:
                raise ValueError(f"policy {self.name!r} of type {self.type} needs a {section} section")
            if section != self.type and present:
                raise ValueError(
                    f"policy {self.name!r} of type {self.type} does not read the {section} section; remove it"
                )


class AndConfig(msgspec.Struct, forbid_unknown_fields=True):
    and_sub_policy: list[_SharedPolicy]

    def __post_init__(self) -> None:
        if not self.and_sub_policy:
            raise ValueError("and_sub_policy needs at least one policy")


class DropConfig(msgspec.Struct, forbid_unknown_fields=True):
    drop_sub_policy: list[_SharedPolicy]

    def __post_init__(self) -> None:
        if not self.drop_sub_policy:
            raise ValueError("drop_sub_policy needs at least one policy")


class CompositeSubPolicy(_SharedPolicy, forbid_unknown_fields=True):
    #: Inside a composite, an `and` is allowed (as in the Collector), nothing deeper.
    and_: AndConfig | None = msgspec.field(default=None, name="and")

    _allowed: ClassVar[tuple[str, ...]] = (*_SHARED_TYPES, "and")
    _level: ClassVar[str] = "a composite policy"

    @property
    def and_config(self) -> AndConfig | None:
        return self.and_


class RateAllocation(msgspec.Struct, forbid_unknown_fields=True):
    policy: str
    percent: int

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 100:
            raise ValueError(f"percent must be between 0 and 100, got {self.percent}")


class CompositeConfig(msgspec.Struct, forbid_unknown_fields=True):
    max_total_spans_per_second: _Positive
    composite_sub_policy: list[CompositeSubPolicy]
    #: Order in which sub-policies are tried; unlisted ones follow in their written order.
    policy_order: list[str] = msgspec.field(default_factory=list)
    #: Share of max_total_spans_per_second each sub-policy may sample; unlisted ones get none.
    rate_allocation: list[RateAllocation] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.composite_sub_policy:
            raise ValueError("composite_sub_policy needs at least one policy")
        names = [p.name for p in self.composite_sub_policy]
        _no_duplicates(names, "composite sub-policy")
        for name in self.policy_order:
            if name not in names:
                raise ValueError(f"policy_order names {name!r}, which is not a composite_sub_policy")
        for alloc in self.rate_allocation:
            if alloc.policy not in names:
                raise ValueError(f"rate_allocation names {alloc.policy!r}, which is not a composite_sub_policy")
        total = sum(a.percent for a in self.rate_allocation)
        if total > 100:
            raise ValueError(f"rate_allocation percents add up to {total}, more than 100")


class PolicyConfig(_SharedPolicy, forbid_unknown_fields=True):
    and_: AndConfig | None = msgspec.field(default=None, name="and")
    drop: DropConfig | None = None
    composite: CompositeConfig | None = None

    _allowed: ClassVar[tuple[str, ...]] = (*_SHARED_TYPES, "and", "drop", "composite")
    _level: ClassVar[str] = "the policies list"


class DecisionCacheConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: Trace ids whose "keep" decision is remembered after the trace left the buffer (LRU).
    sampled_cache_size: _NonNeg = 0
    #: Trace ids whose "drop" decision is remembered after the trace left the buffer (LRU).
    non_sampled_cache_size: _NonNeg = 0


class TailSamplingConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: Time from a trace's first span to its decision.
    decision_wait: Duration = Duration(30.0)
    #: Traces held (waiting or recently decided); the oldest is evicted past it.
    num_traces: _Positive = 50000
    #: Accepted for compatibility (the Collector sizes structures with it); no effect here.
    expected_new_traces_per_sec: _NonNeg = 0
    #: Decide this long after the root span arrived, if sooner than decision_wait; 0 = off.
    decision_wait_after_root_received: Duration = Duration(0.0)
    #: Flowglass: most encoded span bytes buffered; the oldest waiting trace is evicted past
    #: it. 0 = no byte bound (only num_traces bounds the buffer).
    max_buffered_bytes: ByteSize = ByteSize(256 * 1024 * 1024)
    decision_cache: DecisionCacheConfig = msgspec.field(default_factory=DecisionCacheConfig)
    #: Decide as soon as one policy samples, skipping the later ones.
    sample_on_first_match: bool = False
    #: Add `tailsampling.policy` (and `tailsampling.composite_policy`) to kept spans' scopes.
    record_policy: bool = False
    policies: list[PolicyConfig] = msgspec.field(default_factory=list)

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({
        "drop_pending_traces_on_shutdown", "maximum_trace_size_bytes", "block_on_overflow",
        "sampling_strategy", "num_shards", "tail_storage", "options",
    })

    def __post_init__(self) -> None:
        if self.decision_wait <= 0:
            raise ValueError("decision_wait must be above 0")
        if not self.policies:
            raise ValueError("policies needs at least one policy")
        _no_duplicates([p.name for p in self.policies], "policy")


def _no_duplicates(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"two {what}s are named {name!r}; names must be unique")
        seen.add(name)


def _create(settings: Settings, config: Any, signal: Signal, next_consumer: Consumer) -> Any:
    from agent.processors.tail_sampling.processor import TailSamplingProcessor

    assert isinstance(config, TailSamplingConfig)
    return TailSamplingProcessor(settings, config, next_consumer)


FACTORY = ProcessorFactory(
    type="tail_sampling",
    config_type=TailSamplingConfig,
    description="Keeps or drops whole traces after waiting for their spans, with the Collector's policies.",
    signals={Signal.TRACES: Stability.BETA},
    create=_create,
)

__all__ = [
    "FACTORY",
    "AndConfig",
    "CompositeConfig",
    "CompositeSubPolicy",
    "DropConfig",
    "PolicyConfig",
    "TailSamplingConfig",
]
