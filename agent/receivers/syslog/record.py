"""Syslog frames → one encoded OTLP `ExportLogsServiceRequest` (see `wire.py`).

Per frame, as the Collector's TCP/UDP input and syslog parser do it: leading and trailing
whitespace (and NULs) are trimmed unless `preserve_*_whitespaces` says otherwise; invalid
UTF-8 is replaced with U+FFFD, never dropped; the frame is parsed as RFC 5424, RFC 3164,
or — with `protocol: auto` — as RFC 5424 when a VERSION follows the PRI and RFC 3164
otherwise (or when it fails as RFC 5424). A frame that does not parse is, with
`on_error: send`, a record whose body is the frame and that has no other field; with
`drop`, it is not passed on. Each record gets the observed time, the configured static
attributes and the transport's `net.*` attributes (`tail`).

The log record (attribute names and types are the Collector's; see `attributes.py`):

| field | value |
| --- | --- |
| `time_unix_nano` | header timestamp (absent for NILVALUE or no timestamp) |
| `observed_time_unix_nano` | when the receiver read the data |
| `severity_number`, `severity_text` | from the PRI severity |
| `body` | the frame as a string |
| `attributes` | `priority`, `facility`, `facility_text`, `version`, `hostname`, `appname`, `proc_id`, `msg_id`, `message`, `structured_data`, static `attributes`, `net.*` |
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agent.receivers.syslog import SyslogConfig, wire
from agent.receivers.syslog.attributes import MESSAGE_PREFIXES
from agent.receivers.syslog.rfc3164 import RFC3164Parser
from agent.receivers.syslog.rfc5424 import Parsed, RFC5424Parser, looks_like
from agent.receivers.syslog.timestamps import Stamp

#: Bytes the Collector's trimming removes (ASCII whitespace), plus NUL.
_WHITESPACE = b" \t\n\r\x0b\x0c\0"


@dataclass
class Encoded:
    """The log records of some frames: each a `log_records` field ready for `wire.request`."""

    records: list[bytes]
    #: Frames that did not parse and were passed on raw (`on_error: send`).
    unparsed: int = 0
    #: Frames that did not parse and were dropped (`on_error: drop`).
    dropped: int = 0


def _valid_utf8(frame: bytes) -> bytes:
    try:
        frame.decode()
    except UnicodeDecodeError:
        return frame.decode(errors="replace").encode()
    return frame


class RecordEncoder:
    """Encodes frames of one receiver; keeps the parsers' caches between calls."""

    def __init__(self, config: SyslogConfig, *, preserve_leading: bool = False,
                 preserve_trailing: bool = False, stamp: Stamp | None = None) -> None:
        zone = zoneinfo.ZoneInfo(config.location)
        self._rfc5424 = RFC5424Parser(config.allow_skip_pri_header)
        self._rfc3164 = RFC3164Parser(config.allow_skip_pri_header, zone, stamp)
        self._parse: Callable[[bytes], Parsed | None] = {
            "rfc5424": self._rfc5424.parse,
            "rfc3164": self._rfc3164.parse,
            "auto": self._parse_auto,
        }[config.protocol]
        self._drop = config.on_error.startswith("drop")
        self._static = wire.string_attributes(config.static_attributes)
        self._resource = wire.resource_prefix(config.resource_attributes)
        #: None: strip both ends (the usual case, inlined in `encode`).
        self._trim: Callable[[bytes], bytes] | None = None
        if preserve_leading and preserve_trailing:
            self._trim = bytes
        elif preserve_leading:
            self._trim = lambda frame: frame.rstrip(_WHITESPACE)
        elif preserve_trailing:
            self._trim = lambda frame: frame.lstrip(_WHITESPACE)

    def tail(self, observed_nanos: int, transport_attributes: bytes = b"") -> bytes:
        """What every record of one read ends with: observed time, static and `net.*` attributes."""
        return wire.timestamp(wire.OBSERVED_TIME_TAG, observed_nanos) + self._static + transport_attributes

    def encode(self, frames: Iterable[bytes], tail: bytes) -> Encoded:
        """The records of `frames` (empty frames are skipped and not counted)."""
        out = Encoded([])
        append = out.records.append
        parse, trim = self._parse, self._trim
        bodies, records, messages = wire.BODY_PREFIXES, wire.RECORD_PREFIXES, MESSAGE_PREFIXES
        for raw in frames:
            frame = raw.strip(_WHITESPACE) if trim is None else trim(raw)
            if not frame:
                continue
            if not frame.isascii():
                frame = _valid_utf8(frame)
            parsed = parse(frame)
            if parsed is None:
                if self._drop:
                    out.dropped += 1
                    continue
                out.unparsed += 1
                record = b"".join((bodies[len(frame)], frame, tail))
            else:
                time_field, pri, host, app, proc, msgid, sd, message = parsed
                if message is None:
                    record = b"".join((time_field, pri, host, app, proc, msgid, sd, bodies[len(frame)], frame, tail))
                else:
                    record = b"".join((time_field, pri, host, app, proc, msgid, sd, messages[len(message)], message,
                                       bodies[len(frame)], frame, tail))
            append(records[len(record)] + record)
        return out

    def request(self, records: list[bytes]) -> bytes:
        """The `ExportLogsServiceRequest` holding `records` (from `encode`)."""
        return wire.request(self._resource, records)

    def _parse_auto(self, frame: bytes) -> Parsed | None:
        start = 0
        if frame[:1] == b"<":
            start = frame.find(b">", 1, 5) + 1
        if start or frame[:1] != b"<":
            if looks_like(frame, start):
                parsed = self._rfc5424.parse(frame)
                if parsed is not None:
                    return parsed
        return self._rfc3164.parse(frame)
