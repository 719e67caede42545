"""Value types used in Config Structs, parsed in one place.

Durations are written `200ms`, `5s`, `1m30s`, `2h` (Go's duration syntax, as in the Collector)
or as a bare number of seconds; they become `Duration`, a float of seconds. Sizes are
written as integers or `512KiB`, `4MiB`, `1GB`; they become `ByteSize`, an int of bytes.
Pass `dec_hook` to `msgspec.convert` so these types parse.
"""

from __future__ import annotations

import re
from typing import Any

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "ki": 1024, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mi": 1024**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gi": 1024**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "ti": 1024**4, "tib": 1024**4,
}


class Duration(float):
    """Seconds, parsed from `200ms`-style text."""

    def __repr__(self) -> str:
        return f"Duration({format_duration(self)!r})"


class ByteSize(int):
    """Bytes, parsed from `4MiB`-style text or an integer."""


def parse_duration(value: Any) -> Duration:
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 200ms or 5s, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration must not be negative, got {value!r}")
        return Duration(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 200ms or 5s, got {type(value).__name__}")
    text = value.strip()
    if text in ("0", ""):
        return Duration(0.0)
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"expected a duration like 200ms, 5s or 1m30s, got {value!r}")
    return Duration(total)


def format_duration(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def parse_size(value: Any) -> ByteSize:
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 4MiB or a number of bytes, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size must not be negative, got {value}")
        return ByteSize(value)
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            unit = (m.group(2) or "").lower()
            return ByteSize(int(float(m.group(1)) * _SIZE_UNITS[unit]))
    raise ValueError(f"expected a size like 4MiB or a number of bytes, got {value!r}")


def dec_hook(typ: type, value: Any) -> Any:
    """`msgspec.convert` hook for the types above."""
    if typ is Duration:
        return parse_duration(value)
    if typ is ByteSize:
        return parse_size(value)
    raise NotImplementedError(f"no conversion to {typ!r}")
