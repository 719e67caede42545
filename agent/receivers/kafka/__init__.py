"""`kafka` receiver: consume traces, metrics and logs from Kafka topics in a consumer group (aiokafka).

Signals: traces, metrics, logs — each from its own topics (`traces.topics` default
`[otlp_spans]`, `metrics.topics` `[otlp_metrics]`, `logs.topics` `[otlp_logs]`), subscribed
only when a pipeline uses the receiver for that signal. All of them are read by one
consumer in the group `group_id`, so the partitions of a topic (and, with keyed producers,
the traces in them) are shared out between the agents of a gateway tier.

```yaml
receivers:
  kafka:
    brokers: [kafka-0.kafka:9092]
    group_id: flowglass-gateway
    initial_offset: earliest
    traces:
      topics: [otlp_spans]
    logs:
      topics: [inference_logs]
      encoding: json
    dead_letter_topic: flowglass_dead_letters
```

Encodings: `otlp_proto` (default; the serialized `Export*ServiceRequest` the Collector and
the `kafka` exporter write), `otlp_json`, and for logs `raw` (the bytes become the body),
`text` / `text_<codec>` (decoded text), `json` (a JSON object becomes a log record whose body
is the map, with its timestamp and severity taken from `timestamp` / `time` / `@timestamp` /
`ts` and `severity` / `level` when present).

Guarantees (at-least-once):
- an offset is committed only after `consume()` returned for that record and for every
  record before it in the partition; records of a partition may be in the pipeline
  together (at most `max_in_flight` across partitions; 1 keeps them strictly in order);
- a retryable refusal pauses the partition, backs off (`error_backoff`) and hands the same
  record over again until it is accepted (or `error_backoff.max_elapsed_time`, 0 = never);
- a record that cannot be decoded (poison) is counted, written to `dead_letter_topic` when
  one is set (with the reason in the `flowglass.dead_letter.reason` header) and passed
  over; so is a record the pipeline refused permanently;
- on a rebalance, finished work is committed and records still in flight on revoked
  partitions are given up (their next owner reads them again); `stop_intake()` stops
  fetching, and `shutdown()` lets records in flight finish (bounded), commits and leaves;
- the brokers being unreachable is logged once and retried; the consumer rejoins by itself.

Differences from the Collector: marking is always after the pipeline answered (Collector
`message_marking.after: false`, marking before, is not offered; `on_error: true` neither),
`error_backoff` is on by default, `group_rebalance_strategy` defaults to `roundrobin`
(aiokafka has no cooperative rebalancing), topic regexes are not supported,
`dead_letter_topic` and `max_in_flight` are Flowglass's own.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import msgspec

from agent.component import Consumer, ReceiverFactory, Settings, Stability
from agent.config.kafka import CLIENT_UPSTREAM_OPTIONS, KafkaClientConfig
from agent.config.types import ByteSize, Duration
from agent.model import Signal

if TYPE_CHECKING:
    from agent.receivers.kafka.receiver import KafkaReceiver

DEFAULT_TOPICS = {Signal.TRACES: "otlp_spans", Signal.METRICS: "otlp_metrics", Signal.LOGS: "otlp_logs"}
_ENCODINGS = {
    Signal.TRACES: ("otlp_proto", "otlp_json"),
    Signal.METRICS: ("otlp_proto", "otlp_json"),
    Signal.LOGS: ("otlp_proto", "otlp_json", "raw", "text", "json"),
}
_UPSTREAM_ENCODINGS = frozenset({
    "jaeger_proto", "jaeger_json", "zipkin_proto", "zipkin_json", "zipkin_thrift", "azure_resource_logs",
})
STRATEGIES = ("range", "roundrobin", "sticky")


class TopicEncodingConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`traces`, `metrics`, `logs`: the topics one signal is read from, and their encoding."""

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"exclude_topics", "exclude_topic"})

    topics: list[str] = msgspec.field(default_factory=list)
    #: Deprecated in the Collector: one topic.
    topic: str = ""
    encoding: str = "otlp_proto"


class AutoCommitConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`autocommit`: with `enable`, finished offsets are committed every `interval`; without
    it, as soon as they advance."""

    enable: bool = True
    interval: Duration = Duration(1.0)


class MessageMarkingConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`message_marking`: Flowglass always marks after the pipeline answered (at-least-once)."""

    after: bool = True
    on_error: bool = False
    on_permanent_error: bool = True

    def __post_init__(self) -> None:
        if not self.after:
            raise ValueError(
                "after: false (marking records before the pipeline took them) is not supported: "
                "Flowglass commits a record only once the pipeline accepted it"
            )
        if self.on_error:
            raise ValueError(
                "on_error: true is not supported: a record refused with a retryable error is "
                "retried with error_backoff (set its max_elapsed_time to give up after a while)"
            )
        if not self.on_permanent_error:
            raise ValueError(
                "on_permanent_error: false is not supported: a record the pipeline refuses for "
                "good is counted and passed over (and written to dead_letter_topic when set)"
            )


class HeaderExtractionConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`header_extraction`: the named headers become resource attributes `kafka.header.<name>`."""

    extract_headers: bool = False
    headers: list[str] = msgspec.field(default_factory=list)


class ErrorBackoffConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`error_backoff`: waits before handing a refused record over again.

    The n-th wait is `initial_interval * multiplier**(n-1)`, at most `max_interval`, spread
    by `± randomization_factor`; after `max_elapsed_time` (0 = never) the record is given up,
    counted and passed over.
    """

    enabled: bool = True
    initial_interval: Duration = Duration(0.5)
    max_interval: Duration = Duration(30.0)
    multiplier: Annotated[float, msgspec.Meta(ge=1.0)] = 1.5
    randomization_factor: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5
    max_elapsed_time: Duration = Duration(0.0)

    def __post_init__(self) -> None:
        if not self.enabled:
            raise ValueError(
                "enabled: false is not supported: Flowglass always backs off before handing a "
                "refused record over again"
            )
        if self.initial_interval <= 0:
            raise ValueError("initial_interval must be greater than 0")
        if self.max_interval < self.initial_interval:
            raise ValueError("max_interval must not be less than initial_interval")


class KafkaReceiverConfig(KafkaClientConfig, forbid_unknown_fields=True, omit_defaults=True):
    """The Collector's `kafka` receiver options (client, consumer group, topics, marking)."""

    __upstream_options__: ClassVar[frozenset[str]] = CLIENT_UPSTREAM_OPTIONS | frozenset({
        "profiles", "topic", "encoding", "default_fetch_size", "partition_processing", "telemetry",
    })

    traces: TopicEncodingConfig = msgspec.field(default_factory=TopicEncodingConfig)
    metrics: TopicEncodingConfig = msgspec.field(default_factory=TopicEncodingConfig)
    logs: TopicEncodingConfig = msgspec.field(default_factory=TopicEncodingConfig)
    group_id: str = "flowglass"
    group_instance_id: str = ""
    initial_offset: Literal["latest", "earliest"] = "latest"
    session_timeout: Duration = Duration(10.0)
    heartbeat_interval: Duration = Duration(3.0)
    group_rebalance_strategy: str = ""
    group_rebalance_strategies: list[str] = msgspec.field(default_factory=list)
    autocommit: AutoCommitConfig = msgspec.field(default_factory=AutoCommitConfig)
    message_marking: MessageMarkingConfig = msgspec.field(default_factory=MessageMarkingConfig)
    header_extraction: HeaderExtractionConfig = msgspec.field(default_factory=HeaderExtractionConfig)
    error_backoff: ErrorBackoffConfig = msgspec.field(default_factory=ErrorBackoffConfig)
    min_fetch_size: Annotated[int, msgspec.Meta(ge=1)] = 1
    max_fetch_size: ByteSize = ByteSize(1_048_576)
    max_fetch_wait: Duration = Duration(0.25)
    max_partition_fetch_size: ByteSize = ByteSize(1_048_576)
    #: Flowglass's own: undecodable or permanently refused records are written here.
    dead_letter_topic: str = ""
    #: Flowglass's own: records handed to the pipelines and not yet answered, in all.
    max_in_flight: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.group_id.strip():
            raise ValueError("group_id must not be empty")
        if self.session_timeout <= 0 or self.heartbeat_interval <= 0:
            raise ValueError("session_timeout and heartbeat_interval must be greater than 0")
        if self.heartbeat_interval >= self.session_timeout:
            raise ValueError(
                f"heartbeat_interval ({self.heartbeat_interval:g}s) must be less than "
                f"session_timeout ({self.session_timeout:g}s)"
            )
        if self.max_fetch_size < self.min_fetch_size:
            raise ValueError("max_fetch_size must not be less than min_fetch_size")
        self._check_strategies()
        self._check_topics()

    def _check_strategies(self) -> None:
        if self.group_rebalance_strategy and self.group_rebalance_strategies:
            raise ValueError("set group_rebalance_strategies or the older group_rebalance_strategy, not both")
        for name in self.strategies:
            if name == "cooperative-sticky":
                raise ValueError(
                    "the cooperative-sticky rebalance strategy is not supported by Flowglass's Kafka "
                    "client; use sticky, range or roundrobin"
                )
            if name not in STRATEGIES:
                raise ValueError(f"unknown rebalance strategy {name!r}; use one of {', '.join(STRATEGIES)}")

    def _check_topics(self) -> None:
        owner: dict[str, Signal] = {}
        for signal in Signal:
            tc = self.signal(signal)
            if tc.topic and tc.topics:
                raise ValueError(f"set {signal.value}.topics or the older {signal.value}.topic, not both")
            tc.topics = tc.topics or [tc.topic or DEFAULT_TOPICS[signal]]
            tc.topic = ""
            for topic in tc.topics:
                if not topic.strip():
                    raise ValueError(f"{signal.value}.topics must not hold an empty name")
                if topic.startswith("^"):
                    raise ValueError(
                        f"{signal.value}.topics: topic patterns ({topic!r}) are not supported by Flowglass; "
                        "list the topics by name"
                    )
                if topic in owner:
                    raise ValueError(
                        f"topic {topic!r} is read for both {owner[topic].value} and {signal.value}; "
                        "a topic holds one signal"
                    )
                owner[topic] = signal
            encoding = tc.encoding
            if encoding in _UPSTREAM_ENCODINGS:
                raise ValueError(f"{signal.value}.encoding {encoding} is not supported by Flowglass")
            if signal is Signal.LOGS and encoding.startswith("text_"):
                try:
                    codecs.lookup(encoding[len("text_"):])
                except LookupError:
                    raise ValueError(f"logs.encoding {encoding!r}: no text encoding by that name") from None
            elif encoding not in _ENCODINGS[signal]:
                raise ValueError(
                    f"{signal.value}.encoding {encoding!r} is not known; use one of {', '.join(_ENCODINGS[signal])}"
                )

    @property
    def strategies(self) -> list[str]:
        """The rebalance strategies to offer, in order of preference."""
        if self.group_rebalance_strategies:
            return list(self.group_rebalance_strategies)
        return [self.group_rebalance_strategy or "roundrobin"]

    def signal(self, signal: Signal) -> TopicEncodingConfig:
        return {Signal.TRACES: self.traces, Signal.METRICS: self.metrics, Signal.LOGS: self.logs}[signal]


def create(settings: Settings, config: KafkaReceiverConfig, consumers: Mapping[Signal, Consumer]) -> KafkaReceiver:
    # Imported here so that validating a config does not load aiokafka.
    from agent.receivers.kafka.receiver import KafkaReceiver

    return KafkaReceiver(settings, config, consumers)


FACTORY = ReceiverFactory(
    type="kafka",
    config_type=KafkaReceiverConfig,
    description="Consumes traces, metrics and logs from Kafka topics in a consumer group, at least once.",
    signals={Signal.TRACES: Stability.BETA, Signal.METRICS: Stability.BETA, Signal.LOGS: Stability.BETA},
    create=create,
)

__all__ = [
    "FACTORY",
    "AutoCommitConfig",
    "ErrorBackoffConfig",
    "HeaderExtractionConfig",
    "KafkaReceiverConfig",
    "MessageMarkingConfig",
    "TopicEncodingConfig",
]
