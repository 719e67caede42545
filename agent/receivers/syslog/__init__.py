"""`syslog` receiver: RFC 5424 and RFC 3164 messages over TCP, TLS and UDP, as OTLP logs.

Signals: logs.

```yaml
receivers:
  syslog:
    protocol: rfc5424            # rfc5424 | rfc3164 | auto (Flowglass: decides per message)
    tcp:
      listen_address: 0.0.0.0:54526
    udp:
      listen_address: 0.0.0.0:54526
```

Each message becomes one OTLP `LogRecord` shaped like the Collector's: body the message as
received (trimmed, without its octet count), timestamp from the header, observed timestamp
the time it was read, severity number and text from the PRI severity (`emerg` → FATAL …
`debug` → DEBUG), attributes `priority`, `facility`, `version` (ints), `facility_text`,
`hostname`, `appname`, `proc_id`, `msg_id`, `message` (strings) and `structured_data` (a map
of maps of strings). Fields sent as NILVALUE (`-`) are left out. See `record.py`.

TCP framing: `enable_octet_counting` (RFC 6587 §3.4.1) or `non_transparent_framing_trailer:
LF | NUL`; with neither, each connection is detected from its first byte (`1`–`9`: octet
counting, else trailer-delimited, LF or NUL, CRLF included). UDP: one message per datagram.

Differences from the Collector, each on purpose: `protocol: auto`; TCP and UDP may both be
set (the Collector silently uses only TCP); framing options work with every protocol; the
body leaves out the octet count; `tcp.max_connections` defaults to 1024 (0 = no limit);
a message that does not parse is still passed on raw with the default `on_error: send`
(as in the Collector) but counted, never logged one line per message.

Guarantees:
- a TCP connection hands each read to the pipeline and stops reading while a refused batch
  is retried (the sender feels it), with at most 16 Ki log records (16 MiB) of one
  connection and 64 Ki records (64 MiB) of the listener waiting for the pipeline
  (`intake.py`);
- UDP never waits: what the pipeline refuses, or what does not fit in flight, is counted
  (`flowglass_receiver_refused_items_total{reason}`) and dropped;
- frames over `max_octets` / `tcp.max_log_size` are skipped without being buffered, a bad
  octet count closes its connection; both are counted, other connections carry on;
- `stop_intake()` stops accepting connections and reading; `shutdown()` waits (bounded) for
  the records in flight, then closes every connection.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import msgspec

from agent.component import Consumer, ReceiverFactory, Settings, Stability
from agent.config.tls import TLSServerConfig
from agent.config.types import ByteSize, Duration
from agent.model import Signal

if TYPE_CHECKING:
    from agent.receivers.syslog.receiver import SyslogReceiver

#: The Collector's bounds and defaults for `tcp.max_log_size`.
MIN_MAX_LOG_SIZE = 64 * 1024
DEFAULT_MAX_LOG_SIZE = 1024 * 1024
#: go-syslog's default for octet-counted frames, which `max_octets: 0` stands for.
DEFAULT_MAX_OCTETS = 8192

_Scalar = str | int | float | bool


def split_address(address: str) -> tuple[str, int]:
    """`host:port` → (host, port); `[::1]:514` → ("::1", 514); `:514` → ("", 514)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"listen_address {address!r} must be host:port with a port from 0 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"listen_address {address!r}: write an IPv6 address in brackets, as [::1]:514")
    return host, int(port_text)


def _check_encoding(encoding: str) -> None:
    if encoding.lower().replace("-", "") != "utf8":
        raise ValueError(f"encoding {encoding!r} is not supported by Flowglass; only utf-8 is")


class TCPConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`tcp:` — the TCP (and TLS) listener."""

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"multiline"})

    listen_address: str
    tls: TLSServerConfig | None = None
    #: Longest trailer-delimited message; longer ones are skipped and counted.
    max_log_size: ByteSize = ByteSize(DEFAULT_MAX_LOG_SIZE)
    #: Add `net.*` attributes of both ends of the connection to every record.
    add_attributes: bool = False
    #: The whole connection is one message (at most `max_log_size` bytes).
    one_log_per_packet: bool = False
    encoding: str = "utf-8"
    preserve_leading_whitespaces: bool = False
    preserve_trailing_whitespaces: bool = False
    #: Connections open at once; a connection beyond it is closed at once and counted. 0 = no limit.
    max_connections: Annotated[int, msgspec.Meta(ge=0)] = 1024
    #: A connection that sends nothing for this long is closed; 0 keeps idle connections.
    connection_idle_timeout: Duration = Duration(60.0)

    def __post_init__(self) -> None:
        split_address(self.listen_address)
        if self.max_log_size == 0:
            self.max_log_size = ByteSize(DEFAULT_MAX_LOG_SIZE)
        if self.max_log_size < MIN_MAX_LOG_SIZE:
            raise ValueError(f"max_log_size must be at least {MIN_MAX_LOG_SIZE} bytes (64KiB)")
        _check_encoding(self.encoding)


class UDPConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`udp:` — the UDP listener; every datagram is one message."""

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"multiline", "async"})

    listen_address: str
    add_attributes: bool = False
    #: Accepted for Collector configs: a datagram is always one message here.
    one_log_per_packet: bool = False
    encoding: str = "utf-8"
    preserve_leading_whitespaces: bool = False
    preserve_trailing_whitespaces: bool = False

    def __post_init__(self) -> None:
        split_address(self.listen_address)
        _check_encoding(self.encoding)


class SyslogConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    __upstream_options__: ClassVar[frozenset[str]] = frozenset(
        {"operators", "storage", "retry_on_failure", "id", "output"}
    )

    protocol: Literal["rfc5424", "rfc3164", "auto"]
    tcp: TCPConfig | None = None
    udp: UDPConfig | None = None
    #: IANA time zone of RFC 3164 timestamps (which carry none).
    location: str = "UTC"
    enable_octet_counting: bool = False
    non_transparent_framing_trailer: Literal["LF", "NUL"] | None = None
    #: Largest octet-counted frame; 0 means the default, 8192.
    max_octets: Annotated[int, msgspec.Meta(ge=0)] = DEFAULT_MAX_OCTETS
    allow_skip_pri_header: bool = False
    #: What to do with a message that does not parse: pass it on raw (`send`) or drop it;
    #: `_quiet` also skips the (rate-limited) warning. Both are counted.
    on_error: Literal["send", "send_quiet", "drop", "drop_quiet"] = "send"
    #: Static attributes added to every record, and resource attributes of every batch.
    attributes: dict[str, _Scalar] = msgspec.field(default_factory=dict)
    resource: dict[str, _Scalar] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tcp is None and self.udp is None:
            raise ValueError("add a tcp or a udp section (or both) with a listen_address")
        if self.enable_octet_counting and self.non_transparent_framing_trailer is not None:
            raise ValueError(
                "only one of enable_octet_counting or non_transparent_framing_trailer can be set"
            )
        if self.tcp is None and (self.enable_octet_counting or self.non_transparent_framing_trailer):
            raise ValueError(
                "enable_octet_counting and non_transparent_framing_trailer frame TCP streams; "
                "they are not compatible with UDP alone"
            )
        if self.allow_skip_pri_header and self.enable_octet_counting:
            raise ValueError("allow_skip_pri_header needs enable_octet_counting: false")
        if self.max_octets == 0:
            self.max_octets = DEFAULT_MAX_OCTETS
        try:
            zoneinfo.ZoneInfo(self.location)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"location {self.location!r} is not a known time zone (use an IANA name such as "
                "UTC or America/New_York)"
            ) from None
        for section in (self.attributes, self.resource):
            for key, value in section.items():
                if isinstance(value, str) and value.startswith("EXPR("):
                    raise ValueError(
                        f"attribute {key!r}: expressions (EXPR(...)) are not supported by Flowglass; "
                        "use a static value"
                    )

    @property
    def static_attributes(self) -> dict[str, str]:
        """`attributes`, every value as a string (the Collector's values are strings)."""
        return {k: _text(v) for k, v in self.attributes.items()}

    @property
    def resource_attributes(self) -> dict[str, str]:
        return {k: _text(v) for k, v in self.resource.items()}


def _text(value: _Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def create(settings: Settings, config: SyslogConfig, consumers: Mapping[Signal, Consumer]) -> SyslogReceiver:
    from agent.receivers.syslog.receiver import SyslogReceiver

    return SyslogReceiver(settings, config, consumers[Signal.LOGS], reuse_port=settings.shared_ports)


def listen_addresses(config: SyslogConfig) -> list[tuple[str, str]]:
    # The agent's port check does not tell TCP from UDP, and `tcp` and `udp` on the same
    # port is the usual syslog setup, so a UDP port shared with this receiver's TCP port is
    # not reported.
    addresses = []
    if config.tcp is not None:
        addresses.append(("tcp", config.tcp.listen_address))
    if config.udp is not None:
        shared = config.tcp is not None and (
            split_address(config.tcp.listen_address)[1] == split_address(config.udp.listen_address)[1]
        )
        if not shared:
            addresses.append(("udp", config.udp.listen_address))
    return addresses


FACTORY = ReceiverFactory(
    type="syslog",
    config_type=SyslogConfig,
    description="Receives RFC 5424 and RFC 3164 syslog over TCP, TLS and UDP as OTLP logs.",
    signals={Signal.LOGS: Stability.BETA},
    create=create,
    listen_addresses=listen_addresses,
)

__all__ = ["FACTORY", "SyslogConfig", "TCPConfig", "UDPConfig"]
