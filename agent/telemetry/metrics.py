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
#: Buckets for the age of a trace at its tail-sampling decision, in seconds.
DECISION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 120)
EVALUATION_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1)

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
        # syslog receiver: messages that did not parse and were passed on with only their body.
        self.receiver_unparsed = Counter(
            "flowglass_receiver_unparsed_items",
            "Items a receiver could not parse and passed on unparsed (syslog on_error: send).",
            ["component", "signal", "transport"], registry=r)

        # kafka receiver: topics come from the config (never from data); partitions are few.
        self.kafka_receiver_lag = Gauge(
            "flowglass_receiver_kafka_consumer_lag",
            "Records of a partition not yet done: its high watermark minus the receiver's commit point.",
            ["component", "topic", "partition"], registry=r)
        self.kafka_receiver_assigned = Gauge(
            "flowglass_receiver_kafka_assigned_partitions",
            "Partitions the consumer group assigned to the Kafka receiver.", ["component"], registry=r)
        self.kafka_receiver_skipped = Counter(
            "flowglass_receiver_kafka_skipped_records",
            "Records passed over without being accepted, by reason (poison, refused, retries_exhausted).",
            ["component", "topic", "reason"], registry=r)
        self.kafka_receiver_dead_letters = Counter(
            "flowglass_receiver_kafka_dead_letter_records",
            "Passed-over records written to the dead-letter topic (written) or lost on the way (failed).",
            ["component", "topic", "outcome"], registry=r)
        self.kafka_receiver_retries = Counter(
            "flowglass_receiver_kafka_retries",
            "Records handed to the pipeline again after a retryable refusal.",
            ["component", "topic"], registry=r)
        self.kafka_receiver_commits = Counter(
            "flowglass_receiver_kafka_commits", "Offset commits, by outcome (success, failed).",
            ["component", "outcome"], registry=r)
        self.kafka_receiver_rebalances = Counter(
            "flowglass_receiver_kafka_rebalances", "Partition assignments the receiver received.",
            ["component"], registry=r)

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
        self.processor_condition_errors = Counter(
            "flowglass_processor_condition_errors",
            "Conditions a processor could not evaluate on an item (filter error_mode decides what follows).",
            ["component", "pipeline", "signal"], registry=r)
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
        # redaction: attribute keys deleted (not allowed) and values masked; k8sattributes lookups.
        self.redaction_deleted_keys = Counter(
            "flowglass_processor_redaction_deleted_keys",
            "Attribute keys the redaction processor deleted because they were not allowed.",
            ["component", "pipeline", "signal"], registry=r)
        self.redaction_masked_values = Counter(
            "flowglass_processor_redaction_masked_values",
            "Values the redaction processor masked or hashed (blocked keys, blocked values, detectors).",
            ["component", "pipeline", "signal"], registry=r)
        self.k8sattributes_associations = Counter(
            "flowglass_processor_k8sattributes_associations",
            "Resources the k8sattributes processor looked up, by outcome (found, not_found).",
            ["component", "pipeline", "signal", "outcome"], registry=r)
        # tail_sampling: decisions per policy and final, evictions, lateness, what is buffered.
        self.tail_sampling_policy_traces = Counter(
            "flowglass_processor_tail_sampling_policy_traces",
            "Traces a tail-sampling policy voted on, by policy and vote (sampled true/false).",
            ["component", "pipeline", "policy", "sampled"], registry=r)
        self.tail_sampling_traces = Counter(
            "flowglass_processor_tail_sampling_traces",
            "Traces tail sampling decided, by final decision (sampled, not_sampled).",
            ["component", "pipeline", "decision"], registry=r)
        self.tail_sampling_evicted_traces = Counter(
            "flowglass_processor_tail_sampling_evicted_traces",
            "Traces evicted from the tail-sampling buffer before their decision, by reason (num_traces, max_buffered_bytes).",
            ["component", "pipeline", "reason"], registry=r)
        self.tail_sampling_decision_latency = Histogram(
            "flowglass_processor_tail_sampling_decision_latency_seconds",
            "Time from a trace's first span to its tail-sampling decision.",
            ["component", "pipeline"], buckets=DECISION_BUCKETS, registry=r)
        self.tail_sampling_evaluation = Histogram(
            "flowglass_processor_tail_sampling_evaluation_seconds",
            "Time one decision pass spent evaluating the policies (it does not yield to the event loop meanwhile).",
            ["component", "pipeline"], buckets=EVALUATION_BUCKETS, registry=r)
        self.tail_sampling_evaluated_traces = Counter(
            "flowglass_processor_tail_sampling_evaluated_traces",
            "Traces the decision passes evaluated (divide evaluation_seconds_sum by it for the time per trace).",
            ["component", "pipeline"], registry=r)
        self.tail_sampling_late_spans = Counter(
            "flowglass_processor_tail_sampling_late_spans",
            "Spans that arrived after their trace was decided and followed that decision, by decision and where it was remembered (buffer, cache).",
            ["component", "pipeline", "decision", "source"], registry=r)
        self.tail_sampling_buffered_traces = Gauge(
            "flowglass_processor_tail_sampling_buffered_traces",
            "Traces waiting for their tail-sampling decision.", ["component", "pipeline"], registry=r)
        self.tail_sampling_buffered_spans = Gauge(
            "flowglass_processor_tail_sampling_buffered_spans",
            "Spans waiting for their trace's tail-sampling decision.", ["component", "pipeline"], registry=r)
        self.tail_sampling_buffered_bytes = Gauge(
            "flowglass_processor_tail_sampling_buffered_bytes",
            "Encoded bytes of the spans waiting for a tail-sampling decision.", ["component", "pipeline"], registry=r)

        # Connectors.
        self.connector_incoming = Counter(
            "flowglass_connector_incoming_items", "Items a connector was given.",
            ["component", "signal"], registry=r)
        self.connector_outgoing = Counter(
            "flowglass_connector_outgoing_items", "Items a connector produced.",
            ["component", "signal"], registry=r)
        self.spanmetrics_series = Gauge(
            "flowglass_connector_spanmetrics_series",
            "Series the spanmetrics connector tracks now (overflow series included).",
            ["component"], registry=r)
        self.spanmetrics_overflow_spans = Counter(
            "flowglass_connector_spanmetrics_overflow_spans",
            "Spans aggregated into an overflow series because the series limit was reached.",
            ["component"], registry=r)
        self.spanmetrics_skipped_spans = Counter(
            "flowglass_connector_spanmetrics_skipped_spans",
            "Spans the spanmetrics connector did not aggregate, by reason (no_service_name).",
            ["component", "reason"], registry=r)
        self.spanmetrics_expired_series = Counter(
            "flowglass_connector_spanmetrics_expired_series",
            "Series dropped after metrics_expiration without a span.",
            ["component"], registry=r)
        self.spanmetrics_flushes = Counter(
            "flowglass_connector_spanmetrics_flushes",
            "Emissions of the span metrics, by outcome (ok, failed, empty).",
            ["component", "outcome"], registry=r)

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

        # Prometheus exporters (prometheusremotewrite, prometheus).
        self.prometheus_rejected_samples = Counter(
            "flowglass_exporter_prometheus_rejected_samples",
            "Samples a remote write server rejected for good (out_of_order, out_of_bounds, ...), by reason.",
            ["component", "reason"], registry=r)
        self.prometheus_dropped_points = Counter(
            "flowglass_exporter_prometheus_dropped_points",
            "Data points not translated to Prometheus series (delta out of order, max_streams, ...), by reason.",
            ["component", "reason"], registry=r)
        self.prometheus_streams = Gauge(
            "flowglass_exporter_prometheus_streams",
            "Series a Prometheus exporter keeps state for (delta totals, or served series).",
            ["component"], registry=r)

        # elasticsearch exporter: bulk item outcomes (reasons are Elasticsearch error types,
        # at most 32 distinct per exporter, the rest counted as `other`).
        self.elasticsearch_documents = Counter(
            "flowglass_exporter_elasticsearch_documents",
            "Bulk items by outcome: created, duplicate (409 on an id already stored), retried, rejected.",
            ["component", "signal", "outcome"], registry=r)
        self.elasticsearch_rejected = Counter(
            "flowglass_exporter_elasticsearch_rejected_documents",
            "Documents refused for good (mapping errors, retries exhausted, ...), by reason.",
            ["component", "signal", "reason"], registry=r)
        self.elasticsearch_dead_letter = Counter(
            "flowglass_exporter_elasticsearch_dead_letter_documents",
            "Refused documents by dead-letter outcome: written, failed, lost (no dead_letter configured).",
            ["component", "outcome"], registry=r)

        # Service.
        self.component_up = Gauge(
            "flowglass_component_up",
            "1 while a component runs healthily, 0 after it failed or stopped.",
            ["kind", "component"], registry=r)
