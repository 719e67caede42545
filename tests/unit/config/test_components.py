"""Sections, ids, component types and options, the service section — through `load_text`."""

from __future__ import annotations

from agent.component import ComponentID, Kind
from agent.config import ConfigError, load_dict
from agent.config.model import ServiceSection
from tests.unit.config.fakes import BASE, REGISTRY, OTLPExporterConfig, load, problems


def test_a_valid_config_keeps_every_configured_component() -> None:
    config = load(BASE, "processors:\n  batch/unused:\n    timeout: 1s\nexporters:\n  kafka/edge:\n")
    assert set(config.receivers) == {ComponentID("otlp")}
    # Configured but used by no pipeline: kept (the graph builds only what pipelines use).
    assert config.processors[ComponentID("batch", "unused")].config.timeout == 1.0
    assert config.exporters[ComponentID("kafka", "edge")].config.brokers == ["localhost:9092"]
    assert config.exporters[ComponentID("kafka", "edge")].kind is Kind.EXPORTER


def test_an_alias_keeps_the_id_as_written() -> None:
    config = load(BASE, "exporters:\n  otlp:\n    endpoint: gw:4317\n")
    cc = config.exporters[ComponentID("otlp")]
    assert cc.factory.type == "otlp_grpc"
    assert isinstance(cc.config, OTLPExporterConfig)
    found = problems(BASE, "exporters:\n  otlp:\n    endpoint: 5\n")
    assert found == ["exporters.otlp.endpoint: expected str, got int"]


def test_null_options_mean_all_defaults() -> None:
    config = load(BASE, "processors:\n  batch:\n")
    assert config.processors[ComponentID("batch")].config.send_batch_size == 8192


def test_invalid_component_ids() -> None:
    found = problems(BASE, "processors:\n  1batch:\n  batch/:\n  batch/a b:\n  batch/ok:\n")
    assert found == [
        "processors.1batch: invalid component id '1batch': the type must start with a letter and hold only "
        "letters, digits and '_' (at most 63 characters)",
        "processors.batch/: invalid component id 'batch/': the name after '/' must not be empty",
        "processors[\"batch/a b\"]: invalid component id 'batch/a b': the name must not contain ' ' "
        "(spaces, control characters, symbols and '/' are not allowed)",
    ]


def test_unknown_type_lists_the_known_ones() -> None:
    assert problems(BASE, "receivers:\n  foo:\n") == ['receivers.foo: unknown receiver type "foo" (known: otlp, syslog)']


def test_a_type_of_another_kind_says_where_it_belongs() -> None:
    found = problems(BASE, "processors:\n  spanmetrics:\n")
    assert found == [
        'processors.spanmetrics: unknown processor type "spanmetrics" (known: attributes, batch, tail_sampling); '
        '"spanmetrics" is a connector, configure it under connectors'
    ]


def test_unknown_sections_and_sections_of_the_wrong_shape() -> None:
    found = problems(BASE, "receiver:\n  otlp:\nprocessors: [batch]\nconnectors:\n  spanmetrics: [1]\n")
    assert found == [
        "receiver: unknown section; the sections are receivers, processors, exporters, connectors, "
        "extensions and service",
        "processors: expected a mapping of processor ids to their options, got a list",
        "connectors.spanmetrics: expected object, got array",
    ]


def test_extensions_are_reported_as_not_supported_with_a_hint() -> None:
    found = problems(BASE, "extensions:\n  health_check:\n  pprof/x:\nservice:\n  extensions: [health_check, zpages]\n")
    hint = "Flowglass itself serves /healthz, /readyz and /metrics on service.telemetry.metrics.address"
    assert found == [
        f'extensions.health_check: the Collector\'s extension "health_check" is not supported by Flowglass; {hint}',
        f'extensions.pprof/x: the Collector\'s extension "pprof" is not supported by Flowglass; {hint}',
        'service.extensions[1]: extension "zpages" is not configured',
    ]


def test_unknown_option_suggests_a_close_name() -> None:
    found = problems(BASE, "exporters:\n  otlp:\n    endpont: x\n  kafka:\n    zzz: 1\n")
    assert found == [
        'exporters.otlp.endpont: unknown option; did you mean "endpoint"?',
        "exporters.kafka.zzz: unknown option (options here: brokers, topic)",
    ]


def test_unsupported_upstream_options_say_so() -> None:
    text = """
receivers:
  otlp:
    protocols:
      grpc:
        auth:
          authenticator: oidc
exporters:
  otlp:
    endpoint: x
    auth: {}
  otlp/q:
    endpoint: x
    sending_queue:
      batch: {}
"""
    assert problems(BASE, text) == [
        'receivers.otlp.protocols.grpc.auth: the Collector\'s option "auth" is not supported by Flowglass',
        'exporters.otlp.auth: the Collector\'s option "auth" is not supported by Flowglass',
        # Listed by the nested Struct (QueueConfig) itself.
        'exporters.otlp/q.sending_queue.batch: the Collector\'s option "batch" is not supported by Flowglass',
    ]


def test_an_upstream_name_at_another_place_is_just_unknown() -> None:
    found = problems(BASE, "receivers:\n  otlp:\n    protocols:\n      auth: {}\n")
    assert found[0].startswith("receivers.otlp.protocols.auth: unknown option")


def test_type_errors_carry_nested_paths_and_list_indexes() -> None:
    text = """
receivers:
  otlp:
    protocols:
      grpc:
        max_recv_msg_size_mib: "4"
processors:
  attributes:
    actions:
      - {key: a, action: insert}
      - {key: 5, action: insert}
exporters:
  kafka:
    brokers: broker:9092
"""
    assert problems(BASE, text) == [
        "receivers.otlp.protocols.grpc.max_recv_msg_size_mib: expected int, got str",
        "processors.attributes.actions[1].key: expected str, got int",
        "exporters.kafka.brokers: expected array, got str",
    ]


def test_a_bad_value_under_a_mapping_key_names_the_key() -> None:
    text = "processors:\n  attributes:\n    renames:\n      a: {to: x}\n      http.method: {to: 5}\n"
    assert problems(BASE, text) == ['processors.attributes.renames["http.method"].to: expected str, got int']


def test_required_options_constraints_and_choices() -> None:
    text = """
receivers:
  otlp:
    protocols:
      grpc:
        max_recv_msg_size_mib: 0
processors:
  attributes:
    actions: [{key: a, action: remove}]
exporters:
  otlp/nothing:
  debug:
    verbosity: loud
"""
    assert problems(BASE, text) == [
        "receivers.otlp.protocols.grpc.max_recv_msg_size_mib: expected int >= 1",
        "processors.attributes.actions[0].action: invalid value 'remove' (expected one of: 'delete', 'insert', "
        "'update', 'upsert')",
        "exporters.otlp/nothing.endpoint: this option is required",
        "exporters.debug.verbosity: invalid value 'loud' (expected one of: 'basic', 'detailed', 'normal')",
    ]


def test_post_init_and_parser_sentences_are_kept() -> None:
    text = """
receivers:
  otlp/none:
    protocols: {}
processors:
  batch:
    send_batch_size: 100
    send_batch_max_size: 10
  batch/t:
    timeout: 5 seconds
"""
    assert problems(BASE, text) == [
        "receivers.otlp/none: enable at least one protocol: add protocols.grpc or protocols.http",
        "processors.batch: send_batch_max_size must be 0 or at least send_batch_size",
        "processors.batch/t.timeout: expected a duration like 200ms, 5s or 1m30s, got '5 seconds'",
    ]


def test_service_options_are_each_checked() -> None:
    text = """
service:
  workers: 0
  telemetry:
    metrics:
      address: nowhere
  shutdown_timeout: soon
  extra: 1
"""
    assert problems(BASE, text) == [
        "service.telemetry.metrics.address: expected host:port (or \"\" to turn it off), got 'nowhere'",
        "service.workers: must be at least 1, got 0",
        "service.shutdown_timeout: expected a duration like 200ms, 5s or 1m30s, got 'soon'",
        "service.extra: unknown option (options here: pipelines, telemetry, extensions, shutdown_timeout, workers)",
    ]


def test_service_section_is_converted() -> None:
    config = load(BASE, "service:\n  workers: 4\n  shutdown_timeout: 5s\n  telemetry:\n    logs:\n      level: debug\n")
    assert isinstance(config.service, ServiceSection)
    assert config.service.workers == 4
    assert config.service.shutdown_timeout == 5.0
    assert config.service.telemetry.logs.level == "debug"
    assert config.service.pipelines["traces"].receivers == ["otlp"]


def test_load_dict_takes_plain_data() -> None:
    raw = {
        "receivers": {"syslog": None},
        "exporters": {"debug": {"verbosity": "detailed"}},
        "service": {"pipelines": {"logs": {"receivers": ["syslog"], "exporters": ["debug"]}}},
    }
    config = load_dict(raw, REGISTRY)
    assert config.exporters[ComponentID("debug")].config.verbosity == "detailed"
    raw["exporters"] = {"debug": {"verbosity": 1}, "nope": None}
    try:
        load_dict(raw, REGISTRY)
    except ConfigError as err:
        assert err.problems == [
            "exporters.debug.verbosity: expected str, got int",
            'exporters.nope: unknown exporter type "nope" (known: debug, forward, kafka, otlp, otlp_grpc, '
            "prometheus)",
        ]
    else:
        raise AssertionError("load_dict accepted a bad config")
