"""RFC 5424 messages → the encoded pieces of a log record.

`<PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP STRUCTURED-DATA
[SP MSG]` (RFC 5424 §6). Every header field may be NILVALUE `-`; STRUCTURED-DATA is `-` or
one or more `[SD-ID *(SP PARAM="VALUE")]` elements whose values escape `"`, `\\` and `]`
with a backslash (§6.3.3; other backslashes are kept as sent); MSG may start with a UTF-8
BOM, which is not part of the `message` attribute.

Lengths are those of the RFC (HOSTNAME ≤ 255, APP-NAME ≤ 48, PROCID ≤ 128, MSGID ≤ 32,
PRI ≤ 191, VERSION 1–999); a message that breaks them, or whose timestamp is not RFC 3339
with an offset, does not parse (None), as in the Collector.
"""

from __future__ import annotations

import re

from agent.receivers.syslog import wire
from agent.receivers.syslog.attributes import (
    CACHE_SIZE,
    PRI_PIECES,
    FieldPieces,
    parse_priority,
    structured_data_piece,
)
from agent.receivers.syslog.timestamps import RFC3339
from agent.receivers.syslog.wire import TIME_TAG

#: The encoded pieces of one record, in order: timestamp field, PRI (severity and PRI
#: attributes, `version`), `hostname`, `appname`, `proc_id`, `msg_id`, `structured_data`
#: (each b"" when absent) and the message (None when there is none).
Parsed = tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes, bytes | None]

_BOM = b"\xef\xbb\xbf"
_NAME = rb'[^ \]"=]+'
_VALUE = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_SD = re.compile(rb"(?:\[" + _NAME + rb"(?: " + _NAME + rb"=" + _VALUE + rb")*\])+", re.DOTALL)
#: In complete structured data: an element's start (SD-ID) or one of its parameters (name, value).
_SD_TOKEN = re.compile(rb"\[(" + _NAME + rb")| (" + _NAME + rb')="([^"\\]*(?:\\.[^"\\]*)*)"', re.DOTALL)
_ESCAPE = re.compile(rb'\\(["\\\]])')
_PRI_VERSION = re.compile(rb"(?:<(\d{1,3})>)?([1-9]\d{0,2})\Z")


def looks_like(frame: bytes, start: int) -> bool:
    """Whether a VERSION (digits then a space) follows the PRI that ends at `start`."""
    space = frame.find(b" ", start, start + 4)
    return space > start and frame[start:space].isdigit()


def structured_data(raw: bytes) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Complete structured data (`_SD` matches all of it) → [(SD-ID, {name → unescaped value})].

    As a map, like the Collector's: a repeated SD-ID adds its parameters to the first, a
    repeated name keeps the last value.
    """
    elements: dict[bytes, dict[bytes, bytes]] = {}
    params: dict[bytes, bytes] = {}
    for sd_id, name, value in _SD_TOKEN.findall(raw):
        if sd_id:
            found = elements.get(sd_id)
            params = elements[sd_id] = {} if found is None else found
        else:
            params[name] = _ESCAPE.sub(rb"\1", value) if b"\\" in value else value
    return list(elements.items())


def parse_structured_data(raw: bytes) -> dict[str, dict[str, str]]:
    """`structured_data(raw)` as text."""
    return {k.decode(): {n.decode(): v.decode() for n, v in ps.items()} for k, ps in structured_data(raw)}


class _PriVersion(dict[bytes, "bytes | None"]):
    """`<PRI>VERSION` (or `VERSION` when the PRI may be missing) → its encoded piece or None."""

    def __init__(self, allow_skip_pri: bool) -> None:
        super().__init__()
        self._allow_skip_pri = allow_skip_pri

    def __missing__(self, token: bytes) -> bytes | None:
        if len(self) >= CACHE_SIZE:
            self.clear()
        piece: bytes | None = None
        m = _PRI_VERSION.match(token)
        if m is not None and (m.group(1) is not None or self._allow_skip_pri):
            priority = parse_priority(m.group(1)) if m.group(1) is not None else -1
            if priority is not None:
                pri = PRI_PIECES[priority] if priority >= 0 else b""
                piece = pri + wire.int_attribute("version", int(m.group(2)))
        self[token] = piece
        return piece


class _StructuredData(dict[bytes, bytes]):
    """Encoded `structured_data` attributes by the raw elements (complete ones only)."""

    def find(self, rest: bytes) -> tuple[bytes, int] | None:
        """(the attribute, where the elements end) of the structured data `rest` starts with."""
        # Where the elements seem to end (the first `]` not followed by `[`): a cache hit
        # there is exact, since only complete structured data is ever cached.
        end = rest.find(b"]") + 1
        while end and rest[end:end + 1] == b"[":
            end = rest.find(b"]", end) + 1
        if end:
            region = rest[:end]
            piece = self.get(region)
            if piece is not None:
                return piece, end
            if _SD.fullmatch(region) is not None:
                return self._keep(region, structured_data_piece(structured_data(region))), end
        m = _SD.match(rest)
        if m is None:
            return None
        region = m.group()
        return self._keep(region, structured_data_piece(structured_data(region))), m.end()

    def _keep(self, region: bytes, piece: bytes) -> bytes:
        if len(self) >= CACHE_SIZE:
            self.clear()
        self[region] = piece
        return piece


class RFC5424Parser:
    """Parses one trimmed, valid UTF-8 frame; caches the encoded pieces of its fields."""

    def __init__(self, allow_skip_pri: bool) -> None:
        self._timestamps = RFC3339()
        self._pri_versions = _PriVersion(allow_skip_pri)
        self._hosts = FieldPieces("hostname", 255)
        self._apps = FieldPieces("appname", 48)
        self._procs = FieldPieces("proc_id", 128)
        self._msgids = FieldPieces("msg_id", 32)
        self._sd = _StructuredData()

    def parse(self, frame: bytes) -> Parsed | None:
        parts = frame.split(b" ", 6)
        if len(parts) != 7:
            return None
        pri_version, stamp, host, app, proc, msgid, rest = parts
        pri = self._pri_versions[pri_version]
        host_piece = self._hosts[host]
        app_piece = self._apps[app]
        proc_piece = self._procs[proc]
        msgid_piece = self._msgids[msgid]
        if pri is None or host_piece is None or app_piece is None or proc_piece is None or msgid_piece is None:
            return None
        if stamp == b"-":
            time_field = b""
        else:
            nanos = self._timestamps.nanos(stamp)
            if nanos is None:
                return None
            time_field = TIME_TAG + nanos.to_bytes(8, "little")
        first = rest[:1]
        if first == b"-":
            sd, tail = b"", rest[1:]
        elif first == b"[":
            found = self._sd.find(rest)
            if found is None:
                return None
            sd, tail = found[0], rest[found[1]:]
        else:
            return None
        message: bytes | None = None
        if tail:
            if tail[:1] != b" ":
                return None
            message = tail[1:]
            if message[:3] == _BOM:
                message = message[3:]
        return time_field, pri, host_piece, app_piece, proc_piece, msgid_piece, sd, message or None
