"""elasticsearch config: the Collector's option names and defaults, and every validation error."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from agent.components import default_registry
from agent.config import load_text
from agent.config.types import dec_hook
from agent.errors import ConfigError
from agent.exporters.elasticsearch import ElasticsearchExporterConfig

URL = "http://elasticsearch:9200"


def convert(**options: Any) -> ElasticsearchExporterConfig:
    return msgspec.convert({"endpoint": URL, **options}, ElasticsearchExporterConfig, dec_hook=dec_hook)


def test_defaults_are_the_collectors() -> None:
    c = convert()
    assert c.logs_index == "logs-generic-default" and c.traces_index == "traces-generic-default"
    assert c.mapping.mode == "otel"
    assert c.compression == "gzip"
    assert c.timeout == 90.0
    assert c.flush.bytes == 5_000_000 and c.flush.interval == 30.0
    assert c.retry.enabled and c.retry.max_retries == 2
    assert c.retry.initial_interval == 0.1 and c.retry.max_interval == 60.0
    assert not c.logs_dynamic_index.enabled and not c.traces_dynamic_index.enabled
    assert not c.logs_dynamic_id.enabled
    assert c.logstash_format.prefix_separator == "-" and c.logstash_format.date_format == "%Y.%m.%d"
    assert c.dead_letter is None and c.document_id == ""
    dead = convert(dead_letter={"path": "/tmp/dead.jsonl"}).dead_letter
    assert dead is not None and (dead.max_megabytes, dead.max_backups, dead.max_days) == (100, 10, 0)
    assert c.workers() == c.sending_queue.num_consumers
    assert convert(num_workers=3).workers() == 3


def test_endpoints_and_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    c = msgspec.convert({"endpoints": ["http://a:9200", "https://b:9200"]}, ElasticsearchExporterConfig)
    assert c.urls() == ["http://a:9200", "https://b:9200"]
    monkeypatch.setenv("ELASTICSEARCH_URL", "http://x:9200, http://y:9200")
    c = msgspec.convert({}, ElasticsearchExporterConfig)
    assert c.urls() == ["http://x:9200", "http://y:9200"]
    monkeypatch.delenv("ELASTICSEARCH_URL")
    with pytest.raises(msgspec.ValidationError, match="ELASTICSEARCH_URL"):
        msgspec.convert({}, ElasticsearchExporterConfig)


@pytest.mark.parametrize(("options", "message"), [
    ({"endpoints": ["http://b:9200"]}, "not both"),
    ({"endpoint": "elasticsearch:9200"}, "http:// or https://"),
    ({"api_key": "k", "user": "u"}, "not both"),
    ({"password": "p"}, "without user"),
    ({"headers": {"Content-Type": "application/json"}}, "set by the exporter"),
    ({"headers": {"Authorization": "x"}, "api_key": "k"}, "only one"),
    ({"logs_index": "Logs"}, "not a valid index name"),
    ({"traces_index": "a b"}, "not a valid index name"),
    ({"logs_index": ""}, "must not be empty"),
    ({"compression": "zstd"}, "Invalid enum value"),
    ({"mapping": {"mode": "fancy"}}, "Invalid enum value"),
    ({"flush": {"bytes": 0}}, "at least 1"),
    ({"retry": {"retry_on_status": [200]}}, "not an HTTP error status"),
    ({"retry": {"max_interval": "1ms"}}, "max_interval"),
    ({"retry": {"max_retries": -1}}, "Expected"),
    ({"dead_letter": {}}, "exactly one"),
    ({"dead_letter": {"path": "/tmp/x", "index": "dlq"}}, "exactly one"),
    ({"dead_letter": {"path": "/tmp/x", "max_megabytes": 0}}, "Expected `int` >= 1"),
    ({"dead_letter": {"path": "/tmp/x", "max_backups": -1}}, "Expected `int` >= 0"),
    ({"document_id": "uuid"}, "Invalid enum value"),
])
def test_validation_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises((msgspec.ValidationError, ValueError), match=message):
        convert(**options)


@pytest.mark.parametrize("option", [
    "cloudid: abc",
    "discover: {on_start: true}",
    "retry: {max_requests: 3}",
    "mapping: {dedot: true}",
    "metrics_index: metrics-x",
    "sending_queue: {batch: {}}",
])
def test_upstream_options_are_named_as_not_supported(option: str) -> None:
    yaml = f"""
receivers: {{otlp: {{protocols: {{http: {{endpoint: 127.0.0.1:0}}}}}}}}
exporters:
  elasticsearch:
    endpoint: {URL}
    {option}
service: {{pipelines: {{logs: {{receivers: [otlp], exporters: [elasticsearch]}}}}}}
"""
    with pytest.raises(ConfigError, match="not supported by Flowglass"):
        load_text(yaml, registry=default_registry(), environ={})


def test_a_collector_config_loads() -> None:
    yaml = f"""
receivers: {{otlp: {{protocols: {{http: {{endpoint: 127.0.0.1:0}}}}}}}}
exporters:
  elasticsearch:
    endpoint: {URL}
    user: elastic
    password: changeme
    logs_index: my-logs
    logs_dynamic_index: {{enabled: true}}
    logs_dynamic_id: {{enabled: true}}
    logstash_format: {{enabled: true, prefix_separator: "_", date_format: "%Y-%m"}}
    pipeline: my-pipeline
    mapping: {{mode: ecs}}
    flush: {{bytes: 1MiB, interval: 1s}}
    num_workers: 4
    retry: {{enabled: true, max_retries: 5, initial_interval: 50ms, max_interval: 2s, retry_on_status: [429, 503]}}
    sending_queue: {{queue_size: 100}}
    dead_letter: {{path: /tmp/dead.jsonl}}
    document_id: hash
service: {{pipelines: {{logs: {{receivers: [otlp], exporters: [elasticsearch]}}}}}}
"""
    load_text(yaml, registry=default_registry(), environ={})
