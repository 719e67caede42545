"""`service.pipelines` and the checks across sections."""

from __future__ import annotations

import pytest

from agent.component import ComponentID, PipelineID
from agent.model import Signal
from tests.unit.config.fakes import BASE, load, problems

ONE_PIPELINE = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
exporters:
  debug:
service:
  telemetry:
    metrics:
      address: ""
"""


def test_pipelines_become_pipeline_configs() -> None:
    text = """
processors:
  batch:
  batch/2:
exporters:
  otlp:
    endpoint: gw:4317
service:
  pipelines:
    traces:
      processors: [batch, batch/2]
      exporters: [debug, otlp]
    metrics/fast:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp]
"""
    config = load(BASE, text)
    traces = config.pipelines[PipelineID(Signal.TRACES)]
    assert traces.receivers == (ComponentID("otlp"),)
    assert traces.processors == (ComponentID("batch"), ComponentID("batch", "2"))
    assert traces.exporters == (ComponentID("debug"), ComponentID("otlp"))
    fast = config.pipelines[PipelineID(Signal.METRICS, "fast")]
    # The same processor in two pipelines is fine.
    assert fast.processors == (ComponentID("batch"),)


def test_references_to_components_that_are_not_configured() -> None:
    text = """
processors:
  batch:
service:
  pipelines:
    traces:
      receivers: [otlp, otlp/other]
      processors: [batch, memory_limiter]
      exporters: [debug, otlp/missing, batch]
"""
    assert problems(BASE, text) == [
        'service.pipelines.traces.receivers[1]: receiver "otlp/other" is not configured',
        'service.pipelines.traces.processors[1]: processor "memory_limiter" is not configured',
        'service.pipelines.traces.exporters[1]: exporter "otlp/missing" is not configured',
        'service.pipelines.traces.exporters[2]: exporter "batch" is not configured (there is processor "batch", '
        "but a pipeline's exporters cannot name a processor)",
    ]


def test_a_reference_to_a_component_with_bad_options_is_not_reported_twice() -> None:
    text = "exporters:\n  kafka:\n    brokers: 1\nservice:\n  pipelines:\n    traces:\n      exporters: [kafka]\n"
    assert problems(BASE, text) == ["exporters.kafka.brokers: expected array, got int"]


def test_pipelines_need_receivers_and_exporters() -> None:
    text = """
service:
  pipelines:
    traces:
      receivers: []
    logs:
"""
    assert problems(ONE_PIPELINE, text) == [
        "service.pipelines.traces.receivers: at least one receiver is required",
        "service.pipelines.traces.exporters: at least one exporter is required",
        "service.pipelines.logs.receivers: at least one receiver is required",
        "service.pipelines.logs.exporters: at least one exporter is required",
    ]


@pytest.mark.parametrize("service", ["", "service:\n", "service:\n  pipelines: {}\n", "service:\n  workers: 2\n"])
def test_no_pipelines_at_all(service: str) -> None:
    assert problems(ONE_PIPELINE.replace("service:\n", "x_service:\n"), service) == [
        "x_service: unknown section; the sections are receivers, processors, exporters, connectors, "
        "extensions and service",
        "service.pipelines: at least one pipeline is required",
    ]


def test_bad_pipeline_ids_and_shapes() -> None:
    text = """
service:
  pipelines:
    spans:
      receivers: [otlp]
      exporters: [debug]
    logs:
      receivers: otlp
      exporters: [debug]
    metrics:
      receivers: [otlp]
      exporter: [debug]
"""
    assert problems(BASE, text) == [
        "service.pipelines.spans: invalid pipeline id 'spans': it must start with traces, metrics or logs",
        "service.pipelines.logs.receivers: expected array, got str",
        'service.pipelines.metrics.exporter: unknown option; did you mean "exporters"?',
    ]


def test_components_must_support_the_pipeline_signal() -> None:
    text = """
receivers:
  syslog:
processors:
  tail_sampling:
exporters:
  prometheus:
service:
  pipelines:
    traces:
      receivers: [otlp, syslog]
      processors: [tail_sampling]
      exporters: [debug, prometheus]
    metrics:
      receivers: [otlp]
      processors: [tail_sampling]
      exporters: [prometheus]
"""
    assert problems(BASE, text) == [
        'service.pipelines.traces.receivers[1]: receiver "syslog" does not support traces (it supports logs)',
        'service.pipelines.traces.exporters[1]: exporter "prometheus" does not support traces (it supports metrics)',
        'service.pipelines.metrics.processors[0]: processor "tail_sampling" does not support metrics '
        "(it supports traces)",
    ]


def test_the_same_component_twice_in_one_pipeline() -> None:
    text = """
processors:
  batch:
service:
  pipelines:
    traces:
      receivers: [otlp, otlp]
      processors: [batch, batch]
      exporters: [debug, debug]
"""
    assert problems(BASE, text) == [
        'service.pipelines.traces.receivers[1]: receiver "otlp" is listed twice in this pipeline',
        'service.pipelines.traces.processors[1]: processor "batch" is listed twice in this pipeline',
        'service.pipelines.traces.exporters[1]: exporter "debug" is listed twice in this pipeline',
    ]


# ---- ports ----------------------------------------------------------------------------------


def two_receivers(first: str, second: str, *, use_second: bool = True) -> str:
    used = "[otlp, otlp/b]" if use_second else "[otlp]"
    return f"""
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "{first}"
  otlp/b:
    protocols:
      grpc:
        endpoint: "{second}"
service:
  pipelines:
    traces:
      receivers: {used}
"""


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("127.0.0.1:4317", "127.0.0.1:4317"),
        ("0.0.0.0:4317", "127.0.0.1:4317"),
        ("10.1.2.3:4317", "0.0.0.0:4317"),
        ("localhost:4317", "127.0.0.1:4317"),
        ("[::]:4317", "10.1.2.3:4317"),
        (":4317", "[::1]:4317"),
        ("LOCALHOST:4317", "localhost:4317"),
    ],
)
def test_two_receivers_on_one_port(first: str, second: str) -> None:
    assert problems(BASE, two_receivers(first, second)) == [
        f'receivers.otlp/b: grpc address {second} uses the same port as receiver "otlp" grpc address {first}'
    ]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("127.0.0.1:4317", "127.0.0.1:4318"),
        ("127.0.0.1:4317", "10.1.2.3:4317"),
        ("[::1]:4317", "127.0.0.1:4317"),
        ("0.0.0.0:0", "0.0.0.0:0"),
        ("127.0.0.1:0", "127.0.0.1:0"),
    ],
)
def test_receivers_that_do_not_conflict(first: str, second: str) -> None:
    assert load(BASE, two_receivers(first, second))


def test_a_receiver_no_pipeline_uses_never_conflicts() -> None:
    assert load(BASE, two_receivers("0.0.0.0:4317", "0.0.0.0:4317", use_second=False))


def test_two_protocols_of_one_receiver_on_one_port() -> None:
    text = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 0.0.0.0:4317
"""
    assert problems(BASE, text) == [
        "receivers.otlp: http address 0.0.0.0:4317 uses the same port as its grpc address 127.0.0.1:4317"
    ]


def test_a_receiver_on_the_telemetry_port() -> None:
    text = "service:\n  telemetry:\n    metrics:\n      address: localhost:4317\n"
    assert problems(BASE, text) == [
        "service.telemetry.metrics.address: metrics address localhost:4317 uses the same port as "
        'receiver "otlp" grpc address 127.0.0.1:4317'
    ]


def test_receivers_of_different_types_conflict_too() -> None:
    text = """
receivers:
  syslog:
    tcp:
      listen_address: 0.0.0.0:4317
service:
  pipelines:
    logs:
      receivers: [syslog]
      exporters: [debug]
"""
    assert problems(BASE, text) == [
        'receivers.syslog: tcp address 0.0.0.0:4317 uses the same port as receiver "otlp" grpc address '
        "127.0.0.1:4317"
    ]


# ---- connectors -----------------------------------------------------------------------------

CONNECTED = """
connectors:
  spanmetrics:
exporters:
  prometheus:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [spanmetrics]
    metrics:
      receivers: [spanmetrics]
      exporters: [prometheus]
"""


def test_a_connector_joins_two_pipelines() -> None:
    config = load(BASE, CONNECTED)
    assert ComponentID("spanmetrics") in config.connectors
    assert config.pipelines[PipelineID(Signal.METRICS)].receivers == (ComponentID("spanmetrics"),)
    assert config.pipelines[PipelineID(Signal.TRACES)].exporters == (ComponentID("spanmetrics"),)


def test_a_connector_used_on_one_side_only() -> None:
    only_exporter = CONNECTED.replace("receivers: [spanmetrics]", "receivers: [otlp]")
    assert problems(BASE, only_exporter) == [
        'service.pipelines.traces.exporters[0]: connector "spanmetrics" is used as an exporter but no pipeline '
        "lists it as a receiver"
    ]
    only_receiver = CONNECTED.replace("exporters: [spanmetrics]", "exporters: [debug]")
    assert problems(BASE, only_receiver) == [
        'service.pipelines.metrics.receivers[0]: connector "spanmetrics" is used as a receiver but no pipeline '
        "lists it as an exporter"
    ]


def test_a_configured_connector_no_pipeline_uses_is_fine() -> None:
    assert load(BASE, "connectors:\n  spanmetrics/idle:\n")


def test_every_pair_of_signals_must_be_supported() -> None:
    text = CONNECTED + """
    logs:
      receivers: [spanmetrics]
      exporters: [debug]
"""
    assert problems(BASE, text) == [
        'service.pipelines.logs.receivers[0]: connector "spanmetrics" cannot connect traces to logs (pipeline '
        '"traces" exports to it, pipeline "logs" receives from it); it supports traces to metrics'
    ]


def test_a_connector_with_several_pairs() -> None:
    fine = """
receivers:
  syslog:
connectors:
  count:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [count]
    logs:
      receivers: [syslog]
      exporters: [count]
    metrics:
      receivers: [count]
      exporters: [debug]
"""
    assert load(BASE, fine).connectors
    # `forward` supports traces→traces and metrics→metrics; used between traces and metrics
    # pipelines, the graph would hand it both outputs, so each pair must be supported.
    mixed = """
connectors:
  forward:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [forward]
    traces/2:
      receivers: [forward]
      exporters: [debug]
    metrics:
      receivers: [forward]
      exporters: [debug]
"""
    assert problems(BASE, mixed) == [
        'service.pipelines.metrics.receivers[0]: connector "forward" cannot connect traces to metrics (pipeline '
        '"traces" exports to it, pipeline "metrics" receives from it); it supports traces to traces, '
        "metrics to metrics"
    ]


def test_connectors_must_not_form_a_cycle() -> None:
    text = """
connectors:
  forward/a:
  forward/b:
service:
  pipelines:
    traces:
      receivers: [otlp, forward/b]
      exporters: [forward/a]
    traces/2:
      receivers: [forward/a]
      exporters: [forward/b]
"""
    assert problems(BASE, text) == ["service.pipelines.traces: connectors form a cycle: traces → traces/2 → traces"]


def test_a_connector_id_that_is_also_an_exporter_id_is_ambiguous() -> None:
    text = "exporters:\n  forward:\nconnectors:\n  forward:\n"
    assert problems(BASE, text) == [
        'connectors.forward: the id "forward" is also used by exporters.forward; pipelines could not tell them apart'
    ]
