"""The `resourcedetection` processor: config, detection at start (order, failures, timeout),
and merging into every resource with and without `override`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.component import Kind, Settings
from agent.components import default_registry
from agent.config import load_text
from agent.config.types import dec_hook
from agent.errors import ConfigError, StartError
from agent.model import Signal
from agent.processors.resourcedetection import FACTORY, ResourceDetectionConfig
from agent.processors.resourcedetection.detectors import Host
from agent.processors.resourcedetection.processor import ResourceDetectionProcessor
from agent.testing import Sink, attrs_dict, make_logs, make_metrics, make_traces

ID = "resourcedetection/test"


def convert(raw: dict[str, Any]) -> ResourceDetectionConfig:
    return msgspec.convert(raw, ResourceDetectionConfig, dec_hook=dec_hook)


def processor(raw: dict[str, Any], host: Host, signal: Signal = Signal.TRACES) -> tuple[ResourceDetectionProcessor, Sink]:
    sink = Sink()
    settings = Settings.for_test(ID, Kind.PROCESSOR, signal.value)
    return ResourceDetectionProcessor(settings, convert(raw), signal, sink, host=host), sink


ENV = {
    "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-env,deployment.environment=prod",
    "K8S_POD_NAME": "scorer-0", "K8S_NAMESPACE": "ml", "K8S_NODE_NAME": "node-1",
    "FLOWGLASS_MODEL_NAME": "fraud", "FLOWGLASS_MODEL_VERSION": "3",
}


def fake_host(env: dict[str, str] | None = None, **kw: Any) -> Host:
    return Host(environ=ENV if env is None else env, root=Path("/nonexistent-root"),
                hostname=kw.get("hostname", lambda: "node-1"), fqdn=kw.get("fqdn", lambda: "node-1.example.com"))


# -- config ------------------------------------------------------------------------------


def test_defaults_are_the_collectors() -> None:
    c = convert({})
    assert c.detectors == ["env"] and c.override is True and float(c.timeout) == 5.0
    assert c.system.hostname_sources == ["dns", "os"] and c.k8snode.node_from_env_var == "K8S_NODE_NAME"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"detectors": ["ec2"]}, "the Collector's detector 'ec2' is not supported by Flowglass"),
        ({"detectors": ["nope"]}, "unknown detector 'nope'"),
        ({"detectors": ["env", "env"]}, "more than once"),
        ({"timeout": "0s"}, "greater than zero"),
        ({"system": {"hostname_sources": []}}, "at least one source"),
        ({"mlmodel": {"resource_attributes": {"ml.model.colour": {"enabled": False}}}}, "unknown attribute 'ml.model.colour'"),
        ({"k8snode": {"node_from_env_var": ""}}, "must name an environment variable"),
    ],
)
def test_invalid_configs_say_why(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        convert(raw)


def test_hostname_source_lookup_is_not_accepted() -> None:
    with pytest.raises(msgspec.ValidationError):
        convert({"system": {"hostname_sources": ["lookup"]}})


@pytest.mark.parametrize("section", ["ec2:\n      tags: [a]", "refresh_interval: 1m", "k8snode:\n      auth_type: serviceAccount"])
def test_upstream_options_are_named_as_unsupported(section: str) -> None:
    text = f"""
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
processors:
  resourcedetection:
    detectors: [env]
    {section}
exporters:
  debug: {{}}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [resourcedetection]
      exporters: [debug]
"""
    with pytest.raises(ConfigError, match="not supported by Flowglass"):
        load_text(text, registry=default_registry(), environ={})


# -- detection ---------------------------------------------------------------------------


async def test_first_detector_wins_and_override_replaces_what_senders_set() -> None:
    proc, sink = processor({"detectors": ["k8snode", "env", "mlmodel", "system"]}, fake_host())
    await proc.start()
    assert proc.detected == {
        "k8s.pod.name": "scorer-0", "k8s.namespace.name": "ml", "k8s.node.name": "node-1",
        "service.name": "from-env", "deployment.environment": "prod",
        "ml.model.name": "fraud", "ml.model.version": "3",
        "host.name": "node-1.example.com", "os.type": "linux",
    }
    batch = make_traces(2, resources=2, resource_attrs={"deployment.environment": "dev"})
    await proc.consume(batch)
    for rs in sink.batches[0].message.resource_spans:
        attrs = attrs_dict(rs.resource.attributes)
        assert attrs["service.name"] == "from-env"  # replaced (override)
        assert attrs["deployment.environment"] == "prod"
        assert attrs["ml.model.name"] == "fraud" and attrs["k8s.pod.name"] == "scorer-0"
        assert list(attrs).count("service.name") == 1


async def test_without_override_only_missing_attributes_are_added() -> None:
    proc, sink = processor({"detectors": ["env"], "override": False}, fake_host(), Signal.LOGS)
    await proc.start()
    await proc.consume(make_logs(1, service="sender-set"))
    attrs = attrs_dict(sink.batches[0].message.resource_logs[0].resource.attributes)
    assert attrs["service.name"] == "sender-set"
    assert attrs["deployment.environment"] == "prod"


async def test_metrics_resources_are_covered() -> None:
    proc, sink = processor({"detectors": ["mlmodel"]}, fake_host(), Signal.METRICS)
    await proc.start()
    await proc.consume(make_metrics(3, resources=2))
    for rm in sink.batches[0].message.resource_metrics:
        assert attrs_dict(rm.resource.attributes)["ml.model.version"] == "3"


async def test_nothing_detected_leaves_batches_untouched() -> None:
    proc, sink = processor({"detectors": ["k8snode", "container", "mlmodel"]}, fake_host({}))
    await proc.start()
    assert proc.detected == {}
    batch = make_traces(2)
    before = batch.serialize()
    await proc.consume(batch)
    assert sink.batches[0].serialize() is before


async def test_a_failing_detector_stops_the_start_with_its_name() -> None:
    proc, _ = processor({"detectors": ["env", "system"]}, fake_host({"OTEL_RESOURCE_ATTRIBUTES": "broken"}))
    with pytest.raises(StartError, match=r"resource detection failed — env: .*not key=value"):
        await proc.start()


async def test_a_detector_that_does_not_answer_in_time_fails_the_start() -> None:
    release = threading.Event()

    def hanging_dns() -> str:
        release.wait(10)
        return "late.example.com"

    proc, _ = processor({"detectors": ["system"], "timeout": "100ms"}, fake_host(fqdn=hanging_dns))
    try:
        with pytest.raises(StartError, match=r"system: no answer within 0.1s"):
            await proc.start()
    finally:
        release.set()


async def test_factory_creates_a_processor_that_detects_from_the_real_environment() -> None:
    assert FACTORY.create is not None
    sink = Sink()
    proc = FACTORY.create(Settings.for_test(ID, Kind.PROCESSOR, "traces"),
                          convert({"detectors": ["system"], "system": {"hostname_sources": ["os"]}}), Signal.TRACES, sink)
    assert proc.mutates_data is True
    await proc.start()
    await proc.consume(make_traces(1))
    assert "host.name" in attrs_dict(sink.batches[0].message.resource_spans[0].resource.attributes)
    await proc.shutdown()
    await proc.shutdown()
