"""`elasticsearch`: index logs and traces into Elasticsearch (7.17, 8.x, 9.x) or OpenSearch.

Records become documents in one of the Collector's mapping modes (`otel` by default, `ecs`,
`none`, `raw`, `bodymap`; see `encode.py`), routed to an index (`logs_index`,
`traces_index`, data-stream routing, prefix/suffix attributes, logstash dates; see
`routing.py`), and are sent with `_bulk` (`create` actions, NDJSON, gzip by default).

```yaml
exporters:
  elasticsearch:
    endpoint: https://elasticsearch:9200       # or endpoints: [...], or $ELASTICSEARCH_URL
    api_key: ${env:ES_API_KEY}                 # or user / password
    logs_dynamic_index: {enabled: true}        # logs-<dataset>-<namespace>
    mapping: {mode: otel}
    document_id: hash                          # Flowglass's own: idempotent retries
    dead_letter: {path: /var/lib/flowglass/es-dead-letter.jsonl, max_megabytes: 100, max_backups: 10}
    flush: {bytes: 5MB, interval: 1s}
```

Guarantees, per bulk item (the response is read item by item):
- an item answered 2xx is stored and never sent again; a retry resends only the items that
  are still to do;
- items answered with a status in `retry.retry_on_status` (429 and 5xx by default) are
  retried with backoff, at most `retry.max_retries` times;
- 409 on a `create` with an id the exporter chose (`document_id: hash`,
  `logs_dynamic_id`) means the document is already stored: counted as a duplicate, not sent
  again; with `document_id: hash` the id is a hash of the index and the document, so a
  retry after a timeout, a dropped connection or a crash cannot store a record twice;
- any other failure (400 mapping errors, ...) and items still failing after the last retry
  go to the dead-letter destination (`dead_letter.path`: one JSON line with the document,
  index, status and reason; or `dead_letter.index`), are counted by reason
  (`flowglass_exporter_elasticsearch_rejected_documents`) and reported to the sending
  helper as a partial failure;
- a whole request answered 429 or 5xx, a dropped connection or a timeout goes through the
  shared retry (backoff, `Retry-After`), again at most `retry.max_retries` times; with
  retries disabled a request without an answer within `timeout` is dead-lettered as
  `timeout`;
- a request of several documents answered 413 (too large) is sent again at once in halves,
  down to single documents: only a document too large by itself is dead-lettered
  (`http_413`), and nothing stored is sent twice.

The dead-letter file rotates like the `file` exporter's output (`dead_letter.max_megabytes`,
`max_backups`, `max_days`), so it is bounded on disk.

Bulk requests are filled up to `flush.bytes` of NDJSON and sent at least every
`flush.interval`; `consume` returns once its documents are in the buffer, and waits (the
backpressure) when the buffer is full and the sending queue has no room. Items counted by
the sending helper are documents: in `otel` mode a span event is a document of its own.
"""

from __future__ import annotations

import os
from typing import Annotated, ClassVar, Literal

import msgspec

from agent.component import Exporter, ExporterFactory, Settings, Stability
from agent.config.tls import TLSClientConfig
from agent.config.types import ByteSize, Duration
from agent.exporters.http import check_url
from agent.exporters.sending import SENDING_UPSTREAM_OPTIONS, SendingQueueConfig
from agent.model import Signal

ENV_URL = "ELASTICSEARCH_URL"
_OWN_HEADERS = frozenset({"content-type", "content-encoding", "content-length"})


class DynamicIndexConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    enabled: bool = False


class DynamicIdConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`logs_dynamic_id`: the `elasticsearch.document_id` record attribute is the document id."""

    enabled: bool = False


class LogstashFormatConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`logstash_format`: append the record's date to the index (`logs-generic-default-2024.05.01`)."""

    enabled: bool = False
    prefix_separator: str = "-"
    date_format: str = "%Y.%m.%d"


class MappingConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"dedot", "dedup", "allowed_modes"})

    mode: Literal["otel", "ecs", "none", "raw", "bodymap"] = "otel"


class FlushConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`flush`: a bulk request is sent when it holds `bytes` of NDJSON or its oldest
    document waited `interval` (0 = send each batch as it comes)."""

    bytes: ByteSize = ByteSize(5_000_000)
    interval: Duration = Duration(30.0)


class ElasticsearchRetryConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`retry`: bulk requests and bulk items, with exponential backoff.

    `retry_on_status` applies to items; whole requests are retried on 429 and 5xx and on
    connection errors. Flowglass retries 5xx items too by default (the Collector: only 429),
    since an item answered 5xx was not stored, so resending it cannot duplicate it.
    """

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"max_requests"})

    enabled: bool = True
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=100)] = 2
    initial_interval: Duration = Duration(0.1)
    max_interval: Duration = Duration(60.0)
    retry_on_status: list[int] = msgspec.field(default_factory=lambda: [429, 500, 502, 503, 504])
    #: Flowglass's own: how long a request that fails as a whole (no answer, or 429/5xx to the
    #: whole request: the cluster is down or restarting) keeps being retried; such attempts do
    #: not use up `max_retries`, which bounds the retries of items answered one by one.
    #: 0 retries them until shutdown.
    max_elapsed_time: Duration = Duration(300.0)

    def __post_init__(self) -> None:
        if self.enabled and self.initial_interval <= 0:
            raise ValueError("initial_interval must be greater than 0 when retries are enabled")
        if self.max_interval < self.initial_interval:
            raise ValueError("max_interval must not be less than initial_interval")
        for status in self.retry_on_status:
            if not 400 <= status <= 599:
                raise ValueError(f"retry_on_status: {status} is not an HTTP error status (400-599)")


class DeadLetterConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Flowglass's own: where documents Elasticsearch refused for good go.

    `path`: a file that gets one JSON line per document (`document`, `index`, `id`,
    `status`, `error.type`, `error.reason`); `index`: an index that gets the same as a
    document (the refused document as a JSON string, so it cannot conflict again).

    The file is rotated as the `file` exporter's `rotation` does it: once it would grow past
    `max_megabytes` it is renamed to `<name>-<UTC timestamp>.<ext>` and a new one is
    started; backups beyond `max_backups` or older than `max_days` are removed (0: no limit).
    The defaults bound the dead letter to about 1.1 GB on disk.
    """

    path: str = ""
    index: str = ""
    max_megabytes: Annotated[int, msgspec.Meta(ge=1)] = 100
    max_backups: Annotated[int, msgspec.Meta(ge=0)] = 10
    max_days: Annotated[int, msgspec.Meta(ge=0)] = 0

    def __post_init__(self) -> None:
        if bool(self.path) == bool(self.index):
            raise ValueError("dead_letter needs exactly one of path (a file) or index")


class ElasticsearchExporterConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The Collector's `elasticsearch` exporter options, plus `dead_letter` and `document_id`."""

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({
        "cloudid",
        "auth",
        "discover",
        "telemetry",
        "batcher",
        "metadata_keys",
        "logs_dynamic_pipeline",
        "include_source_on_error",
        "index",
        "metrics_index",
        "metrics_dynamic_index",
        "proxy_url",
        "read_buffer_size",
        "write_buffer_size",
        "max_idle_conns",
        "max_idle_conns_per_host",
        "max_conns_per_host",
        "idle_conn_timeout",
        "disable_keep_alives",
        "cookies",
        "middlewares",
        "compression_params",
        "retry_on_failure",
        "tls.reload_interval",
        "tls.include_system_ca_certs_pool",
        "tls.cipher_suites",
        "tls.curve_preferences",
    }) | SENDING_UPSTREAM_OPTIONS

    endpoint: str = ""
    endpoints: list[str] = msgspec.field(default_factory=list)
    user: str = ""
    password: str = ""
    api_key: str = ""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    tls: TLSClientConfig = msgspec.field(default_factory=TLSClientConfig)
    compression: Literal["gzip", "none", ""] = "gzip"
    timeout: Duration = Duration(90.0)
    logs_index: str = "logs-generic-default"
    traces_index: str = "traces-generic-default"
    logs_dynamic_index: DynamicIndexConfig = msgspec.field(default_factory=DynamicIndexConfig)
    traces_dynamic_index: DynamicIndexConfig = msgspec.field(default_factory=DynamicIndexConfig)
    logs_dynamic_id: DynamicIdConfig = msgspec.field(default_factory=DynamicIdConfig)
    logstash_format: LogstashFormatConfig = msgspec.field(default_factory=LogstashFormatConfig)
    pipeline: str = ""
    mapping: MappingConfig = msgspec.field(default_factory=MappingConfig)
    flush: FlushConfig = msgspec.field(default_factory=FlushConfig)
    num_workers: Annotated[int, msgspec.Meta(ge=0, le=1024)] = 0
    retry: ElasticsearchRetryConfig = msgspec.field(default_factory=ElasticsearchRetryConfig)
    sending_queue: SendingQueueConfig = msgspec.field(default_factory=SendingQueueConfig)
    dead_letter: DeadLetterConfig | None = None
    document_id: Literal["", "hash"] = ""

    def __post_init__(self) -> None:
        if self.endpoint and self.endpoints:
            raise ValueError("set endpoint or endpoints, not both")
        for url in self.urls():
            check_url("endpoint", url)
        if self.api_key and (self.user or self.password):
            raise ValueError("set api_key or user/password, not both")
        if self.password and not self.user:
            raise ValueError("password is set without user")
        for key in self.headers:
            if key.lower() in _OWN_HEADERS:
                raise ValueError(f"headers: {key} is set by the exporter (NDJSON bulk bodies, compression)")
            if key.lower() == "authorization" and (self.user or self.api_key):
                raise ValueError("headers: Authorization is set by user/password or api_key; set only one")
        if not self.logs_index or not self.traces_index:
            raise ValueError("logs_index and traces_index must not be empty")
        for name in ("logs_index", "traces_index"):
            value = getattr(self, name)
            if value != value.lower() or any(c in value for c in '\\/*?"<>| ,#'):
                raise ValueError(f"{name} {value!r} is not a valid index name (lower case, no \\/*?\"<>| ,#)")
        if self.flush.bytes < 1:
            raise ValueError("flush.bytes must be at least 1")

    def urls(self) -> list[str]:
        """The endpoints, from `endpoint`, `endpoints` or `$ELASTICSEARCH_URL` (comma-separated)."""
        if self.endpoint:
            return [self.endpoint]
        if self.endpoints:
            return list(self.endpoints)
        env = [u.strip() for u in os.environ.get(ENV_URL, "").split(",") if u.strip()]
        if not env:
            raise ValueError(f"set endpoint or endpoints (or the {ENV_URL} environment variable)")
        return env

    def workers(self) -> int:
        """Bulk requests in flight at once: `num_workers`, else `sending_queue.num_consumers`."""
        return self.num_workers or self.sending_queue.num_consumers


def _create(settings: Settings, config: ElasticsearchExporterConfig) -> Exporter:
    from agent.exporters.elasticsearch.exporter import ElasticsearchExporter

    return ElasticsearchExporter(settings, config)


FACTORY = ExporterFactory(
    type="elasticsearch",
    config_type=ElasticsearchExporterConfig,
    description="Indexes logs and traces into Elasticsearch or OpenSearch with _bulk (per-item retries, dead letter).",
    signals={Signal.TRACES: Stability.BETA, Signal.LOGS: Stability.BETA},
    create=_create,
)
