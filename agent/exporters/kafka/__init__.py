"""`kafka` exporter: write traces, metrics and logs to Kafka topics (aiokafka).

Signals: traces, metrics, logs. Each batch becomes one or more Kafka records on the
signal's topic (`traces.topic` default `otlp_spans`, `metrics.topic` `otlp_metrics`,
`logs.topic` `otlp_logs`; the older top-level `topic` and `encoding` set all three).

```yaml
exporters:
  kafka:
    brokers: [kafka-0.kafka:9092, kafka-1.kafka:9092]
    traces:
      topic: otlp_spans
    partition_traces_by_id: true      # key = trace id (hex): a trace stays in one partition
    producer:
      compression: zstd
      max_message_bytes: 1000000
    sending_queue: {queue_size: 1000}
```

Encodings: `otlp_proto` (default: the record value is exactly the serialized
`Export*ServiceRequest`, as the Collector writes it — the bytes the agent received are
forwarded untouched when nothing split the batch), `otlp_json`, and for logs `raw` (the body
of each log record: bytes as they are, anything else as JSON) and `json` (one JSON object per
log record: a map body's keys, or `body`, plus `timestamp`, `severity` and the trace ids).

Keys and partitions: `partition_traces_by_id` splits a batch so that each record holds one
trace and is keyed by its hex trace id; `partition_logs_by_trace_id` does the same for logs
(records without a trace id are unkeyed); `partition_metrics_by_resource_attributes` /
`partition_logs_by_resource_attributes` give one record per resource keyed by a hash of its
attributes. Keys map to partitions as the Collector maps them (`record_partitioner.
sticky_key.hasher`: `sarama_compat` FNV-1a by default, or `murmur2` as Java clients do), so
Flowglass and Collector edges can share a topic. `topic_from_attribute` routes each resource
to the topic its attribute names; `<signal>.topic_from_metadata_key` and
`message_key_from_metadata_key` read the sender's metadata (receiver `include_metadata`).

Guarantees: a record larger than `producer.max_message_bytes` is never sent — its batch is
split into smaller records, and a single item that alone is over the limit is dropped,
counted (`flowglass_exporter_send_failed_items_total{reason="message_too_large"}`) and
reported upstream as a partial refusal. A batch is counted sent only when every record was
acknowledged (`producer.required_acks`); a retry sends only the records not yet
acknowledged, and waits for a record still in flight instead of sending it again. The
broker being unreachable — at start or later — is a retryable error: batches wait in the
sending queue and are retried (`agent.exporters.sending`), with one log line when the
brokers are lost and one when they are back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import msgspec

from agent.component import ExporterFactory, Settings, Stability
from agent.config.kafka import CLIENT_UPSTREAM_OPTIONS, KafkaClientConfig
from agent.config.types import ByteSize, Duration
from agent.exporters.sending import SENDING_UPSTREAM_OPTIONS, RetryConfig, SendingQueueConfig
from agent.model import Signal

if TYPE_CHECKING:
    from agent.exporters.kafka.exporter import KafkaExporter

DEFAULT_TOPICS = {Signal.TRACES: "otlp_spans", Signal.METRICS: "otlp_metrics", Signal.LOGS: "otlp_logs"}
ENCODINGS = {
    Signal.TRACES: ("otlp_proto", "otlp_json"),
    Signal.METRICS: ("otlp_proto", "otlp_json"),
    Signal.LOGS: ("otlp_proto", "otlp_json", "raw", "json"),
}
#: Collector encodings Flowglass does not write.
_UPSTREAM_ENCODINGS = frozenset({"jaeger_proto", "jaeger_json", "zipkin_proto", "zipkin_json"})


class SignalConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`traces`, `metrics`, `logs`: where and how one signal is written.

    Empty `topic` / `encoding` mean: the top-level `topic` / `encoding` if set, else the
    signal's default.
    """

    topic: str = ""
    encoding: str = ""
    #: Metadata key (receiver `include_metadata`) whose value names the topic.
    topic_from_metadata_key: str = ""
    #: Metadata key whose value becomes the record key.
    message_key_from_metadata_key: str = ""


class StickyKeyConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    hasher: Literal["sarama_compat", "murmur2"] = "sarama_compat"


class RecordPartitionerConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`record_partitioner`: how keyed records map to partitions (unkeyed ones go to a random one)."""

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"round_robin", "least_backup", "extension"})

    sticky_key: StickyKeyConfig = msgspec.field(default_factory=StickyKeyConfig)


class ProducerConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`producer`: the Collector's producer options (`configkafka.ProducerConfig`)."""

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"compression_params", "flush_max_messages"})

    #: Largest record value (plus key and headers), before compression.
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] = 1_000_000
    #: Largest produce request sent to one broker.
    max_broker_write_bytes: ByteSize = ByteSize(104_857_600)
    #: 0 (no answer), 1 (the leader wrote it) or -1 / "all" (every in-sync replica did).
    required_acks: Literal[-1, 0, 1, "all"] = 1
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    #: How long records wait to be sent together.
    linger: Duration = Duration(0.01)
    allow_auto_topic_creation: bool = True

    def __post_init__(self) -> None:
        if self.max_broker_write_bytes < self.max_message_bytes:
            raise ValueError(
                f"max_broker_write_bytes ({self.max_broker_write_bytes}) must not be less than "
                f"max_message_bytes ({self.max_message_bytes})"
            )
        if not self.allow_auto_topic_creation:
            raise ValueError(
                "allow_auto_topic_creation: false is not supported by Flowglass: its Kafka client "
                "always lets the broker decide; create the topics up front and disable automatic "
                "creation on the broker instead"
            )

    @property
    def acks(self) -> int | str:
        """The value aiokafka takes."""
        return "all" if self.required_acks in (-1, "all") else int(self.required_acks)


class KafkaExporterConfig(KafkaClientConfig, forbid_unknown_fields=True, omit_defaults=True):
    """The Collector's `kafka` exporter options, plus `sending_queue`, `retry_on_failure`, `timeout`."""

    __upstream_options__: ClassVar[frozenset[str]] = (
        CLIENT_UPSTREAM_OPTIONS | SENDING_UPSTREAM_OPTIONS | frozenset({"profiles"})
    )

    traces: SignalConfig = msgspec.field(default_factory=SignalConfig)
    metrics: SignalConfig = msgspec.field(default_factory=SignalConfig)
    logs: SignalConfig = msgspec.field(default_factory=SignalConfig)
    #: Deprecated in the Collector: the topic / encoding of every signal not set per signal.
    topic: str = ""
    encoding: str = ""
    topic_from_attribute: str = ""
    include_metadata_keys: list[str] = msgspec.field(default_factory=list)
    record_headers: dict[str, str] = msgspec.field(default_factory=dict)
    partition_traces_by_id: bool = False
    partition_metrics_by_resource_attributes: bool = False
    partition_logs_by_resource_attributes: bool = False
    partition_logs_by_trace_id: bool = False
    record_partitioner: RecordPartitionerConfig = msgspec.field(default_factory=RecordPartitionerConfig)
    producer: ProducerConfig = msgspec.field(default_factory=ProducerConfig)
    timeout: Duration = Duration(5.0)
    sending_queue: SendingQueueConfig = msgspec.field(default_factory=SendingQueueConfig)
    retry_on_failure: RetryConfig = msgspec.field(default_factory=RetryConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.partition_logs_by_resource_attributes and self.partition_logs_by_trace_id:
            raise ValueError(
                "partition_logs_by_resource_attributes and partition_logs_by_trace_id cannot both be enabled"
            )
        for signal in Signal:
            sc = self.signal(signal)
            sc.topic = sc.topic or self.topic or DEFAULT_TOPICS[signal]
            sc.encoding = sc.encoding or self.encoding or "otlp_proto"
            if sc.encoding in _UPSTREAM_ENCODINGS:
                raise ValueError(f"{signal.value}.encoding {sc.encoding} is not supported by Flowglass")
            if sc.encoding not in ENCODINGS[signal]:
                raise ValueError(
                    f"{signal.value}.encoding {sc.encoding!r} is not known; use one of "
                    + ", ".join(ENCODINGS[signal])
                )
            if sc.message_key_from_metadata_key and self.partitions_by_data(signal):
                raise ValueError(
                    f"{signal.value}.message_key_from_metadata_key cannot be combined with "
                    f"partitioning {signal.value} by their data"
                )

    def signal(self, signal: Signal) -> SignalConfig:
        return {Signal.TRACES: self.traces, Signal.METRICS: self.metrics, Signal.LOGS: self.logs}[signal]

    def partitions_by_data(self, signal: Signal) -> bool:
        """Whether records of `signal` are keyed by what they hold."""
        if signal is Signal.TRACES:
            return self.partition_traces_by_id
        if signal is Signal.METRICS:
            return self.partition_metrics_by_resource_attributes
        return self.partition_logs_by_trace_id or self.partition_logs_by_resource_attributes


def create(settings: Settings, config: KafkaExporterConfig) -> KafkaExporter:
    # Imported here so that validating a config does not load aiokafka.
    from agent.exporters.kafka.exporter import KafkaExporter

    return KafkaExporter(settings, config)


FACTORY = ExporterFactory(
    type="kafka",
    config_type=KafkaExporterConfig,
    description="Writes traces, metrics and logs to Kafka topics (OTLP protobuf or JSON, raw or JSON logs).",
    signals={Signal.TRACES: Stability.BETA, Signal.METRICS: Stability.BETA, Signal.LOGS: Stability.BETA},
    create=create,
)

__all__ = [
    "FACTORY",
    "KafkaExporterConfig",
    "ProducerConfig",
    "RecordPartitionerConfig",
    "SignalConfig",
]
