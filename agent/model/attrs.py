"""Read and write OTLP attribute lists (`repeated KeyValue`) in place, and walk items.

Attributes in OTLP are a list of `KeyValue`, not a map; these helpers give them map-like
operations without copying anything into Python objects. Keys are unique in well-formed
data; when a list holds a key twice, the first one wins for reads and writes, and
`delete` removes every copy.

The small API:

- `index(kvs, key)`, `get(kvs, key)` — find an attribute;
- `insert`, `update`, `upsert` (all take a Python value or an `AnyValue`), `delete`,
  `delete_where(kvs, predicate)` — change a list;
- `assign(any_value, value)` — write a Python value or an `AnyValue` into an `AnyValue`;
- `to_python(any_value)`, `as_string(any_value)` (the Collector's `AsString` rules);
- `spans`, `span_events`, `log_records`, `metrics`, `data_points`, `resources` — walk a
  request with the resource and scope of every item, in order.

Hot loops should take `keys = [kv.key for kv in kvs]` once per item and search that list
(C speed) instead of calling `index` per action; `insert`/`delete` accept that list and keep
it in step.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent.model.batch import Request, Signal

__all__ = [
    "as_string",
    "assign",
    "data_points",
    "delete",
    "delete_where",
    "get",
    "index",
    "insert",
    "log_records",
    "metrics",
    "resources",
    "span_events",
    "spans",
    "to_python",
    "update",
    "upsert",
]

#: A `repeated KeyValue` field (upb's container type has no public name).
KeyValues = Any


def index(kvs: KeyValues, key: str) -> int:
    """Position of the first attribute named `key`, or -1."""
    for i, kv in enumerate(kvs):
        if kv.key == key:
            return i
    return -1


def get(kvs: KeyValues, key: str) -> AnyValue | None:
    """The value of `key` (a live reference: changing it changes the list), or None."""
    for kv in kvs:
        if kv.key == key:
            return kv.value  # type: ignore[no-any-return]
    return None


def assign(target: AnyValue, value: Any) -> None:
    """Write `value` (an `AnyValue`, or str/bool/int/float/bytes/list/dict/None) into `target`."""
    if isinstance(value, AnyValue):
        target.CopyFrom(value)
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, (list, tuple)):
        target.Clear()
        array = target.array_value
        for item in value:
            assign(array.values.add(), item)
    elif isinstance(value, dict):
        target.Clear()
        kvlist = target.kvlist_value
        for k, v in value.items():
            kv = kvlist.values.add()
            kv.key = str(k)
            assign(kv.value, v)
    elif value is None:
        target.Clear()
    else:
        raise TypeError(f"no OTLP value for a {type(value).__name__}")


def insert(kvs: KeyValues, key: str, value: Any, keys: list[str] | None = None) -> bool:
    """Add `key` unless it is there; True when added. `keys` (the list's keys) is kept in step."""
    present = (key in keys) if keys is not None else index(kvs, key) >= 0
    if present:
        return False
    kv = kvs.add()
    kv.key = key
    assign(kv.value, value)
    if keys is not None:
        keys.append(key)
    return True


def update(kvs: KeyValues, key: str, value: Any) -> bool:
    """Replace the value of `key` when it is there; True when replaced."""
    target = get(kvs, key)
    if target is None:
        return False
    assign(target, value)
    return True


def upsert(kvs: KeyValues, key: str, value: Any, keys: list[str] | None = None) -> None:
    """Set `key` to `value`, adding it when missing."""
    if not update(kvs, key, value):
        kv = kvs.add()
        kv.key = key
        assign(kv.value, value)
        if keys is not None:
            keys.append(key)


def delete(kvs: KeyValues, key: str, keys: list[str] | None = None) -> bool:
    """Remove every attribute named `key`; True when one was removed."""
    return delete_where(kvs, key.__eq__, keys) > 0


def delete_where(kvs: KeyValues, predicate: Callable[[str], bool], keys: list[str] | None = None) -> int:
    """Remove the attributes whose key satisfies `predicate`; how many were removed."""
    removed = 0
    for i in range(len(kvs) - 1, -1, -1):
        if predicate(kvs[i].key):
            del kvs[i]
            if keys is not None:
                del keys[i]
            removed += 1
    return removed


def to_python(value: AnyValue) -> Any:
    """The Python value of an `AnyValue` (None when empty; lists and dicts for the composites)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [to_python(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: to_python(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def format_double(x: float) -> str:
    """A double as Go's `strconv.FormatFloat(x, 'f', -1, 64)` writes it (no exponent)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    text = repr(x)
    if "e" in text or "E" in text:
        from decimal import Decimal

        text = format(Decimal(text), "f")
    if text.endswith(".0"):
        text = text[:-2]
    return text


def _json_ready(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    return value


def as_string(value: AnyValue) -> str:
    """The value as text, as the Collector's `AsString` writes it.

    Strings as they are; booleans `true`/`false`; integers in decimal; doubles without an
    exponent; bytes in base64; arrays and maps as JSON; an empty value as "".
    """
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return format_double(value.double_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind is None:
        return ""
    return json.dumps(_json_ready(to_python(value)), separators=(",", ":"), ensure_ascii=False)


# -- walking a request -------------------------------------------------------------------


def spans(request: Request) -> Iterator[tuple[Resource, InstrumentationScope, Span]]:
    """(resource, scope, span) for every span of a traces request."""
    for rs in request.resource_spans:
        resource = rs.resource
        for ss in rs.scope_spans:
            scope = ss.scope
            for span in ss.spans:
                yield resource, scope, span


def span_events(request: Request) -> Iterator[tuple[Resource, InstrumentationScope, Span, Span.Event]]:
    """(resource, scope, span, event) for every span event of a traces request."""
    for resource, scope, span in spans(request):
        for event in span.events:
            yield resource, scope, span, event


def log_records(request: Request) -> Iterator[tuple[Resource, InstrumentationScope, LogRecord]]:
    """(resource, scope, record) for every log record of a logs request."""
    for rl in request.resource_logs:
        resource = rl.resource
        for sl in rl.scope_logs:
            scope = sl.scope
            for record in sl.log_records:
                yield resource, scope, record


def metrics(request: Request) -> Iterator[tuple[Resource, InstrumentationScope, Metric]]:
    """(resource, scope, metric) for every metric of a metrics request."""
    for rm in request.resource_metrics:
        resource = rm.resource
        for sm in rm.scope_metrics:
            scope = sm.scope
            for metric in sm.metrics:
                yield resource, scope, metric


def metric_points(metric: Metric) -> Any:
    """The `repeated` data points of a metric (an empty tuple when it has no data)."""
    kind = metric.WhichOneof("data")
    if kind is None:
        return ()
    return getattr(metric, kind).data_points


def data_points(request: Request) -> Iterator[tuple[Resource, InstrumentationScope, Metric, Any]]:
    """(resource, scope, metric, point) for every data point of a metrics request."""
    for resource, scope, metric in metrics(request):
        for point in metric_points(metric):
            yield resource, scope, metric, point


_RESOURCE_LISTS = {
    Signal.TRACES: "resource_spans",
    Signal.METRICS: "resource_metrics",
    Signal.LOGS: "resource_logs",
}


def resources(signal: Signal, request: Request) -> Iterator[Resource]:
    """Every resource of a request."""
    for group in getattr(request, _RESOURCE_LISTS[signal]):
        yield group.resource


def key_value(key: str, value: Any) -> KeyValue:
    """A new `KeyValue` (for building data; processors change lists in place instead)."""
    kv = KeyValue(key=key)
    assign(kv.value, value)
    return kv
