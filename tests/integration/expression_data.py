"""Real situations behind every dashboard panel and alert of deploy/, for
test_spanmetrics_prometheus.py.

- `failing_traffic`: requests to the agent's `otlp/failing` receiver, whose pipelines really
  fail: an exporter to a closed loopback port without retries (send failures), one with a
  2-request sending queue stuck in retries (queue full, so the receiver refuses items), a
  `file` exporter writing to /dev/full (ENOSPC: the exporter reports itself failed, so
  `flowglass_component_up == 0`), a `tail_sampling` processor holding at most 10 traces
  (evictions) and a `spanmetrics` connector limited to one series (overflow spans).
- `send_stand_in_metrics`: OTLP metrics named and labelled as cAdvisor (through the
  kubelet), the NVIDIA DCGM exporter and the future ML-signals work name theirs. Those
  exporters cannot run here; these series, sent through the agent and its remote write,
  stand in for them so that the CPU, memory, GPU and model quality/drift panels are run
  against data of the right shape.
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from agent.model import Signal, new_request
from agent.testing import key_values, make_traces
from tests.integration.helpers import METRICS_METHOD, TRACES_METHOD, raw_export

#: Agent configuration added to the module's agent: receivers, exporters, processors,
#: connectors and pipelines, merged into the base configuration by the test.
FAILING = """
receivers:
  otlp/failing:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{failing}
processors:
  tail_sampling/tiny:
    num_traces: 10
    decision_wait: 2s
    policies:
      - {{name: everything, type: always_sample}}
connectors:
  spanmetrics/overflow:
    aggregation_cardinality_limit: 1
    metrics_flush_interval: 500ms
exporters:
  otlp_grpc/unreachable:
    endpoint: 127.0.0.1:{closed}
    tls: {{insecure: true}}
    retry_on_failure: {{enabled: false}}
  otlp_grpc/stuck:
    endpoint: 127.0.0.1:{closed}
    tls: {{insecure: true}}
    sending_queue: {{queue_size: 2, num_consumers: 1}}
    retry_on_failure: {{initial_interval: 60s, max_interval: 60s, max_elapsed_time: 600s}}
  file/full:
    path: /dev/full
    append: true
    flush_interval: 200ms
  file/sink:
    path: {sink}
pipelines:
  traces/failing:
    receivers: [otlp/failing]
    exporters: [otlp_grpc/unreachable, otlp_grpc/stuck, file/full, spanmetrics/overflow]
  traces/evicting:
    receivers: [otlp/failing]
    processors: [tail_sampling/tiny]
    exporters: [file/sink]
  metrics/overflow:
    receivers: [spanmetrics/overflow]
    exporters: [file/sink]
"""


def failing_traffic(port: int, requests: int = 6) -> list[grpc.StatusCode]:
    """Send `requests` trace requests of 50 traces (distinct names, so distinct series)."""
    codes = []
    for i in range(requests):
        batch = make_traces(50, traces=50, seed=100 + i, service=f"failing-{i}", name=f"op-{i}")
        code, _, _ = raw_export(f"127.0.0.1:{port}", TRACES_METHOD, batch.serialize())
        codes.append(code)
    return codes


def _point(metric: Any, attrs: dict[str, str], value: float, now: int) -> None:
    point = metric.data_points.add()
    point.attributes.extend(key_values(attrs))
    point.time_unix_nano = now
    point.as_double = value


def stand_in_request(step: int) -> bytes:
    """One OTLP metrics request of the stand-in series; `step` advances the counters."""
    now = time.time_ns()
    req = new_request(Signal.METRICS)
    pod = {"namespace": "ml", "pod": "ranker-7d9f-x2k4q", "container": "model-server"}

    # cAdvisor, as the kubelet serves it on /metrics/cadvisor.
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(key_values({"service.name": "kubelet", "service.instance.id": "node-1:10250"}))
    sm = rm.scope_metrics.add()
    cadvisor = {**pod, "id": "/kubepods/burstable/pod1234/abcd", "image": "registry.local/ranker:1.5",
                "name": "abcd"}
    cpu = sm.metrics.add(name="container_cpu_usage_seconds_total")
    cpu.sum.is_monotonic = True
    cpu.sum.aggregation_temporality = 2  # cumulative
    _point(cpu.sum, {**cadvisor, "cpu": "total"}, 120.0 + 1.5 * step, now)
    cpu.sum.data_points[0].start_time_unix_nano = now - 3_600_000_000_000
    mem = sm.metrics.add(name="container_memory_working_set_bytes")
    _point(mem.gauge, cadvisor, 1.8e9 + 1e6 * step, now)

    # NVIDIA DCGM exporter, with its pod mapping on.
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(key_values({"service.name": "dcgm-exporter", "service.instance.id": "node-1:9400"}))
    sm = rm.scope_metrics.add()
    gpu = {**pod, "gpu": "0", "UUID": "GPU-5a1c9e2e-0000-4f1a-9b3c-1d2e3f4a5b6c", "device": "nvidia0",
           "modelName": "NVIDIA A10G", "Hostname": "node-1"}
    _point(sm.metrics.add(name="DCGM_FI_DEV_GPU_UTIL").gauge, gpu, 63.0, now)
    _point(sm.metrics.add(name="DCGM_FI_DEV_FB_USED").gauge, gpu, 14_000.0, now)

    # Model quality and drift (placeholder names of the dashboard, ML-signals work to come).
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(key_values({"service.name": "ranker", "service.instance.id": "ranker-0"}))
    sm = rm.scope_metrics.add()
    model = {"service.name": "ranker", "ml.model.name": "ranker", "ml.model.version": "1.5-canary"}
    _point(sm.metrics.add(name="ml_model_quality").gauge, {**model, "quality_metric": "auc"}, 0.91, now)
    _point(sm.metrics.add(name="ml_feature_drift_psi").gauge,
           {"service.name": "ranker", "ml.model.name": "ranker", "feature": "user_age"}, 0.07, now)
    _point(sm.metrics.add(name="ml_prediction_drift_psi").gauge, model, 0.12, now)
    return bytes(req.SerializeToString())


def send_stand_in_metrics(port: int) -> None:
    """Two rounds a second apart, so that rate() has two samples of the CPU counter."""
    for step in range(2):
        if step:
            time.sleep(1.1)
        code, details, _ = raw_export(f"127.0.0.1:{port}", METRICS_METHOD, stand_in_request(step))
        assert code is grpc.StatusCode.OK, details
