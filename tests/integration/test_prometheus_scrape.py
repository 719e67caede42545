"""A real Prometheus 2.42 scrapes the `prometheus` exporter of an agent process through a scrape config."""

from __future__ import annotations

import time
import urllib.request
import uuid

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

from agent.testing import AgentProcess, free_port
from tests.conftest import require_tool
from tests.integration.helpers import wait_until
from tests.integration.prometheus_peer import Prometheus
from tests.integration.test_prometheus_remote_write import metrics_request

pytestmark = pytest.mark.timeout(180)

AGENT = """
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{port}"}}
exporters:
  prometheus:
    endpoint: "127.0.0.1:{scrape}"
    namespace: ml
    const_labels: {{cluster: test}}
    enable_open_metrics: {open_metrics}
service:
  telemetry:
    metrics: {{address: "127.0.0.1:{telemetry}"}}
  pipelines:
    metrics: {{receivers: [otlp], exporters: [prometheus]}}
"""


@pytest.mark.peer("prometheus")
@pytest.mark.parametrize("open_metrics", [False, True])
def test_prometheus_scrapes_the_exporter(open_metrics: bool) -> None:
    binary = require_tool("prometheus")
    port, scrape, tele = free_port(), free_port(), free_port()
    config = AGENT.format(port=port, scrape=scrape, telemetry=tele, open_metrics=str(open_metrics).lower())
    scrape_config = [{"job_name": "flowglass", "scrape_interval": "1s",
                      "static_configs": [{"targets": [f"127.0.0.1:{scrape}"]}]}]
    run = uuid.uuid4().hex[:8]
    counter = Metric(name="inference.requests")
    counter.sum.is_monotonic = True
    counter.sum.aggregation_temporality = 2  # type: ignore[assignment]
    counter.sum.data_points.add(as_int=12)
    hist = Metric(name="inference.latency", unit="ms")
    hist.histogram.aggregation_temporality = 2  # type: ignore[assignment]
    hp = hist.histogram.data_points.add(count=4, sum=100.0)
    hp.explicit_bounds.extend([10.0, 50.0])
    hp.bucket_counts.extend([1, 2, 1])
    body = metrics_request(run, time.time_ns(), [counter, hist]).SerializeToString()
    with AgentProcess(config, telemetry_port=tele), Prometheus(binary, scrape_configs=scrape_config) as prom:
        post = urllib.request.Request(f"http://127.0.0.1:{port}/v1/metrics", data=body,
                                      headers={"Content-Type": "application/x-protobuf"})
        with urllib.request.urlopen(post, timeout=10) as resp:
            assert resp.status == 200
        # The scrape job's own job/instance labels win; ours are kept as exported_job/exported_instance.
        sel = f'run="{run}",cluster="test",job="flowglass",exported_job="model"'
        wait_until(lambda: prom.value(f"ml_inference_requests_total{{{sel}}}") == 12, 30,
                   "the counter to be scraped")
        assert prom.value(f'ml_inference_latency_milliseconds_bucket{{{sel},le="50"}}') == 3
        assert prom.value(f"ml_inference_latency_milliseconds_count{{{sel}}}") == 4
        assert prom.value('up{job="flowglass"}') == 1
        median = prom.value(f"histogram_quantile(0.5, ml_inference_latency_milliseconds_bucket{{{sel}}})")
        assert median is not None and 10 <= median <= 50
