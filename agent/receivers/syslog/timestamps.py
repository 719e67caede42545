"""Syslog timestamps → Unix nanoseconds, with small caches for the hot path.

- RFC 3339 (RFC 5424 §6.2.3, and the ISO timestamps RFC 3164 devices send):
  `2003-10-11T22:14:15.003Z`, `…+02:00`, fractions up to nanoseconds. Without an offset
  (only allowed for RFC 3164) the configured `location` applies.
- RFC 3164 §4.1.2 `Mmm dd hh:mm:ss` (day space-padded or not, optional fraction): no year,
  so the year that puts the time closest to now is chosen — a December message read in
  January is dated last year — in the configured `location`.

Messages of one burst share their second, so the second (with its offset) is cached and
only the fraction is parsed per message. Caches are bounded; the RFC 3164 one is also
dropped every hour, since the year it infers depends on the current date.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo

_CACHE_SIZE = 4096
_NANOS = 1_000_000_000
#: Multiplier that turns a fraction of n digits into nanoseconds, by n.
_SCALE = (0, 10**8, 10**7, 10**6, 10**5, 10**4, 10**3, 10**2, 10, 1)
_DATE_TIME = re.compile(rb"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)\Z")
_OFFSET = re.compile(rb"([+-])(\d\d):(\d\d)\Z")

MONTHS: dict[bytes, int] = {
    name: i + 1
    for i, name in enumerate(
        (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")
    )
}


def _fraction(text: bytes) -> int | None:
    """Nanoseconds of `.ddd` (1 to 9 digits); 0 for b""; None when malformed."""
    if not text:
        return 0
    digits = text[1:]
    n = len(digits)
    if text[:1] != b"." or not 0 < n < 10 or not digits.isdigit():
        return None
    return int(digits) * _SCALE[n]


def _seconds(year: int, month: int, day: int, hh: int, mm: int, ss: int, zone: tzinfo) -> int | None:
    if ss == 60:  # a leap second is counted as the last second of its minute
        ss = 59
    try:
        moment = datetime(year, month, day, hh, mm, ss, tzinfo=zone)
    except ValueError:
        return None
    if zone is UTC:
        return calendar.timegm((year, month, day, hh, mm, ss))
    return int(moment.timestamp())


class RFC3339:
    """Parses RFC 3339 timestamps; `local` is used when the offset is missing (None: required)."""

    def __init__(self, local: tzinfo | None = None) -> None:
        self._local = local
        self._seconds: dict[bytes, int] = {}

    def nanos(self, text: bytes) -> int | None:
        n = len(text)
        if n < 19:
            return None
        last = text[-1]
        if last == 0x5A or last == 0x7A:  # Z, z
            cut = n - 1
        elif text[-3] == 0x3A and (text[-6] == 0x2B or text[-6] == 0x2D):  # ":" and "+" or "-"
            cut = n - 6
        else:
            cut = n
        key = text[:19] + text[cut:]
        seconds = self._seconds.get(key)
        if seconds is None:
            seconds = self._parse_seconds(text[:19], b"Z" if cut == n - 1 else text[cut:])
            if seconds is None:
                return None
            if len(self._seconds) >= _CACHE_SIZE:
                self._seconds.clear()
            self._seconds[key] = seconds
        if cut == 19:
            return seconds * _NANOS
        digits = text[20:cut]
        if text[19] != 0x2E or not digits.isdigit() or len(digits) > 9:  # "."
            return None
        return seconds * _NANOS + int(digits) * _SCALE[len(digits)]

    def _parse_seconds(self, base: bytes, offset: bytes) -> int | None:
        m = _DATE_TIME.match(base)
        if m is None:
            return None
        zone: tzinfo
        if offset == b"Z":
            zone = UTC
        elif offset:
            o = _OFFSET.match(offset)
            if o is None or int(o.group(2)) > 23 or int(o.group(3)) > 59:
                return None
            delta = timedelta(hours=int(o.group(2)), minutes=int(o.group(3)))
            zone = timezone(-delta if o.group(1) == b"-" else delta)
        elif self._local is not None:
            zone = self._local
        else:
            return None
        y, mo, d, hh, mi, ss = (int(g) for g in m.groups())
        return _seconds(y, mo, d, hh, mi, ss, zone)


class Stamp:
    """Parses RFC 3164 `Mmm dd hh:mm:ss` timestamps in `zone`, inferring the year."""

    def __init__(self, zone: tzinfo, clock: Callable[[], float] = time.time) -> None:
        self._zone = zone
        self._clock = clock
        self._seconds: dict[bytes, int] = {}
        self._hour = -1

    def nanos(self, month: bytes, day: bytes, clock: bytes, fraction: bytes = b"") -> int | None:
        """`month` like b"Oct", `day` b"11" / b" 1" / b"1", `clock` b"22:14:15", `fraction` b".123"."""
        nanos = _fraction(fraction)
        if nanos is None:
            return None
        key = month + day.strip() + clock
        now = self._clock()
        hour = int(now // 3600)
        if hour != self._hour:
            self._seconds.clear()
            self._hour = hour
        seconds = self._seconds.get(key)
        if seconds is None:
            seconds = self._parse_seconds(month, day.strip(), clock, now)
            if seconds is None:
                return None
            if len(self._seconds) >= _CACHE_SIZE:
                self._seconds.clear()
            self._seconds[key] = seconds
        return seconds * _NANOS + nanos

    def _parse_seconds(self, month: bytes, day: bytes, clock: bytes, now: float) -> int | None:
        number = MONTHS.get(month)
        if number is None or not day.isdigit() or len(clock) != 8:
            return None
        hh, mm, ss = clock[:2], clock[3:5], clock[6:]
        if clock[2:3] != b":" or clock[5:6] != b":" or not (hh + mm + ss).isdigit():
            return None
        year = datetime.fromtimestamp(now, self._zone).year
        best: int | None = None
        for candidate in (year - 1, year, year + 1):
            seconds = _seconds(candidate, number, int(day), int(hh), int(mm), int(ss), self._zone)
            if seconds is not None and (best is None or abs(seconds - now) < abs(best - now)):
                best = seconds
        return best
