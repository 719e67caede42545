"""`probabilistic_sampler`: keep a fixed share of traces and logs at the head (traces, logs).

Behaves as the Collector's `probabilisticsamplerprocessor`, so that a fleet mixing both
agrees on every decision:

- `hash_seed` (default): the Collector's legacy decision — FNV-1a over the 4 little-endian
  bytes of `hash_seed` and then the 16 trace-id bytes (or, for logs, a record attribute),
  the low 14 bits as a bucket, kept when `bucket < uint32(float32(pct) * 163.84)`. Kept
  spans get `ot=rv:…;th:…` in their tracestate (log records `sampling.randomness` and
  `sampling.threshold` attributes), as the Collector writes them.
- `proportional` / `equalizing`: OpenTelemetry consistent-probability sampling over 56-bit
  randomness (the `rv` of the `ot` tracestate member, else the low 7 trace-id bytes);
  `proportional` multiplies the arriving probability by the percentage, `equalizing`
  lowers it to the percentage. The new threshold is written back as `ot=th:…`
  (`sampling.threshold` on logs) with `sampling_precision` hex digits.
- A span's `sampling.priority` attribute (0 drops, > 0 keeps) and, for logs, the attribute
  named by `sampling_priority` (a percentage that can only raise the probability) override
  the decision. Items whose randomness cannot be found (no trace id, malformed tracestate)
  are dropped when `fail_closed` (default), kept otherwise.

    processors:
      probabilistic_sampler:
        sampling_percentage: 15
        hash_seed: 22

Guarantees: unsampled items are removed in place; emptied scopes and resources go too; a
batch left empty is accepted and not passed on. Drops are counted in
`processor_dropped{reason="sampled_out"}` (or `"sampling_error"` when `fail_closed` drops an
item without randomness). A batch in which nothing is dropped or rewritten keeps its
cached bytes.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from agent.component import Consumer, ProcessorFactory, Settings, Stability
from agent.model import Signal
from agent.processors.probabilistic_sampler.sampling import MIN_PROBABILITY, NUM_HEX_DIGITS


class ProbabilisticSamplerConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: Percentage of items kept; 0 keeps none, 100 and above keep all.
    sampling_percentage: float = 0.0
    #: Seed of the legacy hash; every agent of one tier must use the same seed.
    hash_seed: Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)] = 0
    mode: Literal["hash_seed", "proportional", "equalizing"] = "hash_seed"
    #: Drop (true) or keep (false) items whose sampling randomness cannot be determined.
    fail_closed: bool = True
    #: Hex digits of the threshold written into tracestate / `sampling.threshold`.
    sampling_precision: int = 4
    #: Logs only: randomness from the record's trace id, or from `from_attribute`.
    attribute_source: Literal["traceID", "record"] = "traceID"
    #: Logs only: record attribute hashed when there is no trace id (or with `record`).
    from_attribute: str = ""
    #: Logs only: record attribute holding a percentage that raises the probability.
    sampling_priority: str = ""

    __upstream_options__: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        pct = self.sampling_percentage
        if math.isnan(pct) or math.isinf(pct):
            raise ValueError(f"sampling_percentage is not a number: {pct}")
        if pct < 0:
            raise ValueError(f"sampling_percentage must not be negative, got {pct}")
        if 0 < pct / 100.0 < MIN_PROBABILITY:
            raise ValueError(f"sampling_percentage {pct:g} is below the smallest probability, 2^-56")
        if self.sampling_precision == 0:
            raise ValueError("sampling_precision must be between 1 and 14, got 0")
        if not 1 <= self.sampling_precision <= NUM_HEX_DIGITS:
            raise ValueError(
                f"sampling_precision must be between 1 and {NUM_HEX_DIGITS}, got {self.sampling_precision}"
            )
        if self.attribute_source == "record" and not self.from_attribute:
            raise ValueError("attribute_source: record needs from_attribute, the record attribute to hash")


def _create(settings: Settings, config: Any, signal: Signal, next_consumer: Consumer) -> Any:
    from agent.processors.probabilistic_sampler.processor import ProbabilisticSamplerProcessor

    assert isinstance(config, ProbabilisticSamplerConfig)
    return ProbabilisticSamplerProcessor(settings, config, signal, next_consumer)


FACTORY = ProcessorFactory(
    type="probabilistic_sampler",
    config_type=ProbabilisticSamplerConfig,
    description="Keeps a share of traces and logs, deciding as the Collector does (hash_seed, proportional, equalizing).",
    signals={Signal.TRACES: Stability.BETA, Signal.LOGS: Stability.BETA},
    create=_create,
)

__all__ = ["FACTORY", "ProbabilisticSamplerConfig"]
