"""The tail-sampling buffer's storage: spans as encoded bytes, grouped by resource and scope.

Each buffered span is kept as its `ScopeSpans.spans` field exactly as it appears on the wire
(key byte, length, the span's encoding). Each group is keyed by two byte strings computed
once per incoming resource and scope: the resource part (`ResourceSpans` fields 1 and 3:
resource and schema URL) and the scope part (`ScopeSpans` fields 1 and 3). A request is
then rebuilt by concatenation alone, which costs far less than building protobuf messages
and holds a span in about its encoded size plus one Python bytes header.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agent.model.protowire import LENGTHS, SHORT, delimited, length, varint

#: (resource part, scope part).
GroupKey = tuple[bytes, bytes]
Groups = dict[GroupKey, list[bytes]]

_FIELD1 = 0x0A  # ResourceSpans.resource / ScopeSpans.scope / ExportTraceServiceRequest.resource_spans
_FIELD2 = 0x12  # ResourceSpans.scope_spans / ScopeSpans.spans
_FIELD3 = 0x1A  # schema_url / InstrumentationScope.attributes


def resource_part(rs: Any) -> bytes:
    part = delimited(_FIELD1, rs.resource.SerializeToString())
    if rs.schema_url:
        part += delimited(_FIELD3, rs.schema_url.encode())
    return part


def scope_part(ss: Any) -> bytes:
    part = delimited(_FIELD1, ss.scope.SerializeToString())
    if ss.schema_url:
        part += delimited(_FIELD3, ss.schema_url.encode())
    return part


def framed_span(data: bytes) -> bytes:
    """The span's encoding as a `ScopeSpans.spans` field."""
    n = len(data)
    return b"\x12" + (LENGTHS[n] if n < SHORT else varint(n)) + data


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + length(len(payload)) + payload


def request_bytes(groups: Iterable[tuple[GroupKey, list[bytes]]]) -> bytes:
    """An `ExportTraceServiceRequest` holding the groups, one ResourceSpans per resource part."""
    by_resource: dict[bytes, list[bytes]] = {}
    for (res, scope), spans in groups:
        scope_spans = scope + b"".join(spans)
        entry = b"\x12" + length(len(scope_spans)) + scope_spans
        found = by_resource.get(res)
        if found is None:
            by_resource[res] = [entry]
        else:
            found.append(entry)
    out = []
    for res, entries in by_resource.items():
        rs = res + b"".join(entries)
        out.append(b"\x0a" + length(len(rs)) + rs)
    return b"".join(out)


def _string_attribute(key: str, value: str) -> bytes:
    any_value = _field(b"\x0a", value.encode())  # AnyValue.string_value
    kv = _field(b"\x0a", key.encode()) + _field(b"\x12", any_value)  # KeyValue.key, .value
    return _field(b"\x1a", kv)  # InstrumentationScope.attributes


def with_scope_attributes(scope: bytes, attrs: list[tuple[str, str]]) -> bytes:
    """The scope part with string attributes appended to its InstrumentationScope."""
    # scope = 0x0A, varint length, scope bytes, then the optional schema URL field.
    n, pos = 0, 1
    shift = 0
    while True:
        b = scope[pos]
        n |= (b & 0x7F) << shift
        pos += 1
        shift += 7
        if not b & 0x80:
            break
    body, tail = scope[pos:pos + n], scope[pos + n:]
    extra = b"".join(_string_attribute(k, v) for k, v in attrs)
    return delimited(_FIELD1, body + extra) + tail
