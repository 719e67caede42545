"""What the Collector's syslog parser puts on a log record, pre-encoded (see `wire.py`).

From the PRI (RFC 5424 §6.2.1, RFC 3164 §4.1.1): `priority` (int), `facility` (int),
`facility_text` (the RFC 5427 keyword), severity number and text. The severity becomes the
record's severity, not an attribute, exactly as the Collector does it:

| PRI severity | severity_text | OTLP severity_number |
| --- | --- | --- |
| 0 emergency | `emerg` | FATAL (21) |
| 1 alert | `alert` | ERROR3 (19) |
| 2 critical | `crit` | ERROR2 (18) |
| 3 error | `err` | ERROR (17) |
| 4 warning | `warning` | WARN (13) |
| 5 notice | `notice` | INFO2 (10) |
| 6 informational | `info` | INFO (9) |
| 7 debug | `debug` | DEBUG (5) |

A message without a PRI (`allow_skip_pri_header`) has none of these. From the header:
`version` (int, RFC 5424 only), `hostname`, `appname`, `proc_id`, `msg_id` (strings, left out
when NILVALUE), and `structured_data` (a map from SD-ID to a map of parameter strings).
"""

from __future__ import annotations

from agent.receivers.syslog import wire

#: PRI severity → (OTLP severity number, the Collector's severity text).
SEVERITIES: tuple[tuple[int, str], ...] = (
    (21, "emerg"),
    (19, "alert"),
    (18, "crit"),
    (17, "err"),
    (13, "warning"),
    (10, "notice"),
    (9, "info"),
    (5, "debug"),
)

#: PRI facility → keyword (RFC 5427 §3, as go-syslog names them).
FACILITIES: tuple[str, ...] = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
    "uucp", "cron", "authpriv", "ftp", "ntp", "security", "console", "cron2",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)

MAX_PRIORITY = 191  # facility 23, severity 7


def _pri_piece(priority: int) -> bytes:
    facility, severity = divmod(priority, 8)
    number, text = SEVERITIES[severity]
    return (
        bytes((wire.SEVERITY_NUMBER_TAG,)) + wire.varint(number)
        + wire.delimited(wire.SEVERITY_TEXT_TAG, text.encode())
        + wire.int_attribute("priority", priority)
        + wire.int_attribute("facility", facility)
        + wire.string_attribute("facility_text", FACILITIES[facility])
    )


#: Severity fields and PRI attributes of every valid priority, encoded.
PRI_PIECES: tuple[bytes, ...] = tuple(_pri_piece(p) for p in range(MAX_PRIORITY + 1))


def parse_priority(digits: bytes) -> int | None:
    """The PRI value of the digits between `<` and `>`, or None when not a valid PRI."""
    if not digits or len(digits) > 3 or not digits.isdigit():
        return None
    value = int(digits)
    return value if value <= MAX_PRIORITY else None


#: Entries per field cache; a full cache is emptied (cheap to refill, bounded memory).
CACHE_SIZE = 8192


class FieldPieces(dict[bytes, "bytes | None"]):
    """The encoded string attribute of a header field, by the field's bytes, computed once.

    NILVALUE `-` (and, with `empty_is_absent`, an empty value) gives b"" (no attribute); a
    value longer than `limit` or empty gives None (the message does not parse).
    """

    def __init__(self, name: str, limit: int, *, empty_is_absent: bool = False) -> None:
        super().__init__()
        self._name = name
        self._limit = limit
        self._empty_is_absent = empty_is_absent

    def __missing__(self, value: bytes) -> bytes | None:
        if len(self) >= CACHE_SIZE:
            self.clear()
        piece: bytes | None
        if value == b"-" or (not value and self._empty_is_absent):
            piece = b""
        elif not value or len(value) > self._limit:
            piece = None
        else:
            piece = wire.string_attribute(self._name, value)
        self[value] = piece
        return piece


class PriorityPieces(dict[bytes, "bytes | None"]):
    """Severity fields and PRI attributes by the digits between `<` and `>`.

    b"" (no PRI) gives b"" when `allow_missing`, else None; an invalid PRI gives None.
    """

    def __init__(self, allow_missing: bool) -> None:
        super().__init__()
        self._allow_missing = allow_missing

    def __missing__(self, digits: bytes) -> bytes | None:
        if len(self) >= CACHE_SIZE:
            self.clear()
        if not digits:
            piece = b"" if self._allow_missing else None
        else:
            priority = parse_priority(digits)
            piece = PRI_PIECES[priority] if priority is not None else None
        self[digits] = piece
        return piece


_MESSAGE_KEY = wire.delimited(0x0A, b"message")


def _message_prefix(n: int) -> bytes:
    value = wire.STRING_VALUE_TAG + wire.length(n)
    kv = _MESSAGE_KEY + b"\x12" + wire.length(len(value) + n) + value
    return wire.ATTRIBUTE_TAG + wire.length(len(kv) + n) + kv


#: `MESSAGE_PREFIXES[len(text)] + text` is the `message` attribute holding `text`.
MESSAGE_PREFIXES = wire.PrefixTable(_message_prefix)


def message_attribute(text: bytes) -> bytes:
    """The `message` attribute holding `text`."""
    return MESSAGE_PREFIXES[len(text)] + text


_STRUCTURED_DATA_KEY = wire.delimited(0x0A, b"structured_data")


def structured_data_piece(elements: list[tuple[bytes, dict[bytes, bytes]]]) -> bytes:
    """The `structured_data` attribute: [(SD-ID, {param name → value})], UTF-8 bytes, each
    SD-ID once. (Messages often carry structured data of their own, so this is a hot path:
    small pieces are formatted in one step when every length fits in one byte.)"""
    if not elements:
        return b""
    body = []
    for sd_id, params in elements:
        entries = []
        for name, value in params.items():
            nk, nv = len(name), len(value)
            if nk + nv < 122:
                entries.append(b"\x0a%c\x0a%c%b\x12%c\x0a%c%b" % (nk + nv + 6, nk, name, nv + 2, nv, value))
            else:
                entries.append(wire.string_entry(name, value))
        inner = b"".join(entries)
        ni, nid = len(inner), len(sd_id)
        if nid + ni < 122:
            body.append(b"\x0a%c\x0a%c%b\x12%c\x32%c%b" % (nid + ni + 6, nid, sd_id, ni + 2, ni, inner))
        else:
            body.append(wire.entry(sd_id, wire.kvlist(inner)))
    joined = b"".join(body)
    n = len(joined)
    if n < 107:
        return b"\x32%c\x0a\x0fstructured_data\x12%c\x32%c%b" % (n + 21, n + 2, n, joined)
    value = wire.kvlist(joined)
    kv = _STRUCTURED_DATA_KEY + b"\x12" + wire.length(len(value)) + value
    return wire.ATTRIBUTE_TAG + wire.length(len(kv)) + kv
