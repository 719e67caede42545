"""Shared Kafka client options: connection keyword arguments, and aiokafka's repeated lines held back."""

from __future__ import annotations

import logging

import msgspec
import pytest

from agent.config.kafka import KafkaClientConfig, _RepeatFilter
from agent.config.types import dec_hook


def _config(options: dict[str, object]) -> KafkaClientConfig:
    return msgspec.convert(options, KafkaClientConfig, dec_hook=dec_hook)


def test_plaintext_by_default_and_timeouts_in_milliseconds() -> None:
    options = _config({"brokers": ["a:9092", "[::1]:9093"], "conn_idle_timeout": "1m",
                       "metadata": {"refresh_interval": "30s", "retry": {"backoff": "100ms"}}}).client_options()
    assert options["bootstrap_servers"] == ["a:9092", "[::1]:9093"]
    assert options["security_protocol"] == "PLAINTEXT" and "ssl_context" not in options
    assert (options["connections_max_idle_ms"], options["metadata_max_age_ms"], options["retry_backoff_ms"]) == (
        60_000, 30_000, 100)


def test_an_empty_tls_section_turns_tls_on_and_insecure_turns_it_off() -> None:
    assert _config({"tls": None}).tls_enabled
    assert _config({"tls": {}}).client_options()["security_protocol"] == "SSL"
    assert not _config({"tls": {"insecure": True}}).tls_enabled


def test_a_missing_ca_file_fails_when_the_client_is_made() -> None:
    with pytest.raises(OSError):
        _config({"tls": {"ca_file": "/nonexistent/ca.pem"}}).client_options()


def test_repeated_client_warnings_are_let_through_once_per_interval() -> None:
    f = _RepeatFilter(interval=60.0)

    def record(msg: str, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord("aiokafka", level, __file__, 1, msg, ("node",), None)

    assert f.filter(record("Unable connect to node %s"))
    assert not f.filter(record("Unable connect to node %s"))
    assert not f.filter(record("Unable connect to node %s"))
    assert f.filter(record("Another problem %s"))
    assert f.filter(record("Unable connect to node %s", logging.DEBUG))
    f._last[("aiokafka", "Unable connect to node %s")] -= 61
    again = record("Unable connect to node %s")
    assert f.filter(again) and again.similar_not_logged == 2  # type: ignore[attr-defined]
