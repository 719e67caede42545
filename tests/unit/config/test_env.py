"""`${env:...}` expansion through the public loader."""

from __future__ import annotations

import pytest

from agent.component import ComponentID
from agent.config import load_text
from tests.unit.config.fakes import BASE, REGISTRY, load, problems

OTLP = ComponentID("otlp")


def exporter_endpoint(value: str, **environ: str) -> object:
    config = load(BASE, f"exporters:\n  otlp:\n    endpoint: {value}\n", **environ)
    return config.exporters[OTLP].config.endpoint


def grpc(config: object) -> object:
    return config.receivers[ComponentID("otlp")].config.protocols.grpc  # type: ignore[attr-defined]


def test_env_scheme_inside_a_longer_string() -> None:
    assert exporter_endpoint("http://${env:HOST}:4318/v1", HOST="gateway") == "http://gateway:4318/v1"


def test_bare_braces_form() -> None:
    assert exporter_endpoint("${HOST}:4317", HOST="edge") == "edge:4317"


def test_default_is_used_only_when_the_variable_is_unset() -> None:
    assert exporter_endpoint("${env:HOST:-localhost:4317}") == "localhost:4317"
    assert exporter_endpoint("${env:HOST:-localhost:4317}", HOST="gw:1") == "gw:1"
    # As in the Collector, a set-but-empty variable is not replaced by the default.
    assert exporter_endpoint("x${env:HOST:-fallback}x", HOST="") == "xx"
    assert exporter_endpoint("${HOST:-bare}") == "bare"


def test_missing_variable_without_default_expands_to_empty() -> None:
    assert exporter_endpoint("a${env:NOPE}b") == "ab"


def test_double_dollar_is_a_literal_dollar() -> None:
    assert exporter_endpoint("'price $$5'") == "price $5"
    assert exporter_endpoint("'$${env:HOST}'", HOST="x") == "${env:HOST}"
    # A lone `$` not followed by `{` or `$` is kept as written.
    assert exporter_endpoint("'a$b'") == "a$b"


def test_a_whole_value_reference_is_read_again_as_a_yaml_scalar() -> None:
    text = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        max_recv_msg_size_mib: ${env:SIZE}\n"
    assert grpc(load(BASE, text, SIZE="16")).max_recv_msg_size_mib == 16  # type: ignore[attr-defined]
    tls = "exporters:\n  otlp:\n    endpoint: x\n    tls:\n      insecure: ${env:INSECURE}\n"
    assert load(BASE, tls, INSECURE="true").exporters[OTLP].config.tls.insecure is True


def test_reparsing_uses_yaml_1_2_so_on_stays_a_string() -> None:
    tls = "exporters:\n  otlp:\n    endpoint: x\n    tls:\n      insecure: ${env:INSECURE}\n"
    assert problems(BASE, tls, INSECURE="on") == ["exporters.otlp.tls.insecure: expected bool, got str"]


def test_a_quoted_reference_stays_a_string() -> None:
    text = 'exporters:\n  kafka:\n    topic: "${env:TOPIC}"\n'
    config = load(BASE, text, TOPIC="123")
    assert config.exporters[ComponentID("kafka")].config.topic == "123"
    unquoted = "exporters:\n  kafka:\n    topic: ${env:TOPIC}\n"
    assert problems(BASE, unquoted, TOPIC="123") == ["exporters.kafka.topic: expected str, got int"]


def test_a_reference_with_text_around_is_not_reparsed() -> None:
    assert exporter_endpoint("${env:A}${env:B}", A="1", B="2") == "12"


def test_unknown_scheme_is_a_problem_with_its_path() -> None:
    found = problems(BASE, "exporters:\n  otlp:\n    endpoint: ${file:/etc/endpoint}\n")
    assert len(found) == 1
    assert found[0].startswith('exporters.otlp.endpoint: unknown scheme "file" in ${file:/etc/endpoint}')


def test_unterminated_and_malformed_references_are_problems() -> None:
    found = problems(BASE, "exporters:\n  otlp:\n    endpoint: ${env:HOST\n  kafka:\n    topic: ${env:9X}\n")
    assert found[0].startswith("exporters.otlp.endpoint: '${env:HOST' has no closing '}'")
    assert found[1].startswith("exporters.kafka.topic: ${env:9X}: '9X' is not a valid environment variable name")


def test_keys_are_not_expanded() -> None:
    found = problems(BASE, "exporters:\n  ${env:X}:\n", X="debug")
    assert found == ["exporters.${env:X}: invalid component id '${env:X}': the type must start with a letter "
                     "and hold only letters, digits and '_' (at most 63 characters)"]


def test_references_in_a_later_file_are_expanded_after_the_merge() -> None:
    config = load(BASE, "exporters:\n  otlp:\n    endpoint: ${env:EP}\n", EP="later:1")
    assert config.exporters[OTLP].config.endpoint == "later:1"


def test_environ_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWGLASS_TEST_ENDPOINT", "from-process:4317")
    config = load_text(BASE, "exporters:\n  otlp:\n    endpoint: ${env:FLOWGLASS_TEST_ENDPOINT}\n",
                       registry=REGISTRY)
    assert config.exporters[OTLP].config.endpoint == "from-process:4317"
