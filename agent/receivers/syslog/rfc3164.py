"""RFC 3164 (BSD syslog) messages → the encoded pieces of a log record.

`<PRI>TIMESTAMP SP HOSTNAME SP TAG[PID]: MSG` (RFC 3164 §4.1), read the way real senders
write it:

- TIMESTAMP is `Mmm dd hh:mm:ss` (day space-padded or not, optional fraction) in the
  configured `location`, with the year inferred (see `timestamps.py`), or an ISO 8601 /
  RFC 3339 timestamp (rsyslog's `RSYSLOG_ForwardFormat`, many devices), or missing
  (Python's `SysLogHandler` sends none);
- HOSTNAME may be missing: a first word that is itself a `tag:` is taken as the tag;
  without a timestamp no hostname is looked for;
- TAG[PID] is split into `appname` and `proc_id`; without a `tag:` the whole rest is the
  message;
- the PRI may be missing when `allow_skip_pri_header` is set.

Only a missing or invalid PRI (when required) and a timestamp that looks like one but is
not a valid date make a message fail to parse.
"""

from __future__ import annotations

import re
from datetime import tzinfo

from agent.receivers.syslog.attributes import FieldPieces, PriorityPieces
from agent.receivers.syslog.rfc5424 import Parsed
from agent.receivers.syslog.timestamps import RFC3339, Stamp
from agent.receivers.syslog.wire import TIME_TAG

_STAMP = re.compile(rb"([A-Z][a-z]{2}) ( ?\d{1,2}) (\d\d:\d\d:\d\d)(\.\d{1,9})?(?= |\Z)")
_TAG = re.compile(rb"([^ \[\]:]{1,48})(?:\[([^ \[\]]{1,128})\])?:")


class RFC3164Parser:
    """Parses one trimmed, valid UTF-8 frame; caches the encoded pieces of its fields."""

    def __init__(self, allow_skip_pri: bool, zone: tzinfo, stamp: Stamp | None = None) -> None:
        self._allow_skip_pri = allow_skip_pri
        self._stamp = stamp if stamp is not None else Stamp(zone)
        self._iso = RFC3339(local=zone)
        self._priorities = PriorityPieces(allow_skip_pri)
        self._hosts = FieldPieces("hostname", 255, empty_is_absent=True)
        self._apps = FieldPieces("appname", 48, empty_is_absent=True)
        self._procs = FieldPieces("proc_id", 128, empty_is_absent=True)

    def parse(self, frame: bytes) -> Parsed | None:
        if frame[:1] == b"<":
            close = frame.find(b">", 1, 5)
            if close < 0:
                return None
            pri, pos = self._priorities[frame[1:close]], close + 1
            if pri is None or close == 1:
                return None
        elif self._allow_skip_pri:
            pri, pos = b"", 0
        else:
            return None
        time_field, pos = self._timestamp(frame, pos)
        if time_field is None:
            return None
        rest = frame[pos:]
        host = b""
        if time_field and rest:
            tag = _TAG.match(rest)
            if tag is None or rest[tag.end():tag.end() + 1] not in (b" ", b""):
                host, _, rest = rest.partition(b" ")
        tag = _TAG.match(rest)
        if tag is not None:
            app, proc = tag.group(1), tag.group(2) or b""
            rest = rest[tag.end():]
            if rest[:1] == b" ":
                rest = rest[1:]
        else:
            app = proc = b""
        host_piece, app_piece, proc_piece = self._hosts[host], self._apps[app], self._procs[proc]
        if host_piece is None or app_piece is None or proc_piece is None:
            return None
        return time_field, pri, host_piece, app_piece, proc_piece, b"", b"", rest or None

    def _timestamp(self, frame: bytes, pos: int) -> tuple[bytes | None, int]:
        """(time field or b"" when there is no timestamp or None when it is invalid, position after it)."""
        m = _STAMP.match(frame, pos)
        if m is not None:
            nanos = self._stamp.nanos(m.group(1), m.group(2), m.group(3), m.group(4) or b"")
            end = m.end()
        elif frame[pos:pos + 4].isdigit() and frame[pos + 4:pos + 5] == b"-":
            end = frame.find(b" ", pos)
            if end < 0:
                end = len(frame)
            nanos = self._iso.nanos(frame[pos:end])
        else:
            return b"", pos
        if nanos is None:
            return None, pos
        if frame[end:end + 1] == b" ":
            end += 1
        return TIME_TAG + nanos.to_bytes(8, "little"), end
