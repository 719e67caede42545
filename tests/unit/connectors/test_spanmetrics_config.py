"""`spanmetrics` config: the Collector's names and defaults, every validation error."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from agent.components import default_registry
from agent.config import ConfigError, load_text
from agent.config.types import dec_hook
from agent.connectors.spanmetrics import (
    CUMULATIVE,
    DEFAULT_BUCKETS_MS,
    DELTA,
    ExplicitHistogramConfig,
    ExponentialHistogramConfig,
    SpanMetricsConfig,
)


def convert(raw: dict[str, Any]) -> SpanMetricsConfig:
    return msgspec.convert(raw, SpanMetricsConfig, dec_hook=dec_hook)


def problems(connector_yaml: str) -> list[str]:
    text = f"""
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
exporters:
  debug:
connectors:
{connector_yaml}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [spanmetrics]
    metrics:
      receivers: [spanmetrics]
      exporters: [debug]
"""
    with pytest.raises(ConfigError) as info:
        load_text(text, registry=default_registry(), environ={})
    return info.value.problems


def test_defaults_are_the_collectors() -> None:
    c = convert({})
    assert c.namespace == "traces.span.metrics"
    assert c.aggregation_temporality == CUMULATIVE and not c.delta
    assert float(c.metrics_flush_interval) == 60.0
    assert float(c.metrics_expiration) == 0.0
    assert c.dimensions_cache_size == 1000 and c.resource_metrics_cache_size == 1000
    assert c.aggregation_cardinality_limit == 0 and c.series_limit == 1000
    assert c.histogram.unit == "ms" and not c.histogram.disable
    assert c.histogram.exponential_config is None
    assert c.histogram.bounds() == tuple(float(b) for b in DEFAULT_BUCKETS_MS)
    assert c.histogram.bounds()[0] == 2.0 and c.histogram.bounds()[-1] == 15000.0
    assert not c.exemplars.enabled and c.exemplars.max_per_data_point == 5
    assert c.dimensions == [] and c.exclude_dimensions == []


def test_buckets_follow_the_unit() -> None:
    c = convert({"histogram": {"unit": "s", "explicit": {"buckets": ["100us", "250ms", "1s", "2m"]}}})
    assert c.histogram.bounds() == pytest.approx((0.0001, 0.25, 1.0, 120.0))
    assert convert({"histogram": {"unit": "s"}}).histogram.bounds()[:2] == pytest.approx((0.002, 0.004))
    ms = convert({"histogram": {"explicit": {"buckets": ["1ms", "1.5s"]}}})
    assert ms.histogram.bounds() == pytest.approx((1.0, 1500.0))


def test_empty_sections_mean_defaults() -> None:
    c = convert({"histogram": {"explicit": None}})
    assert isinstance(c.histogram.explicit, ExplicitHistogramConfig)
    assert len(c.histogram.bounds()) == len(DEFAULT_BUCKETS_MS)
    e = convert({"histogram": {"exponential": None}})
    assert isinstance(e.histogram.exponential, ExponentialHistogramConfig)
    assert e.histogram.exponential_config is not None and e.histogram.exponential_config.max_size == 160
    assert convert({"histogram": {"exponential": {"max_size": 0}}}).histogram.exponential_config.max_size == 160  # type: ignore[union-attr]


def test_other_options_convert() -> None:
    c = convert({
        "dimensions": [{"name": "ml.model.name"}, {"name": "ml.model.version", "default": "unknown"}],
        "exclude_dimensions": ["status.code"],
        "aggregation_temporality": DELTA,
        "metrics_flush_interval": "15s",
        "metrics_expiration": "5m",
        "aggregation_cardinality_limit": 50,
        "resource_metrics_key_attributes": ["service.name"],
        "exemplars": {"enabled": True, "max_per_data_point": 2},
        "namespace": "",
    })
    assert c.delta and c.series_limit == 50
    assert float(c.metrics_flush_interval) == 15.0 and float(c.metrics_expiration) == 300.0
    assert c.dimensions[1].default == "unknown" and c.dimensions[0].default is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"dimensions": [{"name": "span.kind"}]}, "duplicate dimension name 'span.kind'"),
        ({"dimensions": [{"name": "a"}, {"name": "a"}]}, "duplicate dimension name 'a'"),
        ({"exclude_dimensions": ["http.method"]}, "is not a default dimension"),
        ({"histogram": {"explicit": {"buckets": ["10ms", "5ms"]}}}, "strictly increasing"),
        ({"histogram": {"explicit": {}, "exponential": {}}}, "either histogram.explicit or histogram.exponential"),
        ({"histogram": {"exponential": {"max_size": 1}}}, "at least 2"),
        ({"metrics_flush_interval": "0s"}, "metrics_flush_interval must be greater than 0"),
    ],
)
def test_cross_field_errors_are_sentences(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        convert(raw)


def test_choices_and_constraints_are_reported_with_paths() -> None:
    found = problems("""
  spanmetrics:
  spanmetrics/a:
    aggregation_temporality: DELTA
  spanmetrics/b:
    histogram:
      unit: us
  spanmetrics/c:
    dimensions_cache_size: 0
  spanmetrics/d:
    aggregation_cardinality_limit: -1
  spanmetrics/e:
    dimensions:
      - default: x
  spanmetrics/f:
    histogram:
      explicit:
        buckets: [10ms, 5ms]
""")
    text = "\n".join(found)
    assert "connectors.spanmetrics/a.aggregation_temporality" in text
    assert "AGGREGATION_TEMPORALITY_DELTA" in text
    assert "connectors.spanmetrics/b.histogram.unit" in text
    assert "connectors.spanmetrics/c.dimensions_cache_size" in text
    assert "connectors.spanmetrics/d.aggregation_cardinality_limit" in text
    assert "connectors.spanmetrics/e.dimensions[0]" in text
    assert "strictly increasing" in text


def test_collector_options_not_implemented_say_so() -> None:
    options = {
        "events": "events:\n      enabled: true",
        "calls_dimensions": "calls_dimensions: []",
        "include_instrumentation_scope": "include_instrumentation_scope: [a]",
        "dimensions": "histogram:\n      dimensions: []",
        "glob": "dimensions:\n      - glob: 'http.*'",
    }
    yaml = "  spanmetrics:\n" + "".join(f"  spanmetrics/{i}:\n    {body}\n" for i, body in enumerate(options.values()))
    joined = "\n".join(problems(yaml))
    for option in options:
        assert f'the Collector\'s option "{option}" is not supported by Flowglass' in joined, joined
    assert "connectors.spanmetrics/3.histogram.dimensions" in joined


def test_a_collector_config_loads() -> None:
    text = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
exporters:
  debug:
connectors:
  spanmetrics:
    histogram:
      explicit:
        buckets: [100us, 1ms, 2ms, 6ms, 10ms, 100ms, 250ms]
    dimensions:
      - name: http.method
        default: GET
      - name: http.status_code
    exemplars:
      enabled: true
    exclude_dimensions: ['status.code']
    dimensions_cache_size: 1000
    aggregation_temporality: "AGGREGATION_TEMPORALITY_CUMULATIVE"
    metrics_flush_interval: 15s
    metrics_expiration: 5m
    resource_metrics_key_attributes:
      - service.name
      - telemetry.sdk.language
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [spanmetrics]
    metrics:
      receivers: [spanmetrics]
      exporters: [debug]
"""
    config = load_text(text, registry=default_registry(), environ={})
    assert len(config.connectors) == 1
