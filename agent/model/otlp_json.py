"""OTLP/JSON: the protobuf JSON mapping with the OTLP exceptions.

OTLP/JSON differs from the standard mapping in that trace and span ids are lower-case hex
(not base64) and enums are integers. Keys are lowerCamelCase on output; on input both
lowerCamelCase and the proto field names are accepted, and unknown fields are ignored as
the specification asks of receivers.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec
from google.protobuf import json_format

from agent.model.batch import REQUEST_TYPES, Request, Signal

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
_json_decoder = msgspec.json.Decoder()
_json_encoder = msgspec.json.Encoder()


class OTLPJSONError(ValueError):
    """The document is not valid OTLP/JSON; the message says where."""


def _ids_to_hex(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            elif isinstance(value, (dict, list)):
                _ids_to_hex(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                _ids_to_hex(item)


def _ids_to_base64(node: Any, path: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    raw = bytes.fromhex(value)
                except ValueError:
                    raise OTLPJSONError(f"{path}.{key}: expected a hex id, got {value[:40]!r}") from None
                node[key] = base64.b64encode(raw).decode()
            elif isinstance(value, (dict, list)):
                _ids_to_base64(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, (dict, list)):
                _ids_to_base64(item, f"{path}[{i}]")


def to_dict(message: Request) -> dict[str, Any]:
    """The OTLP/JSON object of a message (hex ids, integer enums, lowerCamelCase keys)."""
    doc: dict[str, Any] = json_format.MessageToDict(message, use_integers_for_enums=True)
    _ids_to_hex(doc)
    return doc


def encode(message: Request) -> bytes:
    """OTLP/JSON bytes of an export request (one line, no trailing newline)."""
    return _json_encoder.encode(to_dict(message))


def decode(signal: Signal, data: bytes | str) -> Request:
    """Parse an OTLP/JSON export request; raises `OTLPJSONError` with a readable reason."""
    try:
        doc = _json_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise OTLPJSONError(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise OTLPJSONError(f"expected a JSON object, got {type(doc).__name__}")
    _ids_to_base64(doc, "$")
    message = REQUEST_TYPES[signal]()
    try:
        json_format.ParseDict(doc, message, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, TypeError, ValueError) as exc:
        raise OTLPJSONError(str(exc)) from None
    return message
