"""Protobuf wire-format pieces for the few hot paths that write bytes by hand.

The syslog receiver writes `ExportLogsServiceRequest` bytes and the remote-write exporter
writes `WriteRequest` bytes directly, because building messages through the protobuf API
costs several times more. Both check their output against the generated messages in tests.
"""

from __future__ import annotations


def varint(n: int) -> bytes:
    """Base-128 varint; negative numbers as 64-bit two's complement (as int64 fields are)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


#: Varints of every length below 16 KiB, so that hot paths only index a tuple.
LENGTHS: tuple[bytes, ...] = tuple(varint(i) for i in range(1 << 14))
SHORT = len(LENGTHS)


def length(n: int) -> bytes:
    """The varint of a length."""
    return LENGTHS[n] if n < SHORT else varint(n)


def delimited(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (`tag`, the field's key byte, below 128)."""
    return bytes((tag,)) + length(len(payload)) + payload
