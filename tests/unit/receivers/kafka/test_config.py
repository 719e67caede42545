"""The kafka receiver's options: Collector names and defaults, every validation error, through the config layer."""

from __future__ import annotations

import msgspec
import pytest

from agent.components import default_registry
from agent.config import ConfigError, load_text
from agent.config.types import dec_hook
from agent.receivers.kafka import KafkaReceiverConfig


def _config(options: dict[str, object]) -> KafkaReceiverConfig:
    return msgspec.convert(options, KafkaReceiverConfig, dec_hook=dec_hook)


def problems(receiver_yaml: str) -> list[str]:
    text = (
        f"receivers:\n  kafka:\n{receiver_yaml}\n"
        "exporters:\n  debug:\n"
        "service:\n  pipelines:\n    logs:\n      receivers: [kafka]\n      exporters: [debug]\n"
    )
    try:
        load_text(text, registry=default_registry(), environ={})
    except ConfigError as exc:
        return exc.problems
    return []


def test_defaults() -> None:
    c = _config({})
    assert (c.traces.topics, c.metrics.topics, c.logs.topics) == (["otlp_spans"], ["otlp_metrics"], ["otlp_logs"])
    assert c.traces.encoding == "otlp_proto"
    assert (c.group_id, c.client_id, c.initial_offset) == ("flowglass", "flowglass", "latest")
    assert (c.session_timeout, c.heartbeat_interval) == (10.0, 3.0)
    assert c.autocommit.enable and c.autocommit.interval == 1.0
    assert c.message_marking.after and not c.message_marking.on_error
    assert not c.header_extraction.extract_headers
    assert c.error_backoff.max_elapsed_time == 0 and c.error_backoff.initial_interval == 0.5
    assert (c.min_fetch_size, c.max_fetch_size, c.max_partition_fetch_size) == (1, 1_048_576, 1_048_576)
    assert c.max_fetch_wait == 0.25 and c.strategies == ["roundrobin"]
    assert c.dead_letter_topic == "" and c.max_in_flight == 64


def test_the_older_single_topic_still_works() -> None:
    assert _config({"logs": {"topic": "inference"}}).logs.topics == ["inference"]


def test_text_encodings_name_a_codec() -> None:
    assert _config({"logs": {"encoding": "text_shift_jis"}}).logs.encoding == "text_shift_jis"


@pytest.mark.parametrize(("yaml", "problem"), [
    ("    initial_offset: newest",
     "receivers.kafka.initial_offset: invalid value 'newest' (expected one of: 'earliest', 'latest')"),
    ("    session_timeout: 2s\n    heartbeat_interval: 3s",
     "receivers.kafka: heartbeat_interval (3s) must be less than session_timeout (2s)"),
    ("    group_id: ''", "receivers.kafka: group_id must not be empty"),
    ("    logs: {topic: a, topics: [b]}", "receivers.kafka: set logs.topics or the older logs.topic, not both"),
    ("    logs: {topics: ['^logs-.*']}",
     "receivers.kafka: logs.topics: topic patterns ('^logs-.*') are not supported by Flowglass; list the topics by name"),
    ("    logs: {topics: [shared]}\n    traces: {topics: [shared]}",
     "receivers.kafka: topic 'shared' is read for both traces and logs; a topic holds one signal"),
    ("    traces: {encoding: text}",
     "receivers.kafka: traces.encoding 'text' is not known; use one of otlp_proto, otlp_json"),
    ("    logs: {encoding: text_klingon}", "receivers.kafka: logs.encoding 'text_klingon': no text encoding by that name"),
    ("    traces: {encoding: zipkin_thrift}", "receivers.kafka: traces.encoding zipkin_thrift is not supported by Flowglass"),
    ("    group_rebalance_strategy: cooperative-sticky",
     "receivers.kafka: the cooperative-sticky rebalance strategy is not supported by Flowglass's Kafka client; "
     "use sticky, range or roundrobin"),
    ("    group_rebalance_strategies: [fair]",
     "receivers.kafka: unknown rebalance strategy 'fair'; use one of range, roundrobin, sticky"),
    ("    message_marking: {after: false}",
     "receivers.kafka.message_marking: after: false (marking records before the pipeline took them) is not "
     "supported: Flowglass commits a record only once the pipeline accepted it"),
    ("    message_marking: {after: true, on_error: true}",
     "receivers.kafka.message_marking: on_error: true is not supported: a record refused with a retryable error "
     "is retried with error_backoff (set its max_elapsed_time to give up after a while)"),
    ("    error_backoff: {enabled: false}",
     "receivers.kafka.error_backoff: enabled: false is not supported: Flowglass always backs off before handing "
     "a refused record over again"),
    ("    max_in_flight: 0", "receivers.kafka.max_in_flight: expected int >= 1"),
])
def test_validation_errors_say_what_is_wrong(yaml: str, problem: str) -> None:
    found = problems(yaml)
    assert found == [problem], found


@pytest.mark.parametrize("option", [
    "    partition_processing: {independent: true}",
    "    telemetry: {metrics: {}}",
    "    default_fetch_size: 100",
    "    logs: {exclude_topics: [x]}",
    "    use_leader_epoch: false",
    "    auth: {kerberos: {realm: X}}",
])
def test_collector_options_not_implemented_are_named(option: str) -> None:
    [found] = problems(option)
    assert "is not supported by Flowglass" in found, found


def test_a_pasted_at_least_once_marking_config_is_accepted() -> None:
    assert problems("    message_marking: {after: true, on_error: false}\n    autocommit: {enable: true}") == []
