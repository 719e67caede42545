"""Index names, as the Collector's `elasticsearch` exporter computes them.

Three ways, in this order of precedence when dynamic routing is on for the signal:

1. data-stream routing: a `data_stream.dataset` or `data_stream.namespace` attribute (record
   or span > scope > resource) routes to `<type>-<dataset>-<namespace>` (defaults `generic`
   and `default`; in the `otel` mapping mode the dataset gets a `.otel` suffix);
2. prefix/suffix: `elasticsearch.index.prefix` / `elasticsearch.index.suffix` (resource >
   scope > record) wrap the configured index: `<prefix><logs_index><suffix>`;
3. otherwise `<type>-generic-default` (`generic.otel` in `otel` mode).

Without dynamic routing the configured `logs_index` / `traces_index` is used. With
`logstash_format` the date of the record (UTC, `date_format` in strftime syntax) is
appended after `prefix_separator`. Names are lower-cased and characters Elasticsearch
refuses in data-stream names are replaced as the Collector does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

DATASET = "data_stream.dataset"
NAMESPACE = "data_stream.namespace"
TYPE = "data_stream.type"
PREFIX = "elasticsearch.index.prefix"
SUFFIX = "elasticsearch.index.suffix"
DOCUMENT_ID = "elasticsearch.document_id"

DEFAULT_DATASET = "generic"
DEFAULT_NAMESPACE = "default"
OTEL_SUFFIX = ".otel"

#: Characters a data-stream dataset or namespace may not hold (Elasticsearch's rules);
#: the dataset may not hold `-` either, since it separates the parts of the name.
_DISALLOWED = frozenset('\\/*?"<>| ,#:')
_MAX_PART = 100


def sanitize_dataset(value: str) -> str:
    return _sanitize(value, extra="-")


def sanitize_namespace(value: str) -> str:
    return _sanitize(value, extra="")


def _sanitize(value: str, extra: str) -> str:
    text = value.lower()
    if any(c in _DISALLOWED or c in extra for c in text):
        text = "".join("_" if (c in _DISALLOWED or c in extra) else c for c in text)
    return text[:_MAX_PART]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def first(key: str, *levels: Mapping[str, Any]) -> str | None:
    """The value of `key` in the first level that has it, as text."""
    for level in levels:
        if key in level:
            return _text(level[key])
    return None


class DataStream:
    """The `data_stream` fields of one document: type, dataset and namespace."""

    __slots__ = ("dataset", "fields", "namespace", "type")

    def __init__(self, type: str, dataset: str, namespace: str) -> None:
        self.type = type
        self.dataset = dataset
        self.namespace = namespace
        #: The `data_stream` object of a document (shared; never changed).
        self.fields = {"type": type, "dataset": dataset, "namespace": namespace}

    def index(self) -> str:
        return f"{self.type}-{self.dataset}-{self.namespace}"


def data_stream(ds_type: str, otel: bool, record: Mapping[str, Any], scope: Mapping[str, Any],
                resource: Mapping[str, Any]) -> tuple[DataStream, bool]:
    """The data stream of a document and whether an attribute chose it (record > scope > resource)."""
    dataset = first(DATASET, record, scope, resource)
    namespace = first(NAMESPACE, record, scope, resource)
    chosen = dataset is not None or namespace is not None
    ds = sanitize_dataset(dataset) if dataset else DEFAULT_DATASET
    if otel and not ds.endswith(OTEL_SUFFIX):
        ds += OTEL_SUFFIX
    ns = sanitize_namespace(namespace) if namespace else DEFAULT_NAMESPACE
    return DataStream(ds_type, ds, ns), chosen


def dynamic_index(stream: DataStream, chosen: bool, configured: str, record: Mapping[str, Any],
                  scope: Mapping[str, Any], resource: Mapping[str, Any]) -> str:
    """The index of a document under dynamic routing (see the module docstring)."""
    if chosen:
        return stream.index()
    prefix = first(PREFIX, resource, scope, record)
    suffix = first(SUFFIX, resource, scope, record)
    if prefix is not None or suffix is not None:
        return f"{prefix or ''}{configured}{suffix or ''}"
    return stream.index()


#: strftime directives finer than a day: a format with one of them is cached per second.
_TIME_OF_DAY = ("%H", "%I", "%M", "%S", "%p", "%s", "%X", "%c", "%T", "%R", "%r", "%f")


class LogstashDate:
    """`<index><separator><date>` with the UTC date of a timestamp, cached per day (or second)."""

    __slots__ = ("_cache", "_date_format", "_separator", "_unit")

    def __init__(self, separator: str, date_format: str) -> None:
        self._separator = separator
        self._date_format = date_format
        self._cache: dict[int, str] = {}
        self._unit = 1 if any(d in date_format for d in _TIME_OF_DAY) else 86_400

    def suffix(self, time_unix_nano: int) -> str:
        key = time_unix_nano // (self._unit * 1_000_000_000)
        text = self._cache.get(key)
        if text is None:
            if len(self._cache) > 64:
                self._cache.clear()
            stamp = time.gmtime(key * self._unit)
            text = self._separator + time.strftime(self._date_format, stamp)
            self._cache[key] = text
        return text

    def index(self, index: str, time_unix_nano: int) -> str:
        return index + self.suffix(time_unix_nano)
