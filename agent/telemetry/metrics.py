"""The agent's own metrics: every family, in one place, with one naming scheme.

`flowglass_<kind>_<what>_<unit>{component, pipeline, signal, ...}`. Labels never carry
unbounded values (no trace ids, user ids or raw topics). Each agent has its own registry, so
several agents can run in one process (tests) without sharing counters.

Components get label-bound children once, at creation, and increment them per batch.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.process_collector import ProcessCollector

import agent

#: Buckets for export and request latency, in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: Buckets for batch sizes, in items.
SIZE_BUCKETS = (10, 25, 50, 100, 250, 500, 1000, 2000, 4000, 8192, 16384, 50000, 100000)

# `_created` series double every counter's output and nobody alerts on them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class AgentMetrics:
    """Every metric family of one agent, registered in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None, process: bool = False) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        if process:
            ProcessCollector(namespace="flowglass", registry=r)
        Info("flowglass_build", "Flowglass version.", registry=r).info({"version": agent.__version__})

        # Receivers count what their consumers accepted or refused (a receiver shared by
        # pipelines sees the outcome of the fan-out) and, separately, requests refused before
        # their items could be counted (malformed, too large, wrong content type).
        self.receiver_accepted = Counter(
            "flowglass_receiver_accepted_items",
            "Items a receiver handed to a pipeline that accepted them.",
            ["component", "signal", "transport"], registry=r)
        self.receiver_refused = Counter(
            "flowglass_receiver_refused_items",
            "Items a receiver refused back to its sender, by reason.",
            ["component", "signal", "transport", "reason"], registry=r)
        self.receiver_refused_requests = Counter(
            "flowglass_receiver_refused_requests",
            "Requests a receiver refused before counting their items (malformed, too large, ...).",
            ["component", "signal", "transport", "reason"], registry=r)

        # Processors.
        self.processor_incoming = Counter(
            "flowglass_processor_incoming_items", "Items a processor was given.",
            ["component", "pipeline", "signal"], registry=r)
        self.processor_outgoing = Counter(
            "flowglass_processor_outgoing_items", "Items a processor passed on.",
            ["component", "pipeline", "signal"], registry=r)
        self.processor_dropped = Counter(
            "flowglass_processor_dropped_items", "Items a processor dropped on purpose, by reason.",
            ["component", "pipeline", "signal", "reason"], registry=r)
        self.processor_refused = Counter(
            "flowglass_processor_refused_items", "Items a processor refused upstream, by reason.",
            ["component", "pipeline", "signal", "reason"], registry=r)
        self.batch_send_size = Histogram(
            "flowglass_processor_batch_send_size", "Items per batch sent by the batch processor.",
            ["component", "pipeline", "signal"], buckets=SIZE_BUCKETS, registry=r)
        self.batch_triggers = Counter(
            "flowglass_processor_batch_sends",
            "Batches sent by the batch processor, by trigger (size, timeout, shutdown).",
            ["component", "pipeline", "signal", "trigger"], registry=r)
        self.memory_limiter_refusing = Gauge(
            "flowglass_processor_memory_limiter_refusing",
            "1 while the memory limiter refuses data, else 0.", ["component"], registry=r)
        self.memory_limiter_limit_bytes = Gauge(
            "flowglass_processor_memory_limiter_limit_bytes",
            "Memory limits in use (soft and hard).", ["component", "limit"], registry=r)
        self.memory_limiter_used_bytes = Gauge(
            "flowglass_processor_memory_limiter_used_bytes",
            "Memory in use at the last check.", ["component"], registry=r)

        # Connectors.
        self.connector_incoming = Counter(
            "flowglass_connector_incoming_items", "Items a connector was given.",
            ["component", "signal"], registry=r)
        self.connector_outgoing = Counter(
            "flowglass_connector_outgoing_items", "Items a connector produced.",
            ["component", "signal"], registry=r)

        # Exporters.
        self.exporter_sent = Counter(
            "flowglass_exporter_sent_items", "Items an exporter delivered.",
            ["component", "signal"], registry=r)
        self.exporter_failed = Counter(
            "flowglass_exporter_send_failed_items",
            "Items an exporter gave up on (permanent error or retries exhausted), by reason.",
            ["component", "signal", "reason"], registry=r)
        self.exporter_enqueue_failed = Counter(
            "flowglass_exporter_enqueue_failed_items",
            "Items refused upstream because the sending queue was full.",
            ["component", "signal"], registry=r)
        self.exporter_dropped = Counter(
            "flowglass_exporter_dropped_items",
            "Items dropped by an exporter on purpose (queue full with dropping enabled, shutdown deadline), by reason.",
            ["component", "signal", "reason"], registry=r)
        self.exporter_retries = Counter(
            "flowglass_exporter_retries", "Send attempts that were retried.",
            ["component", "signal"], registry=r)
        self.exporter_queue_size = Gauge(
            "flowglass_exporter_queue_size", "Current size of the sending queue (in its sizer's unit).",
            ["component"], registry=r)
        self.exporter_queue_capacity = Gauge(
            "flowglass_exporter_queue_capacity", "Capacity of the sending queue (in its sizer's unit).",
            ["component"], registry=r)
        self.exporter_send_duration = Histogram(
            "flowglass_exporter_send_duration_seconds", "Time of one send attempt.",
            ["component", "signal", "outcome"], buckets=LATENCY_BUCKETS, registry=r)

        # Service.
        self.component_up = Gauge(
            "flowglass_component_up",
            "1 while a component runs healthily, 0 after it failed or stopped.",
            ["kind", "component"], registry=r)
