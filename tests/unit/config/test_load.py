"""Files, YAML, merging and the order problems are reported in."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.component import ComponentID, PipelineID
from agent.config import ConfigError, load
from agent.model import Signal
from tests.unit.config.fakes import BASE, REGISTRY, problems
from tests.unit.config.fakes import load as load_texts


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_problems(paths: list[Path]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(paths, REGISTRY, environ={})
    return info.value.problems


def test_two_files_are_deep_merged(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", BASE.replace("  debug:\n", """  debug:
  kafka:
    brokers: [a:9092, b:9092]
""") + """
processors:
  batch:
    timeout: 1s
    send_batch_size: 100
""")
    second = write(tmp_path, "b.yaml", """
processors:
  batch:
    send_batch_size: 200
exporters:
  kafka:
    brokers: [c:9092]
service:
  pipelines:
    traces:
      exporters: [debug, kafka]
    logs:
      receivers: [otlp]
      exporters: [debug]
""")
    config = load([first, str(second)], REGISTRY, environ={})
    batch = config.processors[ComponentID("batch")].config
    # Mappings merge: the first file's timeout stays, the second's size wins.
    assert (batch.timeout, batch.send_batch_size) == (1.0, 200)
    # Lists are replaced, not appended.
    assert config.exporters[ComponentID("kafka")].config.brokers == ["c:9092"]
    traces = config.pipelines[PipelineID(Signal.TRACES)]
    assert traces.receivers == (ComponentID("otlp"),)
    assert traces.exporters == (ComponentID("debug"), ComponentID("kafka"))
    assert PipelineID(Signal.LOGS) in config.pipelines


def test_a_later_null_replaces_a_mapping() -> None:
    found = problems(BASE, "service:\n  pipelines:\n")
    assert found == ["service.pipelines: at least one pipeline is required"]


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    good = write(tmp_path, "good.yaml", BASE)
    missing = tmp_path / "missing.yaml"
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"receivers: {}\n# caf\xe9\n")
    found = load_problems([good, missing, latin1])
    assert found[0].startswith(f"{missing}: cannot read the file: No such file or directory")
    assert found[1] == f"{latin1}: the file is not UTF-8 text (byte 19)"
    assert len(found) == 2


def test_invalid_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", "receivers:\n  otlp:\n    protocols: [grpc\nexporters:\n")
    worse = write(tmp_path, "worse.yaml", "a: b: c\n")
    found = load_problems([bad, worse])
    assert len(found) == 2
    assert found[0].startswith(f"{bad}:4:10: invalid YAML: ")
    assert found[1].startswith(f"{worse}:1:5: invalid YAML: mapping values are not allowed here")


def test_the_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    listing = write(tmp_path, "list.yaml", "\n- receivers\n- exporters\n")
    assert load_problems([listing]) == [
        f"{listing}:2: the top level must be a mapping of sections (receivers, exporters, service, ...), got a list"
    ]


def test_an_empty_file_is_an_empty_config(tmp_path: Path) -> None:
    empty = write(tmp_path, "empty.yaml", "# nothing yet\n")
    assert load_problems([empty]) == ["service.pipelines: at least one pipeline is required"]
    # An empty file merged over a valid one changes nothing.
    assert load([write(tmp_path, "base.yaml", BASE), empty], REGISTRY, environ={}).pipelines


def test_no_files() -> None:
    with pytest.raises(ConfigError, match="no configuration file"):
        load([], REGISTRY)


def test_a_key_written_twice_is_a_problem() -> None:
    text = "processors:\n  batch:\n    timeout: 1s\n    send_batch_size: 5\n    timeout: 2s\n"
    assert problems(BASE, text) == [
        "processors.batch.timeout: written twice in <config 2> (lines 3 and 5); the last one would win"
    ]


def test_merge_keys_are_not_duplicates() -> None:
    text = BASE + """
processors:
  batch: &defaults
    timeout: 1s
    send_batch_size: 10
  batch/big:
    <<: *defaults
    send_batch_size: 1000
"""
    config = load_texts(text)
    big = config.processors[ComponentID("batch", "big")].config
    assert (big.timeout, big.send_batch_size) == (1.0, 1000)


def test_scalars_follow_yaml_1_2() -> None:
    text = """
receivers:
  otlp:
    protocols:
      grpc:
        max_recv_msg_size_mib: 010
exporters:
  otlp:
    endpoint: x
    tls:
      insecure: yes
  kafka:
    topic: 2024-01-01
"""
    found = problems(BASE, text)
    # `yes` is a string in YAML 1.2; a date stays a string; 010 is ten.
    assert found == ["exporters.otlp.tls.insecure: expected bool, got str"]
    config = load_texts(BASE, text.replace("yes", "true"))
    assert config.exporters[ComponentID("kafka")].config.topic == "2024-01-01"
    grpc = config.receivers[ComponentID("otlp")].config.protocols.grpc
    assert grpc.max_recv_msg_size_mib == 10


def test_unknown_tags_are_problems() -> None:
    found = problems(BASE, "exporters:\n  kafka:\n    topic: !vault secret/x\n")
    assert len(found) == 1
    assert found[0].startswith("exporters.kafka.topic: cannot read this value: could not determine a constructor")


def test_problems_are_sorted_by_where_they_appear() -> None:
    text = """
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug, nope]
exporters:
  kafka:
    brokers: x
  debug:
receivers:
  otlp:
    protocols:
      grpc:
        bogus: 1
x_receivers:
"""
    assert problems(text) == [
        'service.pipelines.traces.exporters[1]: exporter "nope" is not configured',
        "exporters.kafka.brokers: expected array, got str",
        "receivers.otlp.protocols.grpc.bogus: unknown option (options here: endpoint, max_recv_msg_size_mib)",
        "x_receivers: unknown section; the sections are receivers, processors, exporters, connectors, "
        "extensions and service",
    ]


def test_five_mistakes_in_five_places_are_all_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "five.yaml", """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
  jaeger:
processors:
  batch:
    timout: 1s
exporters:
  kafka:
    brokers: broker:9092
  debug:
service:
  workers: 0
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug, otlp/missing]
""")
    assert load_problems([path]) == [
        'receivers.jaeger: unknown receiver type "jaeger" (known: otlp, syslog)',
        'processors.batch.timout: unknown option; did you mean "timeout"?',
        "exporters.kafka.brokers: expected array, got str",
        "service.workers: must be at least 1, got 0",
        'service.pipelines.traces.exporters[1]: exporter "otlp/missing" is not configured',
    ]
