"""Consistent-probability sampling arithmetic, as the OpenTelemetry specification and the
Collector's `probabilisticsamplerprocessor` define it.

* Randomness R and threshold T are 56-bit unsigned integers; an item is kept when R >= T.
  T = 0 keeps everything (t-value "0"), T = 2**56 keeps nothing (no t-value).
* R comes from the low 7 bytes of the trace id, from an `rv` value in the `ot` member of
  the W3C tracestate, or (in `hash_seed` mode) from the Collector's legacy FNV-1a hash
  spread over 56 bits so that `R >= T` is the same test as the legacy `hash < rate`.
* A t-value is T in 14 hex digits with trailing zeros removed.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field

MAX_ADJUSTED_COUNT = 1 << 56
MIN_PROBABILITY = 1.0 / MAX_ADJUSTED_COUNT
NUM_HEX_DIGITS = 14
ALWAYS = 0
NEVER = MAX_ADJUSTED_COUNT

# The Collector's legacy hash arithmetic: 14-bit buckets.
NUM_HASH_BUCKETS_LG2 = 14
NUM_HASH_BUCKETS = 0x4000
BIT_MASK_HASH_BUCKETS = NUM_HASH_BUCKETS - 1
_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


def float32(x: float) -> float:
    """`x` rounded to the nearest IEEE single, as a Go `float32` holds it."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


# Go evaluates `pct * percentageScaleFactor` with pct a float32 and the untyped constant
# 0x4000/100.0 converted to float32, in float32 arithmetic.
_SCALE_FACTOR_F32 = float32(NUM_HASH_BUCKETS / 100.0)


def fnv1a_32(data: bytes, h: int = _FNV32_OFFSET) -> int:
    for b in data:
        h = ((h ^ b) * _FNV32_PRIME) & 0xFFFFFFFF
    return h


def seeded_hash(data: bytes, seed: int) -> int:
    """FNV-1a (32 bit) over the seed's 4 bytes, little-endian, then over `data`."""
    return fnv1a_32(data, fnv1a_32(seed.to_bytes(4, "little")))


def scaled_sample_rate(percentage: float) -> int:
    """Accepted hash buckets out of 0x4000: `uint32(float32(pct) * float32(163.84))`."""
    pct = float32(min(float32(percentage), 100.0))
    # The product of two singles is exact in a double; rounding it to single is Go's
    # float32 multiply. The conversion to uint32 truncates toward zero.
    return int(float32(pct * _SCALE_FACTOR_F32))


def hash_randomness(data: bytes, seed: int) -> int:
    """The Collector's 56-bit randomness from the legacy hash of `data`.

    Most significant 14 bits: 0x3FFF - bucket (so R >= T matches bucket < rate); then 28
    bits mixing the hash's top 14 bits (`h >> 18`; the Collector names them "unused18");
    then the 14-bit bucket itself.
    """
    hashed32 = seeded_hash(data, seed)
    hashed = hashed32 & BIT_MASK_HASH_BUCKETS
    rprime14 = NUM_HASH_BUCKETS - 1 - hashed
    unused18 = hashed32 >> (32 - NUM_HASH_BUCKETS_LG2)
    mixed28 = (unused18 ^ (unused18 << 10)) & ((1 << 28) - 1)
    return (rprime14 << 42) | (mixed28 << 14) | hashed


def hash_seed_threshold(percentage: float) -> int:
    """Threshold of `hash_seed` mode (NEVER when the rate rounds to zero buckets)."""
    rate = scaled_sample_rate(percentage)
    if rate == 0:
        return NEVER
    return (NUM_HASH_BUCKETS - rate) << 42


def trace_id_randomness(trace_id: bytes) -> int:
    """The least significant 7 bytes of the trace id, big-endian."""
    return int.from_bytes(trace_id[9:16], "big")


def probability_to_threshold(prob: float, precision: int) -> int | None:
    """T for `prob` rounded to `precision` significant hex digits; None if out of range.

    As the OpenTelemetry sampling package does, precision grows by one hex digit for every
    4 binary orders of magnitude that `prob` or `1 - prob` lies below 1/2, so that very
    small and very large probabilities keep their relative accuracy.
    """
    if not (MIN_PROBABILITY <= prob <= 1.0):
        return None
    if prob == 1.0:
        return ALWAYS
    if precision <= 0:
        precision = NUM_HEX_DIGITS
    exp_f = math.frexp(prob)[1]
    exp_r = math.frexp(1.0 - prob)[1]
    precision = min(NUM_HEX_DIGITS, max(precision + (-exp_f) // 4, precision + (-exp_r) // 4))
    t = MAX_ADJUSTED_COUNT - round_half_away(prob * MAX_ADJUSTED_COUNT)
    shift = 4 * (NUM_HEX_DIGITS - precision)
    if shift:
        t += 1 << (shift - 1)
        t = (t >> shift) << shift
    return t


def round_half_away(x: float) -> int:
    """Go's `math.Round`: halves away from zero (Python's round() goes to even)."""
    # Subtracting the floor is exact, so no addition can round a large value the wrong way.
    whole = math.floor(x)
    return int(whole) + (1 if x - whole >= 0.5 else 0)


def threshold_probability(t: int) -> float:
    return (MAX_ADJUSTED_COUNT - t) / MAX_ADJUSTED_COUNT


def tvalue(t: int) -> str:
    """The t-value of T: "0" for always, otherwise 14 hex digits minus trailing zeros."""
    if t == ALWAYS:
        return "0"
    return f"{t:014x}".rstrip("0")


def parse_tvalue(s: str) -> int:
    """T from a t-value (1 to 14 hex digits); ValueError when malformed."""
    if not 1 <= len(s) <= NUM_HEX_DIGITS or not _HEX.fullmatch(s):
        raise ValueError(f"invalid t-value {s!r}")
    return int(s, 16) << (4 * (NUM_HEX_DIGITS - len(s)))


def rvalue(r: int) -> str:
    return f"{r:014x}"


def parse_rvalue(s: str) -> int:
    """R from an r-value (exactly 14 hex digits); ValueError when malformed."""
    if len(s) != NUM_HEX_DIGITS or not _HEX.fullmatch(s):
        raise ValueError(f"invalid r-value {s!r}")
    return int(s, 16)


_HEX = re.compile(r"[0-9a-fA-F]+")
_OT_VALUE = re.compile(r"[a-z][a-z0-9]*:[a-zA-Z0-9._\-]*(?:;[a-z][a-z0-9]*:[a-zA-Z0-9._\-]*)*")
_W3C_KEY = re.compile(r"[a-z][a-z0-9_\-*/]*|[a-z0-9][a-z0-9_\-*/]*@[a-z][a-z0-9_\-*/]*")
_W3C_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]*[\x21-\x2b\x2d-\x3c\x3e-\x7e]")


@dataclass
class TraceState:
    """A parsed W3C tracestate with its `ot` member's `rv` and `th` split out.

    Serialization writes `ot` first (rv, then th, then other ot fields), then the other
    vendors' members in their arriving order, as the Collector does.
    """

    rv: str = ""
    th: str = ""
    ot_extra: list[tuple[str, str]] = field(default_factory=list)
    members: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, raw: str) -> TraceState:
        """ValueError when the tracestate or its `ot` member is malformed."""
        ts = cls()
        if not raw:
            return ts
        if len(raw) > 1024:
            raise ValueError("tracestate is longer than 1024 characters")
        parts = [p.strip(" \t") for p in raw.split(",")]
        parts = [p for p in parts if p]
        if len(parts) > 32:
            raise ValueError("tracestate has more than 32 members")
        for part in parts:
            key, sep, value = part.partition("=")
            if not sep or not _W3C_KEY.fullmatch(key) or not _W3C_VALUE.fullmatch(value) or len(value) > 256:
                raise ValueError(f"malformed tracestate member {part!r}")
            if key == "ot":
                ts._parse_ot(value)
            else:
                ts.members.append((key, value))
        return ts

    def _parse_ot(self, value: str) -> None:
        if len(value) > 256 or not _OT_VALUE.fullmatch(value):
            raise ValueError(f"malformed ot tracestate value {value!r}")
        for item in value.split(";"):
            k, _, v = item.partition(":")
            if k == "rv":
                parse_rvalue(v)
                self.rv = v
            elif k == "th":
                parse_tvalue(v)
                self.th = v
            else:
                self.ot_extra.append((k, v))

    def serialize(self) -> str:
        ot = []
        if self.rv:
            ot.append(f"rv:{self.rv}")
        if self.th:
            ot.append(f"th:{self.th}")
        ot.extend(f"{k}:{v}" for k, v in self.ot_extra)
        out = [f"ot={';'.join(ot)}"] if ot else []
        out.extend(f"{k}={v}" for k, v in self.members)
        return ",".join(out)
