"""The sampling arithmetic: the Collector's legacy hash, thresholds, t-/r-values, tracestate."""

from __future__ import annotations

import pytest

from agent.processors.probabilistic_sampler import sampling as s


def textbook_fnv1a(data: bytes) -> int:
    """FNV-1a 32 as specified (offset basis 2166136261, prime 16777619), written plainly."""
    h = 2166136261
    for byte in data:
        h ^= byte
        h = (h * 16777619) % 2**32
    return h


def test_fnv1a_reference_vectors() -> None:
    # Published FNV-1a 32-bit test vectors.
    assert s.fnv1a_32(b"") == 0x811C9DC5
    assert s.fnv1a_32(b"a") == 0xE40C292C
    assert s.fnv1a_32(b"foobar") == 0xBF9CF968


def test_seed_is_hashed_first_as_four_little_endian_bytes() -> None:
    tid = bytes.fromhex("0102030405060708090a0b0c0d0e0f10")
    for seed in (0, 1, 22, 0x01020304, 0xFFFFFFFF):
        seed_bytes = bytes([(seed >> (8 * i)) & 0xFF for i in range(4)])
        assert s.seeded_hash(tid, seed) == textbook_fnv1a(seed_bytes + tid)


# (seed, trace id, FNV-1a 32 of seed bytes + trace id, bucket = hash & 0x3FFF,
#  kept at 1%, 10%, 25%, 50%, 75% — i.e. bucket < 163, 1638, 4096, 8192, 12288).
HASH_TABLE = [
    (0, "00000000000000000000000000000001", 0xB8FEE2C2, 8898, (0, 0, 0, 0, 1)),
    (0, "0102030405060708090a0b0c0d0e0f10", 0xDF241A25, 6693, (0, 0, 0, 1, 1)),
    (0, "4bf92f3577b34da6a3ce929d0e0e4736", 0x3420408D, 141, (1, 1, 1, 1, 1)),
    (0, "ffffffffffffffffffffffffffffffff", 0x291A1545, 5445, (0, 0, 0, 1, 1)),
    (22, "00000000000000000000000000000001", 0x793DED30, 11568, (0, 0, 0, 0, 1)),
    (22, "0102030405060708090a0b0c0d0e0f10", 0xD863B443, 13379, (0, 0, 0, 0, 0)),
    (22, "5b8efff798038103d269b633813fc60c", 0xA2A64CC9, 3273, (0, 0, 1, 1, 1)),
    (0xFFFFFFFF, "00000000000000000000000000000001", 0x637CDC5E, 7262, (0, 0, 0, 1, 1)),
    (0xFFFFFFFF, "a0a0a0a0a0a0a0a0a0fe000000000000", 0x14C9D42F, 5167, (0, 0, 0, 1, 1)),
]
PERCENTS = (1, 10, 25, 50, 75)


@pytest.mark.parametrize(("seed", "tid", "hash32", "bucket", "kept"), HASH_TABLE)
def test_hash_seed_table(seed: int, tid: str, hash32: int, bucket: int, kept: tuple[int, ...]) -> None:
    data = bytes.fromhex(tid)
    assert s.seeded_hash(data, seed) == hash32 == textbook_fnv1a(seed.to_bytes(4, "little") + data)
    assert hash32 & 0x3FFF == bucket
    for pct, want in zip(PERCENTS, kept, strict=True):
        # The Collector's legacy rule, and the same rule in 56-bit threshold form.
        assert (bucket < s.scaled_sample_rate(pct)) == bool(want)
        assert (s.hash_randomness(data, seed) >= s.hash_seed_threshold(pct)) == bool(want)


def test_hash_randomness_layout() -> None:
    data = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
    h = 0x3420408D
    bucket = h & 0x3FFF
    high = h >> 18  # the Collector shifts by 32 - 14 (its variable says "unused18")
    expected = ((0x3FFF - bucket) << 42) | ((high ^ (high << 10)) << 14) | bucket
    assert s.hash_randomness(data, 0) == expected
    assert s.rvalue(expected) == "fdc80d0b42008d"


@pytest.mark.parametrize(
    ("pct", "rate"),
    [(0.001, 0), (0.01, 1), (1, 163), (10, 1638), (15, 2457), (33.3, 5455), (50, 8192),
     (99.99, 16382), (100, 16384), (250, 16384)],
)
def test_scaled_sample_rate_truncates_float32_product(pct: float, rate: int) -> None:
    assert s.scaled_sample_rate(pct) == rate


def test_hash_seed_threshold_equivalence_over_every_bucket() -> None:
    # R >= T in 56 bits is exactly bucket < rate, for every bucket and several rates.
    for pct in (0.5, 15, 33.3, 99.99):
        t = s.hash_seed_threshold(pct)
        rate = s.scaled_sample_rate(pct)
        for bucket in range(0, 0x4000, 7):
            r = ((0x3FFF - bucket) << 42) | 0x3FFFFFFFFFF
            assert (r >= t) == (bucket < rate)
            assert (((0x3FFF - bucket) << 42) >= t) == (bucket < rate)
    assert s.hash_seed_threshold(0.001) == s.NEVER


@pytest.mark.parametrize(
    ("prob", "precision", "tv"),
    [
        (1.0, 4, "0"), (0.5, 4, "8"), (0.25, 4, "c"), (0.01, 14, "fd70a3d70a3d71"),
        (0.01, 3, "fd71"),  # one extra digit: 0.01 lies 6 binary orders below 1/2 (Collector: th:fd7 before this rule)
        (0.01, 4, "fd70a"),  # the Collector's "1 percent sampled with tid" case
        (0.4, 3, "99a"), (0.6, 4, "6666"), (0.4, 14, "99999999999998"),
        (0.999, 4, "004189"),  # 1 - p lies 9 binary orders below 1/2: two more digits
    ],
)
def test_probability_to_threshold(prob: float, precision: int, tv: str) -> None:
    t = s.probability_to_threshold(prob, precision)
    assert t is not None
    assert s.tvalue(t) == tv
    assert s.parse_tvalue(tv) == t


def test_probability_out_of_range() -> None:
    assert s.probability_to_threshold(0.0, 4) is None
    assert s.probability_to_threshold(1.5, 4) is None
    assert s.probability_to_threshold(2**-57, 4) is None
    assert s.probability_to_threshold(2**-56, 14) == s.MAX_ADJUSTED_COUNT - 1


def test_round_half_away_matches_go_math_round() -> None:
    assert s.round_half_away(2.5) == 3
    assert s.round_half_away(0.5) == 1
    assert s.round_half_away(2.4999) == 2
    big = float(2**53 - 1)
    assert s.round_half_away(big) == 2**53 - 1


def test_trace_id_randomness_is_low_seven_bytes() -> None:
    tid = bytes.fromhex("fefefefefefefefefe80000000000000")
    assert s.trace_id_randomness(tid) == 0x80000000000000
    assert s.rvalue(s.trace_id_randomness(tid)) == "80000000000000"


@pytest.mark.parametrize("bad", ["", "123456789abcdef", "xyz"])
def test_bad_tvalues(bad: str) -> None:
    with pytest.raises(ValueError):
        s.parse_tvalue(bad)


@pytest.mark.parametrize("bad", ["", "1234", "123456789abcdef", "zzzzzzzzzzzzzz"])
def test_bad_rvalues(bad: str) -> None:
    with pytest.raises(ValueError):
        s.parse_rvalue(bad)


def test_tracestate_round_trip_puts_ot_first() -> None:
    ts = s.TraceState.parse("congo=t61rcWkgMzE, ot=th:8;rv:90000000000000;foo:bar,rojo=00f067aa0ba902b7")
    assert (ts.rv, ts.th) == ("90000000000000", "8")
    assert ts.serialize() == "ot=rv:90000000000000;th:8;foo:bar,congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    ts.th = "c"
    assert ts.serialize().startswith("ot=rv:90000000000000;th:c;foo:bar,")
    assert s.TraceState.parse("").serialize() == ""
    assert s.TraceState.parse("congo=x").serialize() == "congo=x"


@pytest.mark.parametrize(
    "bad",
    ["ot=rv:123", "ot=th:xyz", "ot=th:8;;rv:1", "ot=TH:8", "Congo=x", "congo", "ot=th:" + "1" * 15,
     ",".join(f"k{i}=v" for i in range(33))],
)
def test_malformed_tracestate(bad: str) -> None:
    with pytest.raises(ValueError):
        s.TraceState.parse(bad)
