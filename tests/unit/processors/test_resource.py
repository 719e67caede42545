"""The `resource` processor: actions on every resource's attributes, per batch."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from agent.component import Kind, Settings
from agent.config.types import dec_hook
from agent.model import ClientInfo, Signal
from agent.model.attrs import resources
from agent.processors.resource import FACTORY, ResourceConfig, ResourceProcessor
from agent.testing import Sink, attrs_dict, make_logs, make_metrics, make_traces


def make(sink: Sink, signal: Signal, actions: list[dict[str, Any]]) -> ResourceProcessor:
    config = msgspec.convert({"attributes": actions}, ResourceConfig, dec_hook=dec_hook)
    assert FACTORY.create is not None
    proc = FACTORY.create(Settings.for_test("resource", Kind.PROCESSOR, signal.value), config, signal, sink)
    assert isinstance(proc, ResourceProcessor)
    return proc


def test_config_needs_actions_and_checks_them() -> None:
    with pytest.raises(msgspec.ValidationError, match="attributes"):
        msgspec.convert({}, ResourceConfig)
    with pytest.raises(msgspec.ValidationError, match="at least one action"):
        msgspec.convert({"attributes": []}, ResourceConfig)
    with pytest.raises(msgspec.ValidationError, match="needs a key"):
        msgspec.convert({"attributes": [{"action": "upsert", "value": 1}]}, ResourceConfig)


ACTIONS = [
    {"key": "deployment.environment.name", "value": "prod", "action": "upsert"},
    {"key": "cluster", "from_context": "metadata.x-cluster", "default_value": "local", "action": "insert"},
    {"key": "host.name", "action": "delete"},
    {"key": "service.instance.id", "action": "hash"},
]


@pytest.mark.parametrize(
    ("signal", "build"),
    [(Signal.TRACES, make_traces), (Signal.METRICS, make_metrics), (Signal.LOGS, make_logs)],
)
async def test_every_resource_of_every_signal(signal: Signal, build: Any) -> None:
    sink = Sink()
    proc = make(sink, signal, ACTIONS)
    assert proc.mutates_data is True
    batch = build(3, resources=2)
    batch.client = ClientInfo(metadata={"x-cluster": ("eu-1",)})
    items = batch.items
    await proc.consume(batch)
    out = sink.batches[0]
    assert out.items == items
    found = [attrs_dict(r.attributes) for r in resources(signal, out.message)]
    assert len(found) == 2
    for attrs in found:
        assert attrs["deployment.environment.name"] == "prod"
        assert attrs["cluster"] == "eu-1"
        assert "host.name" not in attrs
        assert len(attrs["service.instance.id"]) == 64


async def test_default_when_the_request_lacks_the_header() -> None:
    sink = Sink()
    await make(sink, Signal.TRACES, ACTIONS).consume(make_traces(1))
    (attrs,) = [attrs_dict(r.attributes) for r in resources(Signal.TRACES, sink.batches[0].message)]
    assert attrs["cluster"] == "local"
