"""The pipeline graph: build components from a validated config, start and stop them in order.

Per pipeline: receivers → processors in order → fan-out → exporters (and connectors, which
are exporters here and receivers of other pipelines). A receiver shared by pipelines gets a
fan-out over their entries; an exporter shared by pipelines is one instance. A batch is
copied only for consumers that mutate it (`agent.pipeline.fanout`).

Order: nodes are sorted along the data flow. Exporters start first and receivers last, so
nothing is accepted before the component that will deliver it is ready; shutdown goes the
other way, so receivers stop taking data first and every processor flushes into a consumer
that is still running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agent.component import (
    Component,
    ComponentID,
    ConnectorFactory,
    Consumer,
    ExporterFactory,
    Kind,
    PipelineID,
    ProcessorFactory,
    ReceiverFactory,
    Settings,
)
from agent.config.model import AgentConfig, ComponentConfig
from agent.errors import ConfigError, StartError
from agent.model import Signal
from agent.pipeline.counted import CountedConsumer
from agent.pipeline.fanout import fan_out
from agent.telemetry.health import Health
from agent.telemetry.metrics import AgentMetrics

logger = logging.getLogger(__name__)

#: Every component gets at least this long to close its sockets, even past the deadline.
_MIN_SHUTDOWN_GRACE = 0.5


@dataclass
class Node:
    name: str
    kind: Kind
    id: ComponentID
    component: Component
    downstream: set[str] = field(default_factory=set)


class Graph:
    """Components built from one `AgentConfig`."""

    def __init__(self, config: AgentConfig, metrics: AgentMetrics, health: Health) -> None:
        self._config = config
        self._shared_ports = config.service.workers > 1
        self._metrics = metrics
        self._health = health
        self.nodes: dict[str, Node] = {}
        self.receivers: dict[ComponentID, Component] = {}
        self.exporters: dict[ComponentID, Component] = {}
        self._entries: dict[PipelineID, tuple[Consumer, set[str]]] = {}
        self._building: set[PipelineID] = set()
        self._connector_entries: dict[str, Consumer] = {}
        self._started: list[Node] = []
        self._stopped = False

    # ---- building ---------------------------------------------------------------------

    def build(self) -> None:
        """Create every component used by a pipeline (raises ConfigError on a connector cycle)."""
        for pid in self._config.pipelines:
            self._entry(pid)
        for rid, rc in self._config.receivers.items():
            using = [p for p in self._config.pipelines.values() if rid in p.receivers]
            if not using:
                continue
            consumers: dict[Signal, Consumer] = {}
            heads: set[str] = set()
            for signal in Signal:
                entries = [self._entry(p.id) for p in using if p.id.signal is signal]
                if entries:
                    consumers[signal] = fan_out([e for e, _ in entries])
                    for _, h in entries:
                        heads |= h
            factory = rc.factory
            assert isinstance(factory, ReceiverFactory) and factory.create is not None
            name = f"receiver:{rid}"
            component = factory.create(self._settings(rc, name), rc.config, consumers)
            self.receivers[rid] = component
            self._add(name, Kind.RECEIVER, rid, component, heads)

    def _settings(self, cc: ComponentConfig, node: str, pipeline: PipelineID | None = None) -> Settings:
        health = self._health

        def report(_component: str, error: BaseException | None) -> None:
            health.report(node, error)

        return Settings(
            id=cc.id,
            kind=cc.kind,
            metrics=self._metrics,
            logger=logging.getLogger(f"agent.{cc.kind.value}s.{cc.id.type}"),
            pipeline=pipeline,
            report_status=report,
            shared_ports=self._shared_ports,
        )

    def _add(self, name: str, kind: Kind, cid: ComponentID, component: Component, downstream: set[str]) -> None:
        self.nodes[name] = Node(name, kind, cid, component, set(downstream))

    def _entry(self, pid: PipelineID) -> tuple[Consumer, set[str]]:
        """The consumer at the head of a pipeline, and the node names it feeds directly."""
        if pid in self._entries:
            return self._entries[pid]
        if pid in self._building:
            raise ConfigError([f"service.pipelines.{pid}: connectors form a cycle through this pipeline"])
        self._building.add(pid)
        pc = self._config.pipelines[pid]
        targets: list[Consumer] = []
        heads: set[str] = set()
        for eid in pc.exporters:
            if eid in self._config.connectors:
                consumer, name = self._connector(eid, pid.signal)
            else:
                consumer, name = self._exporter(eid)
            targets.append(consumer)
            heads.add(name)
        nxt: Consumer = fan_out(targets)
        m = self._metrics
        for proc_id in reversed(pc.processors):
            cc = self._config.processors[proc_id]
            factory = cc.factory
            assert isinstance(factory, ProcessorFactory) and factory.create is not None
            labels = (str(proc_id), str(pid), pid.signal.value)
            out = CountedConsumer(nxt, m.processor_outgoing.labels(*labels))
            name = f"processor:{proc_id}/{pid}"
            processor = factory.create(self._settings(cc, name, pid), cc.config, pid.signal, out)
            self._add(name, Kind.PROCESSOR, proc_id, processor, heads)
            heads = {name}
            nxt = CountedConsumer(processor, m.processor_incoming.labels(*labels))
        self._building.discard(pid)
        self._entries[pid] = (nxt, heads)
        return self._entries[pid]

    def _exporter(self, eid: ComponentID) -> tuple[Consumer, str]:
        name = f"exporter:{eid}"
        if name not in self.nodes:
            cc = self._config.exporters[eid]
            factory = cc.factory
            assert isinstance(factory, ExporterFactory) and factory.create is not None
            exporter = factory.create(self._settings(cc, name), cc.config)
            self.exporters[eid] = exporter
            self._add(name, Kind.EXPORTER, eid, exporter, set())
        return self.nodes[name].component, name  # type: ignore[return-value]

    def _connector(self, cid: ComponentID, in_signal: Signal) -> tuple[Consumer, str]:
        name = f"connector:{cid}[{in_signal.value}]"
        if name not in self.nodes:
            cc = self._config.connectors[cid]
            factory = cc.factory
            assert isinstance(factory, ConnectorFactory) and factory.create is not None
            consumers: dict[Signal, Consumer] = {}
            heads: set[str] = set()
            outs = [p for p in self._config.pipelines.values() if cid in p.receivers]
            for signal in Signal:
                entries = [self._entry(p.id) for p in outs if p.id.signal is signal]
                if entries:
                    consumers[signal] = fan_out([e for e, _ in entries])
                    for _, h in entries:
                        heads |= h
            m = self._metrics
            counted = {
                s: CountedConsumer(c, m.connector_outgoing.labels(str(cid), s.value))
                for s, c in consumers.items()
            }
            connector = factory.create(self._settings(cc, name), cc.config, in_signal, counted)
            self._add(name, Kind.CONNECTOR, cid, connector, heads)
            wrapped = CountedConsumer(connector, m.connector_incoming.labels(str(cid), in_signal.value))
            self._connector_entries[name] = wrapped
        return self._connector_entries[name], name

    # ---- ordering -----------------------------------------------------------------------

    def order(self) -> list[Node]:
        """Nodes along the data flow: receivers first, exporters last (Kahn's algorithm)."""
        indegree = {n: 0 for n in self.nodes}
        for node in self.nodes.values():
            for d in node.downstream:
                indegree[d] += 1
        ready = sorted(n for n, d in indegree.items() if d == 0)
        out: list[Node] = []
        while ready:
            name = ready.pop(0)
            node = self.nodes[name]
            out.append(node)
            for d in sorted(node.downstream):
                indegree[d] -= 1
                if indegree[d] == 0:
                    ready.append(d)
        return out

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start exporters first and receivers last; on failure stop what started and raise."""
        for node in reversed(self.order()):
            self._health.set(node.name, "starting")
            try:
                await node.component.start()
            except Exception as exc:
                self._health.set(node.name, "failed", exc)
                logger.error(
                    "A component failed to start; stopping the others.",
                    extra={"component": node.name, "error": str(exc)},
                )
                await self.shutdown(deadline=time.monotonic() + 10.0)
                if isinstance(exc, StartError):
                    raise
                raise StartError(f"{node.name}: {exc}") from exc
            self._started.append(node)
            self._health.set(node.name, "ok")

    async def shutdown(self, deadline: float) -> None:
        """Stop intake, drain along the data flow, then close receivers; within `deadline`.

        1. Every receiver stops taking new requests (`stop_intake()`, when it has one).
        2. Processors, connectors and exporters shut down in data-flow order, so each one
           flushes into a consumer that is still running. Requests a receiver already
           accepted are waiting on these flushes and are answered when they complete.
        3. Receivers shut down (their in-flight requests have their answers by now).

        A component still busy at the deadline is cancelled (it counts what it drops) and
        the next one is stopped; every component gets a short grace to close its sockets.
        Idempotent.
        """
        if self._stopped:
            return
        self._stopped = True
        started = {n.name for n in self._started}
        order = [n for n in self.order() if n.name in started]
        receivers = [n for n in order if n.kind is Kind.RECEIVER]
        for node in receivers:
            stop_intake = getattr(node.component, "stop_intake", None)
            if stop_intake is not None:
                await self._stop_one(node, stop_intake, deadline, final=False)
        for node in order:
            if node.kind is not Kind.RECEIVER:
                await self._stop_one(node, node.component.shutdown, deadline)
        for node in receivers:
            await self._stop_one(node, node.component.shutdown, deadline)

    async def _stop_one(self, node: Node, step: Callable[[], Awaitable[None]], deadline: float,
                        final: bool = True) -> None:
        self._health.set(node.name, "stopping")
        budget = max(deadline - time.monotonic(), _MIN_SHUTDOWN_GRACE)
        try:
            await asyncio.wait_for(step(), budget)
        except TimeoutError:
            logger.error(
                "A component did not finish shutting down before the deadline; what it still held is lost.",
                extra={"component": node.name, "budget_s": round(budget, 3)},
            )
        except Exception as exc:
            logger.error(
                "A component failed while shutting down.",
                extra={"component": node.name, "error": repr(exc)},
                exc_info=exc,
            )
        if final:
            self._health.set(node.name, "stopped")

    def entry(self, pid: PipelineID | str) -> Consumer:
        """The consumer at the head of a pipeline (tests feed pipelines through it)."""
        key = PipelineID.parse(pid) if isinstance(pid, str) else pid
        return self._entries[key][0]
