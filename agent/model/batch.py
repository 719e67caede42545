"""`Batch`: one OTLP export request in flight, parsed lazily and serialized at most once.

Receivers usually hold the bytes they were sent; a batch keeps them so that an exporter that
speaks OTLP can forward them without serializing again, and so that the `batch` processor
can merge requests by concatenating their encodings (concatenated encodings of one protobuf
message type decode as the merge of the messages, which for export requests means their
resource lists are appended). The parsed message is built only when something reads it.

Contract for processors that change data: call `mutable()` to get the message and drop the
cached bytes *before* changing it. The item count is recomputed after `mutable()`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Union

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class Signal(str, enum.Enum):
    """The three OTLP signals; the value is the word used in YAML pipeline ids."""

    TRACES = "traces"
    METRICS = "metrics"
    LOGS = "logs"

    def __str__(self) -> str:
        return self.value


Request = Union[ExportTraceServiceRequest, ExportMetricsServiceRequest, ExportLogsServiceRequest]

REQUEST_TYPES: dict[Signal, type[Request]] = {
    Signal.TRACES: ExportTraceServiceRequest,
    Signal.METRICS: ExportMetricsServiceRequest,
    Signal.LOGS: ExportLogsServiceRequest,
}

#: What one item is, per signal, in sentences and metric help texts.
ITEM_NAMES: dict[Signal, str] = {
    Signal.TRACES: "spans",
    Signal.METRICS: "data points",
    Signal.LOGS: "log records",
}


def new_request(signal: Signal) -> Request:
    """An empty export request message of the signal's type."""
    return REQUEST_TYPES[signal]()


def count_items(signal: Signal, message: Request) -> int:
    """Spans, metric data points or log records in one request."""
    n = 0
    if signal is Signal.TRACES:
        for rs in message.resource_spans:
            for ss in rs.scope_spans:
                n += len(ss.spans)
    elif signal is Signal.LOGS:
        for rl in message.resource_logs:
            for sl in rl.scope_logs:
                n += len(sl.log_records)
    else:
        for rm in message.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    if kind is not None:
                        n += len(getattr(m, kind).data_points)
    return n


@dataclass(frozen=True)
class ClientInfo:
    """Who sent a batch: the peer address and, with `include_metadata`, request headers.

    Header names are lower-case; each maps to every value it was sent with.
    """

    address: str | None = None
    metadata: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def get(self, key: str) -> tuple[str, ...]:
        return self.metadata.get(key.lower(), ())


NO_CLIENT = ClientInfo()


class Batch:
    """One OTLP export request of one signal, with its item count and sender."""

    __slots__ = ("_data", "_items", "_message", "client", "signal")

    def __init__(
        self,
        signal: Signal,
        message: Request | None = None,
        *,
        data: bytes | None = None,
        items: int | None = None,
        client: ClientInfo = NO_CLIENT,
    ) -> None:
        if message is None and data is None:
            raise ValueError("a Batch needs a message or its serialized bytes")
        self.signal = signal
        self.client = client
        self._message = message
        self._data = data
        self._items = items

    @classmethod
    def parse(cls, signal: Signal, data: bytes, client: ClientInfo = NO_CLIENT) -> Batch:
        """Decode `data` (raises `google.protobuf.message.DecodeError`) and count its items."""
        message = REQUEST_TYPES[signal]()
        message.ParseFromString(data)
        return cls(signal, message, data=data, items=count_items(signal, message), client=client)

    @classmethod
    def merge(cls, batches: Iterable[Batch], client: ClientInfo = NO_CLIENT) -> Batch:
        """One batch holding every resource of `batches`, in order, by joining encodings."""
        parts = list(batches)
        if not parts:
            raise ValueError("nothing to merge")
        signal = parts[0].signal
        if len(parts) == 1:
            return parts[0]
        data = b"".join(b.serialize() for b in parts)
        return cls(signal, data=data, items=sum(b.items for b in parts), client=client)

    @property
    def message(self) -> Request:
        """The request message, parsed on first use. Do not change it; see `mutable()`."""
        if self._message is None:
            assert self._data is not None
            message = REQUEST_TYPES[self.signal]()
            message.ParseFromString(self._data)
            self._message = message
        return self._message

    def mutable(self) -> Request:
        """The message, for changing in place: cached bytes and item count are dropped."""
        message = self.message
        self._data = None
        self._items = None
        return message

    @property
    def items(self) -> int:
        """Spans, data points or log records in the batch."""
        if self._items is None:
            self._items = count_items(self.signal, self.message)
        return self._items

    def serialize(self) -> bytes:
        """The protobuf encoding, computed at most once while the batch is unchanged."""
        if self._data is None:
            assert self._message is not None
            self._data = self._message.SerializeToString()
        return self._data

    @property
    def nbytes(self) -> int:
        """Size of the protobuf encoding."""
        if self._data is not None:
            return len(self._data)
        return int(self.message.ByteSize())

    def copy(self) -> Batch:
        """An independent batch with the same content (cheap when the bytes are known)."""
        if self._data is not None:
            return Batch(self.signal, data=self._data, items=self._items, client=self.client)
        assert self._message is not None
        message = REQUEST_TYPES[self.signal]()
        message.CopyFrom(self._message)
        return Batch(self.signal, message, items=self._items, client=self.client)

    def __repr__(self) -> str:
        return f"<Batch {self.signal.value} items={self.items}>"
