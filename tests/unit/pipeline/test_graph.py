"""The graph over fake components: wiring, fan-out copies, connectors, start/stop order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import pytest

from agent.component import (
    ComponentID,
    ConnectorFactory,
    Consumer,
    ExporterFactory,
    Kind,
    PipelineID,
    ProcessorFactory,
    ReceiverFactory,
    Settings,
    Stability,
)
from agent.config.model import AgentConfig, ComponentConfig, PipelineConfig
from agent.errors import ConfigError, PermanentError, RetryableError, StartError
from agent.model import Batch, Signal
from agent.pipeline.fanout import FanOut
from agent.pipeline.graph import Graph
from agent.telemetry.health import Health
from agent.telemetry.metrics import AgentMetrics
from agent.testing import Sink, make_logs, make_metrics, make_traces, spans_of

ALL = {s: Stability.ALPHA for s in Signal}


class Empty(msgspec.Struct):
    fail_start: bool = False
    mutates: bool = False


class Journal:
    def __init__(self) -> None:
        self.events: list[str] = []


JOURNAL = Journal()


class FakeReceiver:
    instances: dict[str, FakeReceiver] = {}

    def __init__(self, settings: Settings, config: Empty, consumers: Mapping[Signal, Consumer]) -> None:
        self.name = str(settings.id)
        self.consumers = consumers
        FakeReceiver.instances[self.name] = self

    async def start(self) -> None:
        JOURNAL.events.append(f"start receiver:{self.name}")

    async def stop_intake(self) -> None:
        JOURNAL.events.append(f"stop-intake receiver:{self.name}")

    async def shutdown(self) -> None:
        JOURNAL.events.append(f"stop receiver:{self.name}")


class FakeProcessor:
    def __init__(self, settings: Settings, config: Empty, signal: Signal, nxt: Consumer) -> None:
        self.name = f"{settings.id}/{settings.pipeline}"
        self.next = nxt
        self.mutates_data = config.mutates
        self.config = config

    async def consume(self, batch: Batch) -> None:
        if self.mutates_data:
            msg = batch.mutable()
            for rs in getattr(msg, "resource_spans", []):
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        span.name = f"{span.name}+{self.name}"
        await self.next.consume(batch)

    async def start(self) -> None:
        if self.config.fail_start:
            raise StartError(f"{self.name} cannot start")
        JOURNAL.events.append(f"start processor:{self.name}")

    async def shutdown(self) -> None:
        JOURNAL.events.append(f"stop processor:{self.name}")


class FakeExporter(Sink):
    instances: dict[str, FakeExporter] = {}

    def __init__(self, settings: Settings, config: Empty) -> None:
        super().__init__(mutates_data=config.mutates)
        self.name = str(settings.id)
        FakeExporter.instances[self.name] = self

    async def consume(self, batch: Batch) -> None:
        if self.mutates_data:
            for rs in batch.mutable().resource_spans:  # type: ignore[union-attr]
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        span.name = "mutated-by-" + self.name
        await super().consume(batch)

    async def start(self) -> None:
        JOURNAL.events.append(f"start exporter:{self.name}")

    async def shutdown(self) -> None:
        JOURNAL.events.append(f"stop exporter:{self.name}")


class CountConnector:
    """traces → metrics: emits one metrics batch with one gauge point per span batch."""

    def __init__(self, settings: Settings, config: Empty, signal: Signal, consumers: Mapping[Signal, Consumer]) -> None:
        self.mutates_data = False
        self.out = consumers[Signal.METRICS]

    async def consume(self, batch: Batch) -> None:
        await self.out.consume(make_metrics(batch.items))

    async def start(self) -> None:
        JOURNAL.events.append("start connector")

    async def shutdown(self) -> None:
        JOURNAL.events.append("stop connector")


RECV = ReceiverFactory(type="fake", config_type=Empty, description="", signals=ALL, create=FakeReceiver)
PROC = ProcessorFactory(type="fakeproc", config_type=Empty, description="", signals=ALL, create=FakeProcessor)
EXP = ExporterFactory(type="fakeexp", config_type=Empty, description="", signals=ALL, create=FakeExporter)
CONN = ConnectorFactory(type="count", config_type=Empty, description="",
                        signals={(Signal.TRACES, Signal.METRICS): Stability.ALPHA}, create=CountConnector)


def cc(kind: Kind, factory: Any, id: str, **opts: Any) -> tuple[ComponentID, ComponentConfig]:
    cid = ComponentID.parse(id)
    return cid, ComponentConfig(cid, kind, factory, Empty(**opts))


def pipeline(id: str, r: list[str], p: list[str], e: list[str]) -> tuple[PipelineID, PipelineConfig]:
    pid = PipelineID.parse(id)
    ids = [tuple(ComponentID.parse(x) for x in xs) for xs in (r, p, e)]
    return pid, PipelineConfig(pid, *ids)


def make_graph(config: AgentConfig) -> tuple[Graph, AgentMetrics, Health]:
    JOURNAL.events.clear()
    FakeReceiver.instances.clear()
    FakeExporter.instances.clear()
    metrics = AgentMetrics()
    health = Health(metrics)
    graph = Graph(config, metrics, health)
    graph.build()
    return graph, metrics, health


def two_pipelines(mutating_exporter: bool = False) -> AgentConfig:
    return AgentConfig(
        receivers=dict([cc(Kind.RECEIVER, RECV, "fake")]),
        processors=dict([cc(Kind.PROCESSOR, PROC, "fakeproc/a"), cc(Kind.PROCESSOR, PROC, "fakeproc/b")]),
        exporters=dict([cc(Kind.EXPORTER, EXP, "fakeexp/1"),
                        cc(Kind.EXPORTER, EXP, "fakeexp/2", mutates=mutating_exporter)]),
        pipelines=dict([
            pipeline("traces", ["fake"], ["fakeproc/a", "fakeproc/b"], ["fakeexp/1", "fakeexp/2"]),
            pipeline("logs", ["fake"], [], ["fakeexp/1"]),
        ]),
    )


async def test_receiver_shared_by_pipelines_gets_one_consumer_per_signal() -> None:
    _graph, metrics, _ = make_graph(two_pipelines())
    recv = FakeReceiver.instances["fake"]
    assert set(recv.consumers) == {Signal.TRACES, Signal.LOGS}
    await recv.consumers[Signal.TRACES].consume(make_traces(5))
    await recv.consumers[Signal.LOGS].consume(make_logs(2))
    e1, e2 = FakeExporter.instances["fakeexp/1"], FakeExporter.instances["fakeexp/2"]
    assert e1.items == 7 and e2.items == 5
    assert metrics.registry.get_sample_value(
        "flowglass_processor_incoming_items_total",
        {"component": "fakeproc/a", "pipeline": "traces", "signal": "traces"}) == 5
    assert metrics.registry.get_sample_value(
        "flowglass_processor_outgoing_items_total",
        {"component": "fakeproc/b", "pipeline": "traces", "signal": "traces"}) == 5


async def test_one_exporter_instance_serves_every_pipeline() -> None:
    make_graph(two_pipelines())
    assert len(FakeExporter.instances) == 2


async def test_start_exporters_first_and_stop_receivers_first() -> None:
    graph, _, health = make_graph(two_pipelines())
    await graph.start()
    starts = [e for e in JOURNAL.events if e.startswith("start")]
    assert starts[-1] == "start receiver:fake"
    assert starts.index("start processor:fakeproc/b/traces") < starts.index("start processor:fakeproc/a/traces")
    assert all(starts.index(f"start exporter:fakeexp/{i}") < 2 for i in (1, 2))
    assert health.get("receiver:fake").status == "ok"
    JOURNAL.events.clear()
    import time
    await graph.shutdown(deadline=time.monotonic() + 5)
    stops = JOURNAL.events
    # Intake stops first; processors drain into exporters; receivers close last.
    assert stops[0] == "stop-intake receiver:fake"
    assert stops[-1] == "stop receiver:fake"
    assert stops.index("stop processor:fakeproc/a/traces") < stops.index("stop processor:fakeproc/b/traces")
    assert all(s.startswith("stop exporter") for s in stops[-3:-1])
    await graph.shutdown(deadline=time.monotonic() + 5)  # idempotent
    assert len(JOURNAL.events) == len(stops)


async def test_failed_start_stops_what_started_and_raises() -> None:
    config = two_pipelines()
    cid, comp = cc(Kind.PROCESSOR, PROC, "fakeproc/a", fail_start=True)
    config.processors[cid] = comp
    graph, _, health = make_graph(config)
    with pytest.raises(StartError, match="cannot start"):
        await graph.start()
    assert "stop exporter:fakeexp/1" in JOURNAL.events
    assert "start receiver:fake" not in JOURNAL.events
    assert health.get("processor:fakeproc/a/traces").status == "failed"


async def test_fan_out_copies_only_for_mutating_consumers() -> None:
    make_graph(two_pipelines(mutating_exporter=True))
    recv = FakeReceiver.instances["fake"]
    batch = make_traces(3)
    await recv.consumers[Signal.TRACES].consume(batch)
    e1, e2 = FakeExporter.instances["fakeexp/1"], FakeExporter.instances["fakeexp/2"]
    assert e1.batches[0] is batch  # the reader got the original
    assert e2.batches[0] is not batch
    assert {s.name for s in spans_of(e1.batches)} == {"predict"}
    assert {s.name for s in spans_of(e2.batches)} == {"mutated-by-fakeexp/2"}


async def test_fan_out_errors_retryable_wins_over_permanent() -> None:
    ok, perm, retry = Sink(), Sink(), Sink()
    perm.fail_with = PermanentError("no")
    retry.fail_with = RetryableError("later")
    with pytest.raises(RetryableError):
        await FanOut([ok, perm, retry]).consume(make_traces(1))
    perm2 = Sink()
    perm2.fail_with = PermanentError("no")
    with pytest.raises(PermanentError):
        await FanOut([Sink(), perm2]).consume(make_traces(1))


async def test_connector_feeds_another_pipeline() -> None:
    config = AgentConfig(
        receivers=dict([cc(Kind.RECEIVER, RECV, "fake")]),
        exporters=dict([cc(Kind.EXPORTER, EXP, "fakeexp")]),
        connectors=dict([cc(Kind.CONNECTOR, CONN, "count")]),
        processors=dict([cc(Kind.PROCESSOR, PROC, "fakeproc")]),
        pipelines=dict([
            pipeline("traces", ["fake"], [], ["count"]),
            pipeline("metrics", ["count"], ["fakeproc"], ["fakeexp"]),
        ]),
    )
    graph, metrics, _ = make_graph(config)
    await graph.start()
    starts = [e for e in JOURNAL.events if e.startswith("start")]
    assert starts == ["start exporter:fakeexp", "start processor:fakeproc/metrics", "start connector",
                      "start receiver:fake"]
    await FakeReceiver.instances["fake"].consumers[Signal.TRACES].consume(make_traces(6))
    assert FakeExporter.instances["fakeexp"].items == 6
    assert FakeExporter.instances["fakeexp"].batches[0].signal is Signal.METRICS
    assert metrics.registry.get_sample_value(
        "flowglass_connector_incoming_items_total", {"component": "count", "signal": "traces"}) == 6


def test_connector_cycle_is_a_config_error() -> None:
    conn2 = ConnectorFactory(type="loop", config_type=Empty, description="",
                             signals={(Signal.TRACES, Signal.TRACES): Stability.ALPHA}, create=CountConnector)
    config = AgentConfig(
        receivers=dict([cc(Kind.RECEIVER, RECV, "fake")]),
        connectors=dict([cc(Kind.CONNECTOR, conn2, "loop")]),
        pipelines=dict([
            pipeline("traces/a", ["fake", "loop"], [], ["loop"]),
        ]),
    )
    with pytest.raises(ConfigError, match="cycle"):
        make_graph(config)
