"""Regroup one batch into pieces that share a key: a trace id, or something of the resource.

`split_by_trace_id` gives one piece per trace id (spans, or log records by their trace id),
so that a Kafka message keyed by trace id holds exactly that trace's items.
`group_by_resource` gives one piece per distinct key computed from each resource (a topic
named by a resource attribute, a hash of the resource's attributes).

Pieces keep the request's shape: each piece carries a copy of every resource and scope it
holds items of (with their `schema_url`), items keep their order, and pieces come in the
order their key first appears. When every item already shares one key the batch comes
back as it is — unparsed bytes stay valid, so nothing is encoded again. The input batch is
never changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from agent.model.batch import Batch, Request, Signal, new_request

__all__ = ["group_by_resource", "resource_attributes_hash", "split_by_trace_id"]

K = TypeVar("K", bound=Hashable)

#: (resources, scopes, items) field names of the signals whose items carry a trace id.
_TRACE_FIELDS = {
    Signal.TRACES: ("resource_spans", "scope_spans", "spans"),
    Signal.LOGS: ("resource_logs", "scope_logs", "log_records"),
}
_RESOURCE_FIELDS = {
    Signal.TRACES: "resource_spans",
    Signal.METRICS: "resource_metrics",
    Signal.LOGS: "resource_logs",
}


class _Piece:
    __slots__ = ("count", "request", "resource", "resource_index")

    def __init__(self, signal: Signal) -> None:
        self.request: Request = new_request(signal)
        self.count = 0
        self.resource: Any = None
        self.resource_index = -1


def split_by_trace_id(batch: Batch) -> list[tuple[bytes, Batch]]:
    """`(trace id, piece)` pairs of a traces or logs batch; items without one share `b""`.

    An empty batch gives no pieces; a batch of one trace comes back whole.
    """
    fields = _TRACE_FIELDS.get(batch.signal)
    if fields is None:
        raise ValueError(f"{batch.signal.value} items carry no trace id")
    resources_field, scopes_field, items_field = fields
    message = batch.message
    only = _only_trace_id(message, fields)
    if only is not None:
        return [(only, batch)] if batch.items else []
    pieces: dict[bytes, _Piece] = {}
    for ri, res in enumerate(getattr(message, resources_field)):
        for scope in getattr(res, scopes_field):
            groups: dict[bytes, list[Any]] = {}
            for item in getattr(scope, items_field):
                groups.setdefault(item.trace_id, []).append(item)
            for trace_id, items in groups.items():
                piece = pieces.get(trace_id)
                if piece is None:
                    piece = pieces[trace_id] = _Piece(batch.signal)
                if piece.resource_index != ri:
                    piece.resource = _copy_resource_shell(res, piece.request, resources_field)
                    piece.resource_index = ri
                out_scope = getattr(piece.resource, scopes_field).add()
                if scope.HasField("scope"):
                    out_scope.scope.CopyFrom(scope.scope)
                out_scope.schema_url = scope.schema_url
                getattr(out_scope, items_field).extend(items)
                piece.count += len(items)
    return [
        (trace_id, Batch(batch.signal, p.request, items=p.count, client=batch.client))
        for trace_id, p in pieces.items()
    ]


def _only_trace_id(message: Request, fields: tuple[str, str, str]) -> bytes | None:
    """The trace id every item shares (`b""` for an empty batch), or None when they differ."""
    resources_field, scopes_field, items_field = fields
    seen: bytes | None = None
    for res in getattr(message, resources_field):
        for scope in getattr(res, scopes_field):
            for item in getattr(scope, items_field):
                trace_id = item.trace_id
                if seen is None:
                    seen = trace_id
                elif trace_id != seen:
                    return None
    return b"" if seen is None else seen


def _copy_resource_shell(res: Any, request: Request, resources_field: str) -> Any:
    out = getattr(request, resources_field).add()
    if res.HasField("resource"):
        out.resource.CopyFrom(res.resource)
    out.schema_url = res.schema_url
    return out


def group_by_resource(batch: Batch, key: Callable[[Resource], K]) -> list[tuple[K, Batch]]:
    """`(key, piece)` pairs: resources whose `key(resource)` is equal travel together.

    Works for every signal. A batch whose resources all share one key comes back whole.
    """
    resources = getattr(batch.message, _RESOURCE_FIELDS[batch.signal])
    keys = [key(res.resource) for res in resources]
    if len(set(keys)) <= 1:
        return [(keys[0], batch)] if keys else []
    pieces: dict[K, Request] = {}
    for k, res in zip(keys, resources, strict=True):
        request = pieces.get(k)
        if request is None:
            request = pieces[k] = new_request(batch.signal)
        getattr(request, _RESOURCE_FIELDS[batch.signal]).add().CopyFrom(res)
    return [(k, Batch(batch.signal, request, client=batch.client)) for k, request in pieces.items()]


def resource_attributes_hash(resource: Resource) -> bytes:
    """16 bytes that are equal exactly for resources with equal attributes (in any order)."""
    digest = hashlib.blake2b(digest_size=16)
    for kv in sorted(resource.attributes, key=lambda kv: kv.key):
        key = kv.key.encode()
        value = kv.value.SerializeToString(deterministic=True)
        digest.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big") + value)
    return digest.digest()
