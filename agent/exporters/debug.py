"""`debug` exporter: writes what it is given to the agent's log, for people to read.

Signals: traces, metrics, logs. Output goes to the logger `agent.exporters.debug` at INFO
(or straight to stdout with `use_internal_logger: false`, as in the Collector):

- `basic` (default): one line per batch with counts (`Traces resource spans=1 spans=512`);
- `normal`: one line per item (span: trace id, span id, name; metric: name and data point
  count; log record: severity and body);
- `detailed`: one multi-line entry per batch with every field that is set, resource and
  scope included (ids in hex, timestamps in RFC 3339 next to their nanoseconds).

Like the Collector's zap sampler, the output is sampled per second and per signal: the first
`sampling_initial` lines of each second are written, then every `sampling_thereafter`-th
(0 = none). The defaults (2, 1) write everything.

```yaml
exporters:
  debug:
    verbosity: detailed
```

Guarantees: never changes a batch (`mutates_data = False`), never fails a batch, and
formats a detailed dump off the event loop. Items written are counted as sent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

import msgspec
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from agent.component import ExporterFactory, Settings, Stability
from agent.errors import ShuttingDownError
from agent.model import Batch, Signal
from agent.model.batch import Request

logger = logging.getLogger(__name__)

# -- config -----------------------------------------------------------------------------------


class DebugConfig(msgspec.Struct, forbid_unknown_fields=True):
    verbosity: Literal["basic", "normal", "detailed"] = "basic"
    #: Lines written each second (per signal) before sampling starts.
    sampling_initial: Annotated[int, msgspec.Meta(ge=0)] = 2
    #: After the initial lines, write every Nth line of the second (0 = no more lines).
    sampling_thereafter: Annotated[int, msgspec.Meta(ge=0)] = 1
    #: False writes to stdout directly, unsampled, as the Collector does.
    use_internal_logger: bool = True


# -- formatting -------------------------------------------------------------------------------


def _rfc3339(nanos: int) -> str:
    seconds, rest = divmod(nanos, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest:09d}Z"


def any_value_text(value: AnyValue) -> str:
    """`Str(x)`, `Int(3)`, `Map({...})`: an AnyValue with its type, on one line."""
    kind = value.WhichOneof("value")
    if kind is None:
        return "Empty()"
    if kind == "string_value":
        return f"Str({value.string_value})"
    if kind == "bool_value":
        return f"Bool({'true' if value.bool_value else 'false'})"
    if kind == "int_value":
        return f"Int({value.int_value})"
    if kind == "double_value":
        return f"Double({value.double_value!r})"
    if kind == "bytes_value":
        return f"Bytes({value.bytes_value.hex()})"
    if kind == "array_value":
        return "Slice([" + ", ".join(any_value_text(v) for v in value.array_value.values) + "])"
    items = ", ".join(f"{kv.key}: {any_value_text(kv.value)}" for kv in value.kvlist_value.values)
    return "Map({" + items + "})"


def _plain(value: AnyValue) -> str:
    """A log body for one line: strings as they are, other values with their type."""
    text = value.string_value if value.WhichOneof("value") == "string_value" else any_value_text(value)
    return text.replace("\r", "\\r").replace("\n", "\\n")


_ANY_VALUE = AnyValue.DESCRIPTOR
_KEY_VALUE = KeyValue.DESCRIPTOR


def _scalar_text(field: FieldDescriptor, value: Any) -> str:
    if field.type == FieldDescriptor.TYPE_BYTES:
        return bytes(value).hex()
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum_value = field.enum_type.values_by_number.get(value)
        return enum_value.name if enum_value is not None else str(value)
    if field.name.endswith("_unix_nano") and value:
        return f"{value} ({_rfc3339(value)})"
    if isinstance(value, str):
        return value
    return repr(value)


def _dump(message: Message, depth: int, out: list[str]) -> None:
    """Every set field of `message`, one per line, nested messages indented."""
    pad = "  " * depth
    for field, value in message.ListFields():
        name = field.name
        is_repeated = field.is_repeated
        if field.message_type is _ANY_VALUE:
            out.append(f"{pad}{name}: {any_value_text(value)}")
        elif field.message_type is _KEY_VALUE and is_repeated:
            out.append(f"{pad}{name}:")
            out.extend(f"{pad}  -> {kv.key}: {any_value_text(kv.value)}" for kv in value)
        elif field.message_type is not None and is_repeated:
            for i, item in enumerate(value):
                out.append(f"{pad}{name} #{i}")
                _dump(item, depth + 1, out)
        elif field.message_type is not None:
            out.append(f"{pad}{name}:")
            _dump(value, depth + 1, out)
        elif is_repeated:
            out.append(f"{pad}{name}: [" + ", ".join(_scalar_text(field, v) for v in value) + "]")
        else:
            out.append(f"{pad}{name}: {_scalar_text(field, value)}")


def summary(signal: Signal, message: Request, items: int) -> str:
    """The basic line: resource and item counts, with the Collector's field names."""
    if signal is Signal.TRACES:
        return f"Traces resource spans={len(message.resource_spans)} spans={items}"
    if signal is Signal.METRICS:
        metrics = sum(len(sm.metrics) for rm in message.resource_metrics for sm in rm.scope_metrics)
        return f"Metrics resource metrics={len(message.resource_metrics)} metrics={metrics} data points={items}"
    return f"Logs resource logs={len(message.resource_logs)} log records={items}"


def detailed(signal: Signal, message: Request, items: int) -> str:
    """The detailed dump of one batch: a summary line, then every field that is set."""
    out = [summary(signal, message, items)]
    _dump(message, 0, out)
    return "\n".join(out)


def item_lines(signal: Signal, message: Request) -> Iterator[Callable[[], str]]:
    """One formatter per item, so that lines dropped by sampling are never formatted."""
    if signal is Signal.TRACES:
        for rs in message.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    yield functools.partial(_span_line, span)
    elif signal is Signal.METRICS:
        for rm in message.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    yield functools.partial(_metric_line, metric)
    else:
        for rl in message.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    yield functools.partial(_log_line, record)


def _span_line(span: Any) -> str:
    return f"Span trace_id={span.trace_id.hex()} span_id={span.span_id.hex()} name={span.name}"


def _metric_line(metric: Any) -> str:
    return f"Metric name={metric.name} data points={_points(metric)}"


def _log_line(record: Any) -> str:
    return f"Log severity={_severity(record)} body={_plain(record.body)}"


def _points(metric: Any) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind is not None else 0


def _severity(record: Any) -> str:
    if record.severity_text:
        return str(record.severity_text)
    name = record.DESCRIPTOR.fields_by_name["severity_number"].enum_type.values_by_number.get(
        record.severity_number
    )
    return name.name.removeprefix("SEVERITY_NUMBER_") if name is not None else str(record.severity_number)


# -- sampling ---------------------------------------------------------------------------------


class LineSampler:
    """Zap's sampler: per key and per tick, the first `initial` lines, then every `thereafter`-th."""

    def __init__(
        self, initial: int, thereafter: int, clock: Callable[[], float] = time.monotonic, tick: float = 1.0
    ) -> None:
        self._initial = initial
        self._thereafter = thereafter
        self._clock = clock
        self._tick = tick
        self._windows: dict[str, tuple[float, int]] = {}
        self.dropped = 0

    def allow(self, key: str) -> bool:
        now = self._clock()
        start, n = self._windows.get(key, (now, 0))
        if now - start >= self._tick:
            start, n = now, 0
        n += 1
        self._windows[key] = (start, n)
        if n <= self._initial:
            return True
        if self._thereafter > 0 and (n - self._initial) % self._thereafter == 0:
            return True
        self.dropped += 1
        return False


# -- the exporter -----------------------------------------------------------------------------


class DebugExporter:
    """Logs batches at the configured verbosity; see the module docstring."""

    mutates_data = False

    def __init__(
        self, settings: Settings, config: DebugConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._config = config
        self._sampler = LineSampler(config.sampling_initial, config.sampling_thereafter, clock)
        self._extra = {"component": settings.label}
        self._sent = {s: settings.metrics.exporter_sent.labels(component=settings.label, signal=s.value) for s in Signal}
        self._stopped = False

    async def start(self) -> None:
        return None

    async def shutdown(self) -> None:
        self._stopped = True

    def _wanted(self, signal: Signal) -> bool:
        """Whether the next line would be written (consumes a sampling slot when it would)."""
        return not self._config.use_internal_logger or self._sampler.allow(signal.value)

    async def consume(self, batch: Batch) -> None:
        if self._stopped:
            raise ShuttingDownError(f"the debug exporter {self._settings.label} is shut down")
        signal, message, items = batch.signal, batch.message, batch.items
        verbosity = self._config.verbosity
        if verbosity == "basic":
            if self._wanted(signal):
                self._emit(summary(signal, message, items))
        elif verbosity == "normal":
            for line in item_lines(signal, message):
                if self._wanted(signal):
                    self._emit(line())
        elif self._wanted(signal):
            # A dump of a large batch takes tens of milliseconds: keep it off the loop.
            self._emit(await asyncio.to_thread(detailed, signal, message, items))
        self._sent[signal].inc(items)

    def _emit(self, text: str) -> None:
        """Write a line that sampling already let through."""
        if self._config.use_internal_logger:
            logger.info(text, extra=self._extra)
        else:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()


def _create(settings: Settings, config: DebugConfig) -> DebugExporter:
    return DebugExporter(settings, config)


_ALL = {Signal.TRACES: Stability.BETA, Signal.METRICS: Stability.BETA, Signal.LOGS: Stability.BETA}

FACTORY = ExporterFactory(
    type="debug",
    config_type=DebugConfig,
    description="Writes batches to the agent's log (counts, one line per item, or every field).",
    signals=_ALL,
    create=_create,
)
