"""`prometheusremotewrite`: send metrics to Prometheus, VictoriaMetrics, Mimir, ... (Remote Write 1.0).

Each batch is translated to Prometheus series (`agent.model.prometheus`: names with unit and
type suffixes, `job`/`instance`, `target_info`, histograms as `_bucket{le}`/`_sum`/`_count`,
exponential histograms as native histograms), grouped per series, and POSTed as a
`prometheus.WriteRequest` in block-format snappy with the Remote Write 1.0 headers.
Exemplars (trace and span ids) travel with counters and with the bucket of their value;
`send_metadata` adds the type, help and unit of each family.

```yaml
exporters:
  prometheusremotewrite:
    endpoint: http://prometheus:9090/api/v1/write
    namespace: ml
    external_labels: {cluster: eu-1}
    resource_to_telemetry_conversion: {enabled: false}
    remote_write_queue: {queue_size: 10000, num_consumers: 5}
    bearer_token: ${env:PROM_TOKEN}      # Flowglass's own; the Collector uses `auth`
```

Guarantees:
- Samples of one series are sent in order: series are sharded by a hash of their labels
  over `num_consumers` senders, each with its own bounded queue and one request in flight.
  Requests that wait while their shard's request is in flight go out merged into one
  (up to `max_batch_size_bytes`), so a slow server gets fewer, larger requests.
- 429 and 5xx are retried with backoff, honouring `Retry-After`; connection errors and
  timeouts are retried. Other 4xx answers are permanent: Prometheus answers 400 and
  rejects the whole request when one sample is out of order or out of bounds, so the
  request is split in halves and resent until the rejected series are found; those are
  counted by reason (`flowglass_exporter_prometheus_rejected_samples`) and dropped, the rest
  is delivered.
- Delta sums and histograms are converted to cumulative (the Collector drops them), with
  at most `delta_to_cumulative.max_streams` series of state; a series not updated for
  `delta_to_cumulative.max_stale` is forgotten.
- A batch is refused upstream (retryable) when a shard's queue is full, before any
  delta state changes; what cannot be queued after translation is counted as dropped.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from agent.component import Exporter, ExporterFactory, Settings, Stability
from agent.config.tls import TLSClientConfig
from agent.config.types import ByteSize, Duration
from agent.exporters.http import check_url
from agent.exporters.sending import RetryConfig
from agent.model import Signal


class RemoteWriteQueueConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`remote_write_queue`: `queue_size` requests in all, spread over `num_consumers` shards."""

    enabled: bool = True
    queue_size: Annotated[int, msgspec.Meta(ge=1)] = 10000
    num_consumers: Annotated[int, msgspec.Meta(ge=1, le=256)] = 5


class EnabledConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    enabled: bool = False


class TargetInfoConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    enabled: bool = True


class DeltaToCumulativeConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Flowglass's own: bounds of the delta → cumulative state (the Collector drops deltas)."""

    max_streams: Annotated[int, msgspec.Meta(ge=1)] = 100_000
    max_stale: Duration = Duration(300.0)


class BasicAuthConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Flowglass's own (the Collector uses the `basicauth` extension through `auth`)."""

    username: str
    password: str = ""


def _default_retry() -> RetryConfig:
    # The Collector's prometheusremotewrite defaults, shorter than exporterhelper's.
    return RetryConfig(initial_interval=Duration(0.05), max_interval=Duration(0.2),
                       max_elapsed_time=Duration(60.0))


class PrometheusRemoteWriteExporterConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The Collector's `prometheusremotewrite` options, plus `basic_auth`, `bearer_token` and
    `delta_to_cumulative` of Flowglass's own."""

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({
        "auth",
        "wal",
        "proxy_url",
        "max_batch_request_parallelism",
        "protobuf_message",
        "sending_queue",
        "cookies",
        "middlewares",
        "tls.reload_interval",
        "tls.include_system_ca_certs_pool",
        "tls.cipher_suites",
        "tls.curve_preferences",
    })

    endpoint: str = ""
    timeout: Duration = Duration(5.0)
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    tls: TLSClientConfig = msgspec.field(default_factory=TLSClientConfig)
    compression: str = "snappy"
    namespace: str = ""
    external_labels: dict[str, str] = msgspec.field(default_factory=dict)
    max_batch_size_bytes: ByteSize = ByteSize(3_000_000)
    add_metric_suffixes: bool = True
    send_metadata: bool = False
    resource_to_telemetry_conversion: EnabledConfig = msgspec.field(default_factory=EnabledConfig)
    target_info: TargetInfoConfig = msgspec.field(default_factory=TargetInfoConfig)
    export_created_metric: EnabledConfig = msgspec.field(default_factory=EnabledConfig)
    remote_write_queue: RemoteWriteQueueConfig = msgspec.field(default_factory=RemoteWriteQueueConfig)
    retry_on_failure: RetryConfig = msgspec.field(default_factory=_default_retry)
    read_buffer_size: ByteSize = ByteSize(0)
    write_buffer_size: ByteSize = ByteSize(512 * 1024)
    basic_auth: BasicAuthConfig | None = None
    bearer_token: str = ""
    delta_to_cumulative: DeltaToCumulativeConfig = msgspec.field(default_factory=DeltaToCumulativeConfig)

    def __post_init__(self) -> None:
        if not self.endpoint:
            raise ValueError("endpoint is required: the remote write URL, like http://prometheus:9090/api/v1/write")
        check_url("endpoint", self.endpoint)
        if self.max_batch_size_bytes < 1:
            raise ValueError("max_batch_size_bytes must be at least 1")
        if self.compression != "snappy":
            raise ValueError(
                f"compression {self.compression!r}: Remote Write 1.0 bodies are snappy-compressed; "
                "leave compression at snappy"
            )
        if self.export_created_metric.enabled:
            raise ValueError("export_created_metric: `_created` series are not supported by Flowglass")
        if self.basic_auth is not None and self.bearer_token:
            raise ValueError("set basic_auth or bearer_token, not both")
        for key in self.headers:
            if key.lower() in ("content-type", "content-encoding", "x-prometheus-remote-write-version"):
                raise ValueError(f"headers: {key} is set by the exporter (Remote Write 1.0)")
            if key.lower() == "authorization" and (self.basic_auth is not None or self.bearer_token):
                raise ValueError("headers: Authorization is set by basic_auth or bearer_token; set only one")
        for name in self.external_labels:
            if not name or name.startswith("__"):
                raise ValueError(f"external_labels: {name!r} is not a usable label name")


def _create(settings: Settings, config: PrometheusRemoteWriteExporterConfig) -> Exporter:
    from agent.exporters.prometheusremotewrite.exporter import PrometheusRemoteWriteExporter

    return PrometheusRemoteWriteExporter(settings, config)


FACTORY = ExporterFactory(
    type="prometheusremotewrite",
    config_type=PrometheusRemoteWriteExporterConfig,
    description="Sends metrics to a Prometheus Remote Write 1.0 endpoint (Prometheus, VictoriaMetrics, ...).",
    signals={Signal.METRICS: Stability.BETA},
    create=_create,
)
