"""The otlp receiver's config: Collector keys and defaults, validation sentences, factory."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from agent.component import Kind, Settings, Stability
from agent.model import Signal
from agent.receivers.otlp import FACTORY, OTLPReceiverConfig, split_endpoint
from agent.receivers.otlp.grpc import grpc_address, server_options
from agent.receivers.otlp.receiver import OTLPReceiver
from agent.testing import Sink
from tests.unit.receivers.otlp.kit import config_of


def problem(raw: Any) -> str:
    with pytest.raises(msgspec.ValidationError) as info:
        config_of(raw)
    return str(info.value)


def test_null_protocol_means_defaults() -> None:
    config = config_of({"protocols": {"grpc": None}})
    assert config.grpc is not None and config.http is None
    assert config.grpc.endpoint == "localhost:4317"
    assert config.grpc.max_recv_msg_size == 4 * 1024 * 1024
    assert config.grpc.read_buffer_size == 512 * 1024
    assert config.grpc.include_metadata is False
    assert FACTORY.listen_addresses(config) == [("grpc", "localhost:4317")]


def test_http_defaults() -> None:
    config = config_of({"protocols": {"http": {}}})
    assert config.grpc is None and config.http is not None
    assert config.http.endpoint == "localhost:4318"
    assert config.http.max_request_body_size == 20 * 1024 * 1024
    assert [config.http.url_path(s) for s in Signal] == ["/v1/traces", "/v1/metrics", "/v1/logs"]
    assert FACTORY.listen_addresses(config) == [("http", "localhost:4318")]


def test_both_protocols_listen() -> None:
    config = config_of({"protocols": {"grpc": None, "http": None}})
    assert FACTORY.listen_addresses(config) == [("grpc", "localhost:4317"), ("http", "localhost:4318")]


@pytest.mark.parametrize("raw", [{}, {"protocols": {}}])
def test_no_protocol_is_an_error(raw: dict[str, Any]) -> None:
    assert "enable at least one protocol" in problem(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"protocols": {"grpc": {"endpoint": "4317"}}}, "must be host:port"),
        ({"protocols": {"grpc": {"endpoint": "localhost:99999"}}}, "port from 0 to 65535"),
        ({"protocols": {"http": {"endpoint": "::1:4318"}}}, "IPv6 address in brackets"),
        ({"protocols": {"grpc": {"transport": "udp"}}}, "transport"),
        ({"protocols": {"grpc": {"max_recv_msg_size_mib": -1}}}, "max_recv_msg_size_mib"),
        ({"protocols": {"grpc": {"bogus": 1}}}, "bogus"),
        ({"protocols": {"grpc": {"tls": {"key_file": "k.pem"}}}}, "cert_file and key_file"),
        ({"protocols": {"http": {"max_request_body_size": 0}}}, "at least 1 byte"),
        ({"protocols": {"http": {"logs_url_path": "/v1/traces"}}}, "must differ"),
        ({"protocols": {"http": {"cors": {"max_age": -5}}}}, "max_age"),
        ({"protocols": {"grpc": {"keepalive": {"server_parameters": {"time": "soon"}}}}}, "duration"),
    ],
)
def test_validation_errors_say_what_is_wrong(raw: dict[str, Any], expected: str) -> None:
    assert expected in problem(raw)


def test_sizes_durations_and_paths_parse() -> None:
    config = config_of(
        {
            "protocols": {
                "grpc": {"endpoint": "[::1]:4317", "read_buffer_size": "1MiB"},
                "http": {"max_request_body_size": "1MiB", "traces_url_path": "custom/traces"},
            }
        }
    )
    assert config.grpc is not None and config.http is not None
    assert config.grpc.read_buffer_size == 1024 * 1024
    assert config.http.max_request_body_size == 1024 * 1024
    assert config.http.traces_url_path == "/custom/traces"


def test_endpoints_split_and_bind_like_the_collector() -> None:
    assert split_endpoint("[::1]:4317") == ("::1", 4317)
    assert split_endpoint(":4317") == ("", 4317)
    assert grpc_address(":4317") == "[::]:4317"
    assert grpc_address("[::1]:4317") == "[::1]:4317"
    assert grpc_address("0.0.0.0:0") == "0.0.0.0:0"


def test_grpc_server_options_follow_config() -> None:
    config = config_of(
        {
            "protocols": {
                "grpc": {
                    "max_recv_msg_size_mib": 16,
                    "max_concurrent_streams": 100,
                    "keepalive": {
                        "server_parameters": {"max_connection_age": "30s", "time": "2h", "timeout": "20s"},
                        "enforcement_policy": {"min_time": "10s", "permit_without_stream": True},
                    },
                }
            }
        }
    )
    assert config.grpc is not None
    options = dict(server_options(config.grpc, reuse_port=False))
    assert options["grpc.max_receive_message_length"] == 16 * 1024 * 1024
    assert options["grpc.max_concurrent_streams"] == 100
    assert options["grpc.max_connection_age_ms"] == 30_000
    assert options["grpc.keepalive_time_ms"] == 7_200_000
    assert options["grpc.keepalive_timeout_ms"] == 20_000
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 10_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.so_reuseport"] == 0
    assert "grpc.max_connection_idle_ms" not in options  # 0 leaves gRPC's default


def test_unimplemented_collector_options_are_declared() -> None:
    upstream = OTLPReceiverConfig.__upstream_options__
    assert {"protocols.grpc.auth", "protocols.http.auth"} <= upstream
    assert all(path.startswith("protocols.") for path in upstream)


def test_factory_describes_the_receiver() -> None:
    assert FACTORY.type == "otlp"
    assert FACTORY.kind is Kind.RECEIVER
    assert FACTORY.config_type is OTLPReceiverConfig
    assert set(FACTORY.signals) == set(Signal)
    assert all(s is Stability.BETA for s in FACTORY.signals.values())
    assert FACTORY.create is not None
    receiver = FACTORY.create(
        Settings.for_test("otlp", Kind.RECEIVER),
        config_of({"protocols": {"grpc": None}}),
        {Signal.TRACES: Sink()},
    )
    assert isinstance(receiver, OTLPReceiver)
    assert receiver.grpc_port is None and receiver.http_port is None
