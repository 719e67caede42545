"""The kafka exporter's options: Collector names and defaults, every validation error, through the config layer."""

from __future__ import annotations

import msgspec
import pytest

from agent.components import default_registry
from agent.config import ConfigError, load_text
from agent.config.types import dec_hook
from agent.exporters.kafka import KafkaExporterConfig
from agent.model import Signal


def _config(options: dict[str, object]) -> KafkaExporterConfig:
    return msgspec.convert(options, KafkaExporterConfig, dec_hook=dec_hook)


def problems(exporter_yaml: str) -> list[str]:
    text = (
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n"
        f"exporters:\n  kafka:\n{exporter_yaml}\n"
        "service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [kafka]\n"
    )
    try:
        load_text(text, registry=default_registry(), environ={})
    except ConfigError as exc:
        return exc.problems
    return []


def test_defaults_are_the_collectors() -> None:
    c = _config({})
    assert c.brokers == ["localhost:9092"]
    assert c.client_id == "flowglass"
    assert (c.traces.topic, c.metrics.topic, c.logs.topic) == ("otlp_spans", "otlp_metrics", "otlp_logs")
    assert {c.signal(s).encoding for s in Signal} == {"otlp_proto"}
    p = c.producer
    assert (p.max_message_bytes, p.required_acks, p.compression) == (1_000_000, 1, "none")
    assert p.linger == pytest.approx(0.01) and p.max_broker_write_bytes == 104_857_600
    assert c.timeout == 5.0 and c.sending_queue.queue_size == 1000 and c.retry_on_failure.enabled
    assert not c.partition_traces_by_id and c.record_partitioner.sticky_key.hasher == "sarama_compat"
    assert not c.tls_enabled and c.auth.sasl is None


def test_the_older_top_level_topic_and_encoding_fill_signals_not_set() -> None:
    c = _config({"topic": "all", "encoding": "otlp_json", "traces": {"topic": "spans"}})
    assert (c.traces.topic, c.metrics.topic, c.logs.topic) == ("spans", "all", "all")
    assert {c.signal(s).encoding for s in Signal} == {"otlp_json"}


def test_required_acks_all_means_every_replica() -> None:
    assert _config({"producer": {"required_acks": "all"}}).producer.acks == "all"
    assert _config({"producer": {"required_acks": -1}}).producer.acks == "all"
    assert _config({"producer": {"required_acks": 0}}).producer.acks == 0


@pytest.mark.parametrize(("yaml", "problem"), [
    ("    brokers: []", "exporters.kafka: brokers must list at least one host:port"),
    ("    brokers: [kafka]", "exporters.kafka: broker 'kafka' must be host:port"),
    ("    protocol_version: two", "exporters.kafka: protocol_version 'two' must be a Kafka version such as 2.1.0"),
    ("    traces: {encoding: raw}", "exporters.kafka: traces.encoding 'raw' is not known; use one of otlp_proto, otlp_json"),
    ("    traces: {encoding: jaeger_proto}", "exporters.kafka: traces.encoding jaeger_proto is not supported by Flowglass"),
    ("    partition_logs_by_trace_id: true\n    partition_logs_by_resource_attributes: true",
     "exporters.kafka: partition_logs_by_resource_attributes and partition_logs_by_trace_id cannot both be enabled"),
    ("    producer: {compression: brotli}",
     "exporters.kafka.producer.compression: invalid value 'brotli' (expected one of: 'gzip', 'lz4', 'none', 'snappy', 'zstd')"),
    ("    producer: {required_acks: 2}", "exporters.kafka.producer.required_acks: invalid value 2 (expected one of: -1, 0, 1, 'all')"),
    ("    producer: {max_message_bytes: 2000000, max_broker_write_bytes: 1000000}",
     "exporters.kafka.producer: max_broker_write_bytes (1000000) must not be less than max_message_bytes (2000000)"),
    ("    producer: {allow_auto_topic_creation: false}",
     "exporters.kafka.producer: allow_auto_topic_creation: false is not supported by Flowglass: its Kafka client "
     "always lets the broker decide; create the topics up front and disable automatic creation on the broker instead"),
    ("    partition_traces_by_id: true\n    traces: {message_key_from_metadata_key: tenant}",
     "exporters.kafka: traces.message_key_from_metadata_key cannot be combined with partitioning traces by their data"),
    ("    auth: {sasl: {mechanism: SCRAM-SHA-512, username: u}}",
     "exporters.kafka.auth.sasl: password is required for SASL SCRAM-SHA-512"),
    ("    auth: {sasl: {mechanism: OAUTHBEARER}}",
     "exporters.kafka.auth.sasl: mechanism OAUTHBEARER is not supported by Flowglass; use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
    ("    tls: {server_name_override: kafka}",
     "exporters.kafka: tls.server_name_override is not supported by the Kafka client: it checks the certificate "
     "against each broker's advertised host name"),
])
def test_validation_errors_say_what_is_wrong(yaml: str, problem: str) -> None:
    found = problems(yaml)
    assert found == [problem], found


@pytest.mark.parametrize("option", [
    "    producer: {flush_max_messages: 100}",
    "    producer: {compression_params: {level: 3}}",
    "    record_partitioner: {round_robin: {}}",
    "    auth: {kerberos: {realm: X}}",
    "    metadata: {full: false}",
    "    resolve_canonical_bootstrap_servers_only: true",
    "    sending_queue: {batch: {}}",
    "    profiles: {topic: p}",
])
def test_collector_options_not_implemented_are_named(option: str) -> None:
    [found] = problems(option)
    assert "is not supported by Flowglass" in found, found


def test_tls_and_sasl_become_client_options(tmp_path: object) -> None:
    c = _config({"tls": {"insecure": True}, "auth": {"sasl": {"mechanism": "SCRAM-SHA-256", "username": "u",
                                                                "password": "p"}}})
    options = c.client_options()
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert (options["sasl_mechanism"], options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "SCRAM-SHA-256", "u", "p")
    tls = _config({"tls": None, "auth": {"plain_text": {"username": "u", "password": "p"}}})
    options = tls.client_options()
    assert options["security_protocol"] == "SASL_SSL" and options["ssl_context"] is not None
    assert options["sasl_mechanism"] == "PLAIN"
    assert "p" not in str(tls.describe().values())
