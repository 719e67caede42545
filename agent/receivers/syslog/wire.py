"""Protobuf wire encoding of OTLP log requests, written by hand for the syslog receiver.

Building `LogRecord`s field by field through the protobuf runtime costs about 8 µs a record
with ten attributes, which alone would cap a receiver near 100 k records/s. Most of a
syslog record repeats from one message to the next (the PRI, host and app attributes, the
structured data), so the receiver encodes those pieces once, caches the bytes, and joins
them per message; only the timestamps, the body and the `message` attribute are new each
time. The result is an `ExportLogsServiceRequest` encoding that the protobuf runtime (and
every OTLP peer) parses as usual; the tests check it that way.

Field numbers are those of `opentelemetry/proto/logs/v1/logs.proto`,
`common/v1/common.proto` and `collector/logs/v1/logs_service.proto`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from agent.model import protowire

# The wire basics are shared with the remote-write encoder; this package reaches them here.
varint = protowire.varint
length = protowire.length
delimited = protowire.delimited
LENGTHS = protowire.LENGTHS
_SHORT = protowire.SHORT

# Tags (field number << 3 | wire type) used below.
_LEN_FIELD_1 = 0x0A  # length-delimited field 1
_LEN_FIELD_2 = 0x12  # length-delimited field 2
TIME_TAG = b"\x09"  # LogRecord.time_unix_nano, fixed64 field 1
OBSERVED_TIME_TAG = b"\x59"  # LogRecord.observed_time_unix_nano, fixed64 field 11
SEVERITY_NUMBER_TAG = 0x10  # LogRecord.severity_number, varint field 2
SEVERITY_TEXT_TAG = 0x1A  # LogRecord.severity_text, field 3
BODY_TAG = b"\x2a"  # LogRecord.body (AnyValue), field 5
ATTRIBUTE_TAG = b"\x32"  # LogRecord.attributes (KeyValue), field 6
RECORD_TAG = b"\x12"  # ScopeLogs.log_records, field 2
STRING_VALUE_TAG = b"\x0a"  # AnyValue.string_value, field 1
_INT_VALUE_TAG = 0x18  # AnyValue.int_value, varint field 3
_KVLIST_VALUE_TAG = 0x32  # AnyValue.kvlist_value, field 6


def string_value(value: str | bytes) -> bytes:
    """An `AnyValue` holding a string."""
    raw = value.encode() if isinstance(value, str) else value
    return delimited(_LEN_FIELD_1, raw)


def int_value(value: int) -> bytes:
    """An `AnyValue` holding an int64."""
    return bytes((_INT_VALUE_TAG,)) + varint(value)


def key_value(key: str, any_value: bytes) -> bytes:
    """A `KeyValue` message (without its own tag)."""
    return delimited(_LEN_FIELD_1, key.encode()) + delimited(_LEN_FIELD_2, any_value)


def string_entry(key: bytes, value: bytes) -> bytes:
    """A `KeyValueList.values` entry holding the string `value` (both UTF-8 bytes)."""
    nk, nv = len(key), len(value)
    if nk + nv < 122:  # every length fits in one byte
        return b"\x0a%c\x0a%c%b\x12%c\x0a%c%b" % (nk + nv + 6, nk, key, nv + 2, nv, value)
    return entry(key, delimited(_LEN_FIELD_1, value))


def entry(key: bytes, any_value: bytes) -> bytes:
    """A `KeyValueList.values` entry: `key` (UTF-8 bytes) → an encoded `AnyValue`."""
    nk, nv = len(key), len(any_value)
    if nk + nv < 124:  # every length below fits in one byte
        return b"\x0a%c\x0a%c%b\x12%c%b" % (nk + nv + 4, nk, key, nv, any_value)
    kv = delimited(_LEN_FIELD_1, key) + delimited(_LEN_FIELD_2, any_value)
    return delimited(_LEN_FIELD_1, kv)


def kvlist(entries: bytes) -> bytes:
    """An `AnyValue` holding a `KeyValueList` of encoded entries (see `entry`)."""
    return delimited(_KVLIST_VALUE_TAG, entries)


def attribute(key: str, any_value: bytes) -> bytes:
    """One `LogRecord.attributes` entry."""
    kv = key_value(key, any_value)
    return ATTRIBUTE_TAG + length(len(kv)) + kv


def string_attribute(key: str, value: str | bytes) -> bytes:
    return attribute(key, string_value(value))


def int_attribute(key: str, value: int) -> bytes:
    return attribute(key, int_value(value))


def string_attributes(attrs: Mapping[str, str]) -> bytes:
    """Several string attributes, encoded back to back."""
    return b"".join(string_attribute(k, v) for k, v in attrs.items())


class PrefixTable(dict[int, bytes]):
    """Bytes that depend only on a length (`prefix(n)`), computed on first use.

    Lengths below 16 KiB are kept (at most 16 K small entries; in practice the few hundred
    message sizes senders use), longer ones are computed each time.
    """

    def __init__(self, prefix: Callable[[int], bytes]) -> None:
        super().__init__()
        self._prefix = prefix

    def __missing__(self, n: int) -> bytes:
        value = self._prefix(n)
        if n < _SHORT:
            self[n] = value
        return value


def _body_prefix(n: int) -> bytes:
    inner = length(n)
    return BODY_TAG + length(n + 1 + len(inner)) + STRING_VALUE_TAG + inner


def _record_prefix(n: int) -> bytes:
    return RECORD_TAG + length(n)


#: `BODY_PREFIXES[len(text)] + text` is the body field of a string; `RECORD_PREFIXES[len(r)] + r`
#: the `log_records` field of an encoded record.
BODY_PREFIXES = PrefixTable(_body_prefix)
RECORD_PREFIXES = PrefixTable(_record_prefix)


def body(text: bytes) -> bytes:
    """`LogRecord.body` holding the string `text` (UTF-8)."""
    n = len(text)
    inner = LENGTHS[n] if n < _SHORT else varint(n)
    return BODY_TAG + length(n + 1 + len(inner)) + STRING_VALUE_TAG + inner + text


def timestamp(field_tag: bytes, nanos: int) -> bytes:
    """A fixed64 timestamp field."""
    return field_tag + nanos.to_bytes(8, "little")


def resource_prefix(resource: Mapping[str, str]) -> bytes:
    """`ResourceLogs.resource` (empty when there are no resource attributes)."""
    if not resource:
        return b""
    attrs = b"".join(delimited(_LEN_FIELD_1, key_value(k, string_value(v))) for k, v in resource.items())
    return delimited(_LEN_FIELD_1, attrs)


def request(resource: bytes, records: list[bytes]) -> bytes:
    """An `ExportLogsServiceRequest` with one resource and one (unnamed) scope.

    `resource` comes from `resource_prefix()`; each record is a `log_records` field
    (`RECORD_TAG`, length, `LogRecord`).
    """
    scope_logs = b"".join(records)
    resource_logs = resource + bytes((_LEN_FIELD_2,)) + length(len(scope_logs)) + scope_logs
    return bytes((_LEN_FIELD_1,)) + length(len(resource_logs)) + resource_logs
