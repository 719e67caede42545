"""TCP framing (RFC 6587): a byte stream → syslog frames, with bounded memory.

- `OctetCounting` (§3.4.1): `MSG-LEN SP SYSLOG-MSG`, the length in octets. A frame longer
  than `max_octets` is skipped as it arrives (never buffered) and counted `too_large`; a
  length that is not a number cannot be resynchronised and ends the stream (`framing`). LF,
  CR, NUL and spaces between frames are ignored (some senders add an LF after each frame;
  rsyslog and syslog-ng count one into the frame, which trimming removes).
- `Trailer` (§3.4.2, non-transparent framing): frames end with LF (CRLF included, the CR is
  trimmed later) or NUL. A frame longer than `max_size` is dropped up to its trailer and
  counted `too_large`; the stream then carries on with the next frame.
- `Auto`: decides on the first byte of the connection: `1`–`9` means octet counting,
  anything else a trailer; the trailer is NUL when the first data with a trailer holds a
  NUL, else LF.
- `Whole` (`one_log_per_packet`): the whole connection is one frame.

`feed(data)` returns the complete frames; problems are counted in `errors` (reason →
number of messages lost) and `fatal` says the stream cannot go on. `finish()` is called at
the end of the stream: a partial octet-counted frame is counted `truncated`, the rest of
a trailer-delimited stream is one last frame (as the Collector flushes it).
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

_MAX_DIGITS = 10  # a length of 10 digits is already far beyond any max_octets
_SEPARATORS = b"\n\r\0 "


class Framer(Protocol):
    errors: Counter[str]

    @property
    def fatal(self) -> bool: ...

    def feed(self, data: bytes) -> list[bytes]: ...

    def finish(self) -> list[bytes]: ...


class OctetCounting:
    def __init__(self, max_octets: int) -> None:
        self._max = max_octets
        self._buf = b""
        self._skip = 0
        self.errors: Counter[str] = Counter()
        self.fatal = False

    def feed(self, data: bytes) -> list[bytes]:
        if self.fatal:
            return []
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            data = data[self._skip:]
            self._skip = 0
        buf = self._buf + data if self._buf else data
        frames: list[bytes] = []
        pos, end = 0, len(buf)
        while pos < end:
            if buf[pos] in _SEPARATORS:
                pos += 1
                continue
            space = buf.find(b" ", pos, pos + _MAX_DIGITS + 1)
            if space < 0:
                if end - pos > _MAX_DIGITS or not buf[pos:end].isdigit():
                    self._fail()
                    return frames
                break
            digits = buf[pos:space]
            if not digits.isdigit() or digits[0] == 0x30:
                self._fail()
                return frames
            size = int(digits)
            start = space + 1
            if size > self._max:
                self.errors["too_large"] += 1
                available = end - start
                if size > available:
                    self._skip = size - available
                    pos = end
                    break
                pos = start + size
                continue
            stop = start + size
            if stop > end:
                break
            frames.append(buf[start:stop])
            pos = stop
        self._buf = buf[pos:] if pos < end else b""
        return frames

    def _fail(self) -> None:
        self.errors["framing"] += 1
        self.fatal = True
        self._buf = b""

    def finish(self) -> list[bytes]:
        # A frame being skipped was already counted `too_large`.
        if self._buf.strip(_SEPARATORS):
            self.errors["truncated"] += 1
        self._buf = b""
        self._skip = 0
        return []


class Trailer:
    def __init__(self, trailer: bytes, max_size: int) -> None:
        self._trailer = trailer
        self._max = max_size
        self._buf = b""
        self._discarding = False
        self.errors: Counter[str] = Counter()
        self.fatal = False

    def feed(self, data: bytes) -> list[bytes]:
        trailer = self._trailer
        if self._discarding:
            cut = data.find(trailer)
            if cut < 0:
                return []
            data = data[cut + 1:]
            self._discarding = False
        buf = self._buf + data if self._buf else data
        frames = buf.split(trailer)
        rest = frames.pop()
        if len(rest) > self._max:
            self.errors["too_large"] += 1
            self._discarding = True
            rest = b""
        self._buf = rest
        limit = self._max
        for frame in frames:
            if len(frame) > limit:
                self.errors["too_large"] += 1
                return [f for f in frames if len(f) <= limit]
        return frames

    def finish(self) -> list[bytes]:
        rest, self._buf = self._buf, b""
        return [rest] if rest and not self._discarding else []


class Whole:
    """The whole stream is one frame of at most `max_size` bytes (the rest is dropped)."""

    def __init__(self, max_size: int) -> None:
        self._max = max_size
        self._parts: list[bytes] = []
        self._size = 0
        self.errors: Counter[str] = Counter()
        self.fatal = False

    def feed(self, data: bytes) -> list[bytes]:
        room = self._max - self._size
        if room > 0:
            part = data[:room]
            self._parts.append(part)
            self._size += len(part)
        return []

    def finish(self) -> list[bytes]:
        frame = b"".join(self._parts)
        self._parts.clear()
        return [frame] if frame else []


class Auto:
    """Octet counting or a trailer, decided by the first data of the connection."""

    def __init__(self, max_octets: int, max_size: int) -> None:
        self._max_octets = max_octets
        self._max_size = max_size
        self._inner: Framer | None = None
        self._pending = b""
        self.errors: Counter[str] = Counter()

    @property
    def fatal(self) -> bool:
        return self._inner is not None and self._inner.fatal

    def feed(self, data: bytes) -> list[bytes]:
        if self._inner is None:
            data = self._pending + data
            first = data.lstrip(_SEPARATORS)[:1]
            if not first:
                self._pending = data[-16:]
                return []
            if b"1" <= first <= b"9":
                self._inner = OctetCounting(self._max_octets)
            elif b"\0" in data:
                self._inner = Trailer(b"\0", self._max_size)
            elif b"\n" in data or len(data) > self._max_size:
                self._inner = Trailer(b"\n", self._max_size)
            else:
                # Neither a trailer nor a length yet: wait for more (bounded by max_size).
                self._pending = data
                return []
            self._pending = b""
            self.errors = self._inner.errors
        return self._inner.feed(data)

    def finish(self) -> list[bytes]:
        if self._inner is None:
            rest, self._pending = self._pending, b""
            return [rest] if rest.strip(_SEPARATORS) else []
        return self._inner.finish()
