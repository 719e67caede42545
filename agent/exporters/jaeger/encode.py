"""Jaeger api_v2 protobuf pieces written by hand: typed tags, timestamps, varints.

`transcode` turns the OTLP encoding of an attribute into the Jaeger `KeyValue` encoding by
moving bytes (the two messages number their fields alike for scalar values); `key_value`
is the general path through the decoded `AnyValue`. What they write is what the generated
serializer writes for the same message (fields in order, defaults left out), which
`tests/unit/exporters/jaeger/test_translate.py` checks.
"""

from __future__ import annotations

import struct

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from agent.model.attrs import as_string
from agent.model.protowire import LENGTHS, SHORT, varint

# Field keys (field number << 3 | wire type) of the messages written here.
SPAN_TAG = b"\x42"  # Span.tags (8)
FIELD = b"\x12"  # Log.fields (2) and Process.tags (2): the same key
LOG = b"\x4a"  # Span.logs (9)
SPANS = b"\x0a"  # Batch.spans (1)

_DOUBLE = struct.Struct("<d")
_ZERO = bytes(8)


def length(n: int) -> bytes:
    return LENGTHS[n] if n < SHORT else varint(n)


#: The low 14 bits of a longer varint: two 7-bit groups, both with the continuation bit.
LOW14 = tuple(bytes((i & 0x7F | 0x80, i >> 7 | 0x80)) for i in range(1 << 14))


#: `Timestamp.nanos` of 2**28 (0.27 s) or more, the usual case, as two pieces:
#: `NANOS_LOW[n & 0x3FFF] + NANOS_HIGH[n >> 14]` is the field (key and 5-byte varint).
NANOS_LOW = tuple(b"\x10" + low for low in LOW14)
NANOS_HIGH = (b"",) * (1 << 14) + tuple(
    LOW14[high & 0x3FFF] + LENGTHS[high >> 14] for high in range(1 << 14, (999_999_999 >> 14) + 1))
#: For a duration `d` of 2**14 to 2**28 ns (16 µs to 268 ms), the usual case:
#: `SHORT_DURATION[d >> 14] + LOW14[d & 0x3FFF] + LENGTHS[d >> 14]` is the `Span.duration`
#: field (its key and length, and the `nanos` field of 3 or 4 varint bytes).
SHORT_DURATION = tuple(b"\x3a\x04\x10" if high < 0x80 else b"\x3a\x05\x10" for high in range(1 << 14))


def uvarint(n: int) -> bytes:
    """Varint of a non-negative int by table lookups (nanos fields are up to 5 bytes)."""
    if n < SHORT:
        return LENGTHS[n]
    if n < 1 << 28:
        return LOW14[n & 0x3FFF] + LENGTHS[n >> 14]
    if n < 1 << 42:
        return LOW14[n & 0x3FFF] + LOW14[(n >> 14) & 0x3FFF] + LENGTHS[n >> 28]
    return varint(n)


def _str(key: int, text: str) -> bytes:
    data = text.encode()
    return bytes((key,)) + length(len(data)) + data


def key_value(key: str, value: AnyValue | None) -> bytes:
    """The body of a Jaeger `KeyValue` for an OTLP attribute (without its field key and length)."""
    out = _str(0x0A, key) if key else b""
    kind = value.WhichOneof("value") if value is not None else None
    if kind == "string_value":
        assert value is not None
        return out + (_str(0x1A, value.string_value) if value.string_value else b"")
    if kind == "bool_value":
        assert value is not None
        return out + (b"\x10\x01\x20\x01" if value.bool_value else b"\x10\x01")
    if kind == "int_value":
        assert value is not None
        number = value.int_value
        return out + (b"\x10\x02\x28" + varint(number) if number else b"\x10\x02")
    if kind == "double_value":
        assert value is not None
        packed = _DOUBLE.pack(value.double_value)
        return out + (b"\x10\x03\x31" + packed if packed != _ZERO else b"\x10\x03")  # -0.0 is kept
    if kind == "bytes_value":
        assert value is not None
        data = value.bytes_value
        return out + (b"\x10\x04\x3a" + length(len(data)) + data if data else b"\x10\x04")
    if kind is None:
        return out
    assert value is not None
    return out + _str(0x1A, as_string(value))  # arrays and maps as JSON text


def transcode(raw: bytes, field: bytes) -> bytes | None:
    """The Jaeger `KeyValue` for an OTLP `KeyValue` encoding, with its `field` key and length,
    by moving bytes (the value fields of the two messages are numbered alike).

    Handles the common shape — a key and a string, bool, int, double or bytes value, each
    with a one-byte length — and returns None for anything else (arrays, maps, long
    values, unusual layouts), which `key_value` then decodes and encodes.
    """
    size = len(raw)
    if size < 5 or raw[0] != 0x0A or raw[1] > 0x7F:
        return None
    end = 2 + raw[1]  # after the key
    if size < end + 3 or raw[end] != 0x12 or raw[end + 1] != size - end - 2:
        return None
    kind = raw[end + 2]
    # The body is the key, then the value's header in Jaeger's numbering, then the value.
    if kind == 0x0A:  # string_value → v_str: `1a len text`, nothing when empty
        if raw[end + 3] != size - end - 4:
            return None
        if raw[end + 3]:
            return field + LENGTHS[size - 2] + raw[:end] + b"\x1a" + raw[end + 3:]
        return field + LENGTHS[end] + raw[:end]
    if kind == 0x21:  # double_value → v_float64: the same 8 bytes, nothing when 0.0
        if size != end + 11:
            return None
        if raw[end + 3:] != _ZERO:
            return field + LENGTHS[end + 11] + raw[:end] + b"\x10\x03\x31" + raw[end + 3:]
        return field + LENGTHS[end + 2] + raw[:end] + b"\x10\x03"
    if kind == 0x18:  # int_value → v_int64: the same varint, nothing when 0
        payload = raw[end + 3:]
        if payload[-1] > 0x7F or (len(payload) > 1 and min(payload[:-1]) < 0x80):
            return None
        if payload != b"\x00":
            return field + LENGTHS[size] + raw[:end] + b"\x10\x02\x28" + payload
        return field + LENGTHS[end + 2] + raw[:end] + b"\x10\x02"
    if kind == 0x10:  # bool_value → v_bool
        payload = raw[end + 3:]
        if payload == b"\x01":
            return field + LENGTHS[end + 4] + raw[:end] + b"\x10\x01\x20\x01"
        return field + LENGTHS[end + 2] + raw[:end] + b"\x10\x01" if payload == b"\x00" else None
    if kind == 0x3A:  # bytes_value → v_binary
        if raw[end + 3] != size - end - 4:
            return None
        if raw[end + 3]:
            return field + LENGTHS[size] + raw[:end] + b"\x10\x04\x3a" + raw[end + 3:]
        return field + LENGTHS[end + 2] + raw[:end] + b"\x10\x04"
    return None


def value_head(raw: bytes, field: bytes) -> tuple[bytes, bytes, int, int] | None:
    """What turns every attribute shaped like `raw` into its Jaeger encoding by one
    concatenation: (prefix, head, cut, size) such that an OTLP `KeyValue` encoding of `size`
    bytes that begins with `prefix` is `head + encoding[cut:]` as `transcode` writes it.

    For a non-empty string value (`prefix` is the encoding up to the value's text, its
    length included) and a double whose first byte is not 0 (`prefix` takes that byte too,
    so a value of 0.0, written differently, never matches); None for anything else.
    """
    size = len(raw)
    if size < 6 or raw[0] != 0x0A or raw[1] > 0x7F:
        return None
    end = 2 + raw[1]  # after the key
    if size < end + 4 or raw[end] != 0x12 or raw[end + 1] != size - end - 2:
        return None
    kind, first = raw[end + 2], raw[end + 3]
    if kind == 0x0A and first and first == size - end - 4:
        return raw[:end + 4], field + LENGTHS[size - 2] + raw[:end] + b"\x1a" + raw[end + 3:end + 4], end + 4, size
    if kind == 0x21 and first and size == end + 11:
        return raw[:end + 4], field + LENGTHS[end + 11] + raw[:end] + b"\x10\x03\x31", end + 3, size
    return None


def tag(field: bytes, key: str, value: str | bool | int | float) -> bytes:
    """One typed tag built from a Python value, with its field key and length."""
    any_value = AnyValue()
    if isinstance(value, bool):
        any_value.bool_value = value
    elif isinstance(value, int):
        any_value.int_value = value
    elif isinstance(value, float):
        any_value.double_value = value
    else:
        any_value.string_value = value
    body = key_value(key, any_value)
    return field + length(len(body)) + body


def timestamp(ns: int) -> bytes:
    """A `google.protobuf.Timestamp` body (seconds, nanos) for Unix nanoseconds."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    out = b"\x08" + varint(seconds) if seconds else b""
    return out + b"\x10" + uvarint(nanos) if nanos else out


def duration(ns: int) -> bytes:
    """A `google.protobuf.Duration` body; seconds and nanos share the sign of `ns`."""
    if ns < 0:
        seconds, nanos = divmod(-ns, 1_000_000_000)
        seconds, nanos = -seconds, -nanos
    else:
        seconds, nanos = divmod(ns, 1_000_000_000)
    out = b"\x08" + varint(seconds) if seconds else b""
    return out + b"\x10" + varint(nanos) if nanos else out
