"""Split one batch into pieces of at most a given number of items.

An item is a span, a metric data point or a log record. Pieces keep the request's shape:
every piece that holds items of a resource (or scope) carries a copy of that resource (or
scope) and its `schema_url`, items stay in their original order across pieces, and no piece
holds an empty resource, scope or metric. A metric whose data points fall into several
pieces appears in each of them with its name, description, unit, metadata and the settings
of its data kind (aggregation temporality, monotonicity).

Splitting parses the batch and builds new messages, so it is the slow path: callers split
only when a batch exceeds their limit. A batch already within the limit comes back as
`[batch]`, untouched and unparsed. The input batch is never changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

from agent.model.batch import Batch, Request, Signal, new_request

__all__ = ["split"]


def split(batch: Batch, max_items: int) -> list[Batch]:
    """`batch` as pieces of at most `max_items` items each, in order (see the module doc)."""
    if max_items < 1:
        raise ValueError(f"max_items must be at least 1, got {max_items}")
    if batch.items <= max_items:
        return [batch]
    builder = _PieceBuilder(batch, max_items)
    if batch.signal is Signal.METRICS:
        builder.split_metrics()
    elif batch.signal is Signal.TRACES:
        builder.split_flat("resource_spans", "scope_spans", "spans")
    else:
        builder.split_flat("resource_logs", "scope_logs", "log_records")
    return builder.finish()


class _PieceBuilder:
    """Fills pieces one item range at a time, opening containers in a piece only on demand.

    `_open` holds the containers created in the current piece for the resource, scope and
    metric being walked; it is cleared whenever a new piece starts, so the next item range
    re-creates (copies) exactly the containers it needs.
    """

    def __init__(self, batch: Batch, max_items: int) -> None:
        self._source = batch
        self._max = max_items
        self._pieces: list[Batch] = []
        self._current: Request = new_request(batch.signal)
        self._count = 0
        self._open: list[Any] = []

    def _room(self) -> int:
        """Items the current piece can still take, starting a new piece when it is full."""
        if self._count >= self._max:
            self._pieces.append(
                Batch(self._source.signal, self._current, items=self._count, client=self._source.client)
            )
            self._current = new_request(self._source.signal)
            self._count = 0
            self._open.clear()
        return self._max - self._count

    def _container(self, depth: int, make: Callable[[Any], Any]) -> Any:
        """The container at `depth` in the current piece, made from its parent if missing."""
        if len(self._open) <= depth:
            parent = self._current if depth == 0 else self._open[depth - 1]
            self._open.append(make(parent))
        return self._open[depth]

    def _leave(self, depth: int) -> None:
        """Forget containers at `depth` and below: the walk moved past them."""
        del self._open[depth:]

    def split_flat(self, resources_field: str, scopes_field: str, items_field: str) -> None:
        """Traces and logs: resource → scope → items."""
        for res in getattr(self._source.message, resources_field):
            for scope in getattr(res, scopes_field):
                items = getattr(scope, items_field)
                start, total = 0, len(items)
                while start < total:
                    take = min(self._room(), total - start)
                    self._container(0, _copy_resource(res, resources_field, scopes_field))
                    out_scope = self._container(1, _copy_scope(scope, scopes_field))
                    getattr(out_scope, items_field).extend(items[start : start + take])
                    start += take
                    self._count += take
                self._leave(1)
            self._leave(0)

    def split_metrics(self) -> None:
        """Metrics: resource → scope → metric → data points."""
        for res in self._source.message.resource_metrics:
            for scope in res.scope_metrics:
                for metric in scope.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is None:
                        continue
                    points = getattr(metric, kind).data_points
                    start, total = 0, len(points)
                    while start < total:
                        take = min(self._room(), total - start)
                        self._container(0, _copy_resource(res, "resource_metrics", "scope_metrics"))
                        self._container(1, _copy_scope(scope, "scope_metrics"))
                        out_metric = self._container(2, _copy_metric_shell(metric, kind))
                        getattr(out_metric, kind).data_points.extend(points[start : start + take])
                        start += take
                        self._count += take
                    self._leave(2)
                self._leave(1)
            self._leave(0)

    def finish(self) -> list[Batch]:
        if self._count:
            self._pieces.append(
                Batch(self._source.signal, self._current, items=self._count, client=self._source.client)
            )
        return self._pieces


def _copy_resource(res: Any, resources_field: str, scopes_field: str) -> Callable[[Any], Any]:
    def make(request: Any) -> Any:
        out = getattr(request, resources_field).add()
        if res.HasField("resource"):
            out.resource.CopyFrom(res.resource)
        out.schema_url = res.schema_url
        return out

    return make


def _copy_scope(scope: Any, scopes_field: str) -> Callable[[Any], Any]:
    def make(parent: Any) -> Any:
        out = getattr(parent, scopes_field).add()
        if scope.HasField("scope"):
            out.scope.CopyFrom(scope.scope)
        out.schema_url = scope.schema_url
        return out

    return make


def _copy_metric_shell(metric: Metric, kind: str) -> Callable[[Any], Any]:
    """A metric with every field of `metric` but no data points."""

    def make(scope: Any) -> Any:
        out = scope.metrics.add()
        out.name = metric.name
        out.description = metric.description
        out.unit = metric.unit
        out.metadata.extend(metric.metadata)
        data = getattr(out, kind)
        data.SetInParent()
        # Every field of the kind except its points: today aggregation_temporality and
        # is_monotonic, both scalars; a message-typed field added later is copied whole.
        for fd, value in getattr(metric, kind).ListFields():
            if fd.name == "data_points":
                continue
            if fd.message_type is not None:
                getattr(data, fd.name).CopyFrom(value)
            else:
                setattr(data, fd.name, value)
        return out

    return make
