"""The syslog receiver's config: Collector keys and defaults, validation sentences, factory."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from agent.component import Stability
from agent.components import default_registry
from agent.config.load import load_dict
from agent.config.types import dec_hook
from agent.errors import ConfigError
from agent.model import Signal
from agent.receivers.syslog import FACTORY, SyslogConfig
from tests.unit.receivers.syslog.kit import config_of


def problem(raw: dict[str, Any]) -> str:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(raw, SyslogConfig, dec_hook=dec_hook)
    return str(info.value)


def agent_problems(receiver: dict[str, Any]) -> str:
    """Every problem the whole config layer reports for a syslog receiver section."""
    doc = {
        "receivers": {"syslog": receiver},
        "exporters": {"debug": {}},
        "service": {"pipelines": {"logs": {"receivers": ["syslog"], "exporters": ["debug"]}}},
    }
    with pytest.raises(ConfigError) as info:
        load_dict(doc, default_registry())
    return "\n".join(info.value.problems)


def test_defaults_are_the_collectors() -> None:
    config = config_of()
    assert config.protocol == "rfc5424"
    assert config.location == "UTC"
    assert config.enable_octet_counting is False
    assert config.non_transparent_framing_trailer is None
    assert config.max_octets == 8192
    assert config.allow_skip_pri_header is False
    assert config.on_error == "send"
    assert config.attributes == {} and config.resource == {}
    assert config.udp is None
    tcp = config.tcp
    assert tcp is not None
    assert tcp.max_log_size == 1024 * 1024
    assert tcp.tls is None and tcp.add_attributes is False and tcp.one_log_per_packet is False
    assert tcp.encoding == "utf-8"
    assert tcp.max_connections == 1024
    assert tcp.connection_idle_timeout == 60.0


def test_factory() -> None:
    assert FACTORY.type == "syslog"
    assert FACTORY.signals == {Signal.LOGS: Stability.BETA}
    assert FACTORY.config_type is SyslogConfig


def test_listen_addresses_leave_out_a_udp_port_shared_with_tcp() -> None:
    shared = config_of(udp={"listen_address": "0.0.0.0:514"}, tcp={"listen_address": "0.0.0.0:514"})
    assert FACTORY.listen_addresses(shared) == [("tcp", "0.0.0.0:514")]
    apart = config_of(udp={"listen_address": "0.0.0.0:5140"}, tcp={"listen_address": "0.0.0.0:514"})
    assert FACTORY.listen_addresses(apart) == [("tcp", "0.0.0.0:514"), ("udp", "0.0.0.0:5140")]


def test_max_octets_zero_means_the_default_and_sizes_parse() -> None:
    config = config_of(max_octets=0, tcp={"listen_address": "127.0.0.1:0", "max_log_size": "2MiB"})
    assert config.max_octets == 8192
    assert config.tcp is not None and config.tcp.max_log_size == 2 * 1024 * 1024
    assert config_of(tcp={"listen_address": ":1", "max_log_size": 0}).tcp.max_log_size == 1024 * 1024  # type: ignore[union-attr]


def test_attribute_values_become_strings() -> None:
    config = config_of(attributes={"port": 514, "on": True, "name": "edge"}, resource={"ratio": 0.5})
    assert config.static_attributes == {"port": "514", "on": "true", "name": "edge"}
    assert config.resource_attributes == {"ratio": "0.5"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"protocol": "rfc5424"}, "add a tcp or a udp section"),
        ({"protocol": "rfc5424", "tcp": {"listen_address": "514"}}, "must be host:port"),
        ({"protocol": "rfc5424", "udp": {"listen_address": "::1:514"}}, "IPv6 address in brackets"),
        ({"protocol": "rfc5424", "tcp": {"listen_address": "a:1"}, "enable_octet_counting": True,
          "non_transparent_framing_trailer": "LF"}, "only one of enable_octet_counting"),
        ({"protocol": "rfc5424", "udp": {"listen_address": "a:1"}, "enable_octet_counting": True},
         "not compatible with UDP"),
        ({"protocol": "rfc5424", "udp": {"listen_address": "a:1"}, "non_transparent_framing_trailer": "NUL"},
         "not compatible with UDP"),
        ({"protocol": "rfc5424", "tcp": {"listen_address": "a:1"}, "enable_octet_counting": True,
          "allow_skip_pri_header": True}, "allow_skip_pri_header needs enable_octet_counting: false"),
        ({"protocol": "rfc3164", "tcp": {"listen_address": "a:1"}, "location": "Mars/Olympus"},
         "not a known time zone"),
        ({"protocol": "rfc5424", "tcp": {"listen_address": "a:1", "max_log_size": "1KiB"}},
         "at least 65536 bytes"),
        ({"protocol": "rfc5424", "tcp": {"listen_address": "a:1", "encoding": "utf-16le"}},
         "encoding 'utf-16le' is not supported by Flowglass"),
        ({"protocol": "rfc5424", "tcp": {"listen_address": "a:1"}, "attributes": {"x": 'EXPR(body)'}},
         "expressions (EXPR(...)) are not supported"),
        ({"protocol": "rfc5424", "tcp": {"listen_address": "a:1"}, "max_octets": -1}, ">= 0"),
        ({"protocol": "rfc5424", "tcp": {"listen_address": "a:1", "max_connections": -1}}, ">= 0"),
    ],
)
def test_invalid_configs_say_why(raw: dict[str, Any], expected: str) -> None:
    assert expected in problem(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"protocol": "rfc6587", "tcp": {"listen_address": "a:1"}}, "invalid value 'rfc6587'"),
        ({"protocol": "rfc5424", "tcp": {"listen_address": "a:1"}, "non_transparent_framing_trailer": "CRLF"},
         "invalid value 'CRLF'"),
        ({"protocol": "rfc5424", "tcp": {"listen_address": "a:1"}, "on_error": "ignore"}, "invalid value 'ignore'"),
        ({"tcp": {"listen_address": "a:1"}}, "receivers.syslog.protocol: this option is required"),
        ({"protocol": "rfc5424", "tcp": {}}, "receivers.syslog.tcp.listen_address: this option is required"),
    ],
)
def test_the_config_layer_reports_paths(raw: dict[str, Any], expected: str) -> None:
    assert expected in agent_problems(raw)


@pytest.mark.parametrize(
    ("raw", "option"),
    [
        ({"operators": []}, "receivers.syslog.operators"),
        ({"storage": "file_storage"}, "receivers.syslog.storage"),
        ({"retry_on_failure": {"enabled": True}}, "receivers.syslog.retry_on_failure"),
        ({"tcp": {"listen_address": "a:1", "multiline": {"line_start_pattern": "x"}}},
         "receivers.syslog.tcp.multiline"),
        ({"udp": {"listen_address": "a:1", "async": {"readers": 2}}}, "receivers.syslog.udp.async"),
    ],
)
def test_collector_options_flowglass_lacks_are_named(raw: dict[str, Any], option: str) -> None:
    doc = {"protocol": "rfc5424", "tcp": {"listen_address": "a:1"}, **raw}
    problems = agent_problems(doc)
    name = option.rsplit(".", 1)[1]
    assert f'{option}: the Collector\'s option "{name}" is not supported by Flowglass' in problems


def test_a_typo_is_an_unknown_option() -> None:
    problems = agent_problems({"protocol": "rfc5424", "tcp": {"listen_adress": "a:1"}})
    assert "receivers.syslog.tcp.listen_adress: unknown option" in problems


def test_a_collector_config_loads_as_is() -> None:
    receiver = {
        "tcp": {"listen_address": "0.0.0.0:54526", "tls": {"cert_file": "/c.pem", "key_file": "/k.pem"},
                "add_attributes": True, "max_log_size": "1MiB"},
        "protocol": "rfc3164", "location": "America/New_York", "enable_octet_counting": False,
        "on_error": "drop_quiet", "attributes": {"env": "prod"}, "resource": {"host.name": "edge-1"},
    }
    doc = {
        "receivers": {"syslog": receiver},
        "exporters": {"debug": {}},
        "service": {"pipelines": {"logs": {"receivers": ["syslog"], "exporters": ["debug"]}}},
    }
    assert load_dict(doc, default_registry()).pipelines
