"""prometheusremotewrite config: the Collector's defaults, and every validation error."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from agent.components import default_registry
from agent.config import load_text
from agent.config.types import dec_hook
from agent.errors import ConfigError
from agent.exporters.prometheusremotewrite import PrometheusRemoteWriteExporterConfig

URL = "http://prometheus:9090/api/v1/write"


def convert(**options: Any) -> PrometheusRemoteWriteExporterConfig:
    return msgspec.convert({"endpoint": URL, **options}, PrometheusRemoteWriteExporterConfig, dec_hook=dec_hook)


def test_defaults_are_the_collectors() -> None:
    c = convert()
    assert c.timeout == 5.0
    assert c.max_batch_size_bytes == 3_000_000
    assert c.remote_write_queue.queue_size == 10000 and c.remote_write_queue.num_consumers == 5
    assert c.retry_on_failure.initial_interval == 0.05
    assert c.retry_on_failure.max_interval == 0.2
    assert c.retry_on_failure.max_elapsed_time == 60
    assert c.add_metric_suffixes and c.target_info.enabled
    assert not c.resource_to_telemetry_conversion.enabled


@pytest.mark.parametrize(("options", "message"), [
    ({"endpoint": ""}, "endpoint is required"),
    ({"endpoint": "prometheus:9090"}, "http:// or https://"),
    ({"compression": "gzip"}, "snappy"),
    ({"export_created_metric": {"enabled": True}}, "not supported"),
    ({"basic_auth": {"username": "u"}, "bearer_token": "t"}, "not both"),
    ({"headers": {"Content-Encoding": "gzip"}}, "set by the exporter"),
    ({"headers": {"Authorization": "x"}, "bearer_token": "t"}, "only one"),
    ({"external_labels": {"__name__": "x"}}, "not a usable label name"),
    ({"max_batch_size_bytes": 0}, "at least 1"),
])
def test_validation_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises((msgspec.ValidationError, ValueError), match=message):
        convert(**options)


def test_upstream_options_are_named_as_not_supported() -> None:
    yaml = f"""
receivers: {{otlp: {{protocols: {{http: {{endpoint: 127.0.0.1:0}}}}}}}}
exporters:
  prometheusremotewrite:
    endpoint: {URL}
    auth: {{authenticator: basicauth}}
service: {{pipelines: {{metrics: {{receivers: [otlp], exporters: [prometheusremotewrite]}}}}}}
"""
    with pytest.raises(ConfigError, match="not supported by Flowglass"):
        load_text(yaml, registry=default_registry(), environ={})
