"""OTLP batches → bulk items: each record's document (see `documents.py`), its index (see
`routing.py`), its id, and its `create` action line, encoded with msgspec.

Resource and scope parts are converted and encoded once per resource and scope and
spliced into each document as raw JSON. A record that cannot become a document (`bodymap`
with a body that is not a map) becomes a `Failure`, which the exporter dead-letters and
counts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent.exporters.elasticsearch import documents, routing
from agent.exporters.elasticsearch.documents import Context, Timestamps, attributes, value
from agent.model import Batch, Signal

Mode = Literal["otel", "ecs", "none", "raw", "bodymap"]

_ID_MARK = "flowglass-id-mark"


class Doc:
    """One bulk item: the action line (with its newline) and the document (without)."""

    __slots__ = ("action", "body", "id", "index")

    def __init__(self, index: str, id: str | None, action: bytes, body: bytes) -> None:
        self.index = index
        self.id = id
        self.action = action
        self.body = body

    @property
    def nbytes(self) -> int:
        return len(self.action) + len(self.body) + 1


class Failure:
    """A record that could not become a document, with the reason."""

    __slots__ = ("index", "reason", "record")

    def __init__(self, index: str, reason: str, record: Any) -> None:
        self.index = index
        self.reason = reason
        self.record = record


class DocumentEncoder:
    """Turns batches into `Doc`s for one exporter configuration."""

    def __init__(
        self,
        *,
        mode: Mode,
        logs_index: str,
        traces_index: str,
        logs_dynamic_index: bool,
        traces_dynamic_index: bool,
        logstash: routing.LogstashDate | None,
        pipeline: str,
        logs_dynamic_id: bool,
        hash_ids: bool,
    ) -> None:
        self._mode = mode
        self._otel = mode == "otel"
        self._static = {Signal.LOGS: logs_index, Signal.TRACES: traces_index}
        self._dynamic = {Signal.LOGS: logs_dynamic_index, Signal.TRACES: traces_dynamic_index}
        self._logstash = logstash
        self._pipeline = pipeline
        self._dynamic_id = logs_dynamic_id
        self._hash_ids = hash_ids
        self._json = msgspec.json.Encoder()
        self._ts = Timestamps()
        self._actions: dict[str, bytes] = {}
        self._hashers: dict[str, tuple[Any, bytes, bytes]] = {}
        # Hashed ids given out in the current batch, with how many identical documents had one.
        self._seen: dict[str, int] = {}

    def encode(self, batch: Batch) -> tuple[list[Doc], list[Failure]]:
        """Every item's document; raises ValueError for a batch this configuration cannot take."""
        docs: list[Doc] = []
        failures: list[Failure] = []
        self._seen.clear()
        if batch.signal is Signal.LOGS:
            for rl in batch.message.resource_logs:
                for sl in rl.scope_logs:
                    ctx = self._context(Signal.LOGS, rl.resource, rl.schema_url, sl.scope)
                    for record in sl.log_records:
                        self._log(ctx, record, docs, failures)
        elif batch.signal is Signal.TRACES:
            if self._mode == "bodymap":
                raise ValueError("the bodymap mapping mode takes logs only; choose another mode for traces")
            for rs in batch.message.resource_spans:
                for ss in rs.scope_spans:
                    ctx = self._context(Signal.TRACES, rs.resource, rs.schema_url, ss.scope)
                    for span in ss.spans:
                        self._span(ctx, span, docs)
        else:
            raise ValueError(f"the elasticsearch exporter takes logs and traces, not {batch.signal.value}")
        return docs, failures

    def action(self, index: str, doc_id: str | None) -> bytes:
        """The `create` action line of a document, with its newline."""
        if doc_id is None:
            cached = self._actions.get(index)
            if cached is not None:
                return cached
        meta: dict[str, str] = {"_index": index}
        if doc_id is not None:
            meta["_id"] = doc_id
        if self._pipeline:
            meta["pipeline"] = self._pipeline
        line = self._json.encode({"create": meta}) + b"\n"
        if doc_id is None:
            if len(self._actions) >= 1024:
                self._actions.clear()
            self._actions[index] = line
        return line

    # -- per resource and scope -----------------------------------------------------------

    def _context(self, signal: Signal, resource: Resource, schema_url: str, scope: InstrumentationScope) -> Context:
        ctx = Context()
        ctx.resource = attributes(resource.attributes)
        ctx.scope = attributes(scope.attributes)
        ds_type = "logs" if signal is Signal.LOGS else "traces"
        ctx.stream, ctx.chosen = routing.data_stream(ds_type, self._otel, {}, ctx.scope, ctx.resource)
        ctx.index = self._index(signal, ctx.stream, ctx.chosen, {}, ctx.scope, ctx.resource)
        mode = self._mode
        if mode == "otel":
            res: dict[str, Any] = {"attributes": documents.without_data_stream(ctx.resource)}
            if resource.dropped_attributes_count:
                res["dropped_attributes_count"] = resource.dropped_attributes_count
            if schema_url:
                res["schema_url"] = schema_url
            ctx.raw_resource = msgspec.Raw(self._json.encode(res))
            scope_attrs = documents.without_data_stream(ctx.scope)
            ctx.raw_scope = msgspec.Raw(self._json.encode(documents.scope_dict(scope, scope_attrs)))
        elif mode in ("none", "raw"):
            ctx.raw_resource = msgspec.Raw(self._json.encode(ctx.resource))
            ctx.raw_scope = msgspec.Raw(self._json.encode(documents.scope_dict(scope, ctx.scope)))
        elif mode == "ecs":
            names = documents.ECS_RESOURCE_NAMES
            ctx.ecs = {names.get(k, k): v for k, v in ctx.resource.items()}
        return ctx

    def _index(self, signal: Signal, stream: routing.DataStream, chosen: bool, record: Mapping[str, Any],
               scope: Mapping[str, Any], resource: Mapping[str, Any]) -> str:
        if not self._dynamic[signal]:
            return self._static[signal]
        return routing.dynamic_index(stream, chosen, self._static[signal], record, scope, resource)

    def _route(self, signal: Signal, ctx: Context, attrs: Mapping[str, Any], ds_type: str,
               ts: int) -> tuple[str, routing.DataStream]:
        """Index and data stream of one document whose own attributes are `attrs`."""
        if (routing.DATASET in attrs or routing.NAMESPACE in attrs or routing.PREFIX in attrs
                or routing.SUFFIX in attrs or ds_type != ctx.stream.type):
            stream, chosen = routing.data_stream(ds_type, self._otel, attrs, ctx.scope, ctx.resource)
            index = self._index(signal, stream, chosen, attrs, ctx.scope, ctx.resource)
        else:
            stream, index = ctx.stream, ctx.index
        if self._logstash is not None:
            index = self._logstash.index(index, ts)
        return index, stream

    # -- one document ---------------------------------------------------------------------

    def _doc(self, index: str, doc_id: str | None, doc: Any, docs: list[Doc]) -> None:
        body = self._json.encode(doc)
        if doc_id is None and self._hash_ids:
            docs.append(self._hashed(index, body))
            return
        docs.append(Doc(index, doc_id, self.action(index, doc_id), body))

    def _hashed(self, index: str, body: bytes) -> Doc:
        """A document whose id is a hash of its index and body, with its action line."""
        cached = self._hashers.get(index)
        if cached is None:
            if len(self._hashers) >= 1024:
                self._hashers.clear()
            seed = hashlib.blake2b(index.encode() + b"\n", digest_size=16)
            # The action line around the id; `"_id":"` cannot occur inside the encoded index
            # (its quotes are escaped), so the split is exact.
            head, _, tail = self.action(index, _ID_MARK).partition(b'"_id":"' + _ID_MARK.encode() + b'"')
            cached = self._hashers[index] = (seed, head + b'"_id":"', b'"' + tail)
        seed, head, tail = cached
        h = seed.copy()
        h.update(body)
        doc_id = h.hexdigest()
        # Identical documents in one batch are different records (two equal log lines read
        # together share even their observed time): the n-th repeat hashes with its number,
        # so each is stored, and encoding the same batch again still gives the same ids.
        repeats = self._seen.get(doc_id)
        if repeats is None:
            self._seen[doc_id] = 0
        else:
            self._seen[doc_id] = repeats + 1
            h.update(b"\n#%d" % (repeats + 1))  # a JSON body never holds a raw newline
            doc_id = h.hexdigest()
        return Doc(index, doc_id, head + doc_id.encode() + tail, body)

    def _log(self, ctx: Context, record: LogRecord, docs: list[Doc], failures: list[Failure]) -> None:
        attrs = attributes(record.attributes)
        doc_id: str | None = None
        if self._dynamic_id and routing.DOCUMENT_ID in attrs:
            doc_id = str(attrs.pop(routing.DOCUMENT_ID)) or None
        ts = record.time_unix_nano or record.observed_time_unix_nano
        index, stream = self._route(Signal.LOGS, ctx, attrs, "logs", ts)
        mode = self._mode
        doc: Any
        if mode == "otel":
            doc = documents.otel_log(self._ts, ctx, record, attrs, stream, ts)
        elif mode == "ecs":
            doc = documents.ecs_log(self._ts, ctx, record, attrs, ts)
        elif mode == "bodymap":
            if record.body.WhichOneof("value") != "kvlist_value":
                failures.append(Failure(index, "bodymap: the log body is not a map", value(record.body)))
                return
            doc = value(record.body)
        else:
            doc = documents.none_log(self._ts, ctx, record, attrs, ts, raw=mode == "raw")
        self._doc(index, doc_id, doc, docs)

    def _span(self, ctx: Context, span: Span, docs: list[Doc]) -> None:
        attrs = attributes(span.attributes)
        index, stream = self._route(Signal.TRACES, ctx, attrs, "traces", span.start_time_unix_nano)
        mode = self._mode
        if mode == "otel":
            self._doc(index, None, documents.otel_span(self._ts, ctx, span, attrs, stream), docs)
            for event in span.events:
                event_attrs = attributes(event.attributes)
                # Span events are log documents: routed as logs by their own attributes.
                event_index, event_stream = self._route(Signal.TRACES, ctx, event_attrs, "logs", event.time_unix_nano)
                doc = documents.otel_event(self._ts, ctx, span, event, event_attrs, event_stream)
                self._doc(event_index, None, doc, docs)
        elif mode == "ecs":
            self._doc(index, None, documents.ecs_span(self._ts, ctx, span, attrs), docs)
        else:
            self._doc(index, None, documents.none_span(self._ts, ctx, span, attrs, raw=mode == "raw"), docs)
