"""Prometheus metric and label names from OTLP names (OTel specification compatibility rules)."""

from __future__ import annotations

import math

import pytest

from agent.model.prometheus_names import COUNTER, GAUGE, OTHER, format_float, label_name, metric_name


@pytest.mark.parametrize(("name", "unit", "kind", "want"), [
    ("http.server.request.duration", "s", OTHER, "http_server_request_duration_seconds"),
    ("http.server.duration", "ms", OTHER, "http_server_duration_milliseconds"),
    ("request.duration_seconds", "s", OTHER, "request_duration_seconds"),  # unit already there
    ("requests", "1", COUNTER, "requests_total"),
    ("requests.total", "{request}", COUNTER, "requests_total"),  # total moves to the end, once
    ("total.requests", "", COUNTER, "requests_total"),
    ("gpu.utilization", "1", GAUGE, "gpu_utilization_ratio"),
    ("queue.depth", "{item}", GAUGE, "queue_depth"),  # annotations drop out
    ("net.io", "By", COUNTER, "net_io_bytes_total"),
    ("memory.usage", "MiBy", GAUGE, "memory_usage_mebibytes"),
    ("throughput", "By/s", GAUGE, "throughput_bytes_per_second"),
    ("speed", "m/s", GAUGE, "speed_meters_per_second"),
    ("temp", "Cel", GAUGE, "temp_celsius"),
    ("odd-unit", "widgets", GAUGE, "odd_unit_widgets"),  # unknown units are kept
    ("3d.points", "", GAUGE, "_3d_points"),
])
def test_metric_names_with_suffixes(name: str, unit: str, kind: str, want: str) -> None:
    assert metric_name(name, unit, kind) == want


def test_without_suffixes_only_invalid_characters_change() -> None:
    assert metric_name("http.server.duration", "ms", OTHER, suffixes=False) == "http_server_duration"
    assert metric_name("requests", "1", COUNTER, suffixes=False) == "requests"
    assert metric_name("a:b", "", GAUGE, suffixes=False) == "a:b"


def test_namespace_prefix() -> None:
    assert metric_name("requests", "", COUNTER, namespace="ml") == "ml_requests_total"
    assert metric_name("x", "", GAUGE, namespace="my-app") == "my_app_x"


@pytest.mark.parametrize(("key", "want"), [
    ("http.method", "http_method"),
    ("service.instance.id", "service_instance_id"),
    ("9lives", "key_9lives"),
    ("_private", "key_private"),
    ("__reserved", "__reserved"),
    ("ok_name", "ok_name"),
    ("", "key_empty"),
    ("über", "key_ber"),
])
def test_label_names(key: str, want: str) -> None:
    assert label_name(key) == want


@pytest.mark.parametrize(("value", "want"), [
    (1.0, "1"), (0.25, "0.25"), (1e21, "1e+21"), (math.inf, "+Inf"), (-math.inf, "-Inf"),
    (math.nan, "NaN"), (-3.0, "-3"), (0.005, "0.005"),
])
def test_float_format(value: float, want: str) -> None:
    assert format_float(value) == want
