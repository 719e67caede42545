"""The Kafka client options the `kafka` receiver and exporter share (the Collector's `configkafka`).

`KafkaClientConfig` is the base of both components' Config Structs: `brokers`,
`client_id`, `protocol_version`, `tls`, `auth` (`sasl` with PLAIN, SCRAM-SHA-256 and
SCRAM-SHA-512, and the older `plain_text`), `metadata` and `conn_idle_timeout`.
`client_options()` turns them into the keyword arguments every aiokafka client takes, so
the receiver's consumer, its dead-letter producer and the exporter's producer connect the
same way. This module does not import aiokafka: validating a config must not load it.

Differences from the Collector, each a sentence at validation time rather than a surprise:
`tls` with `insecure: true` (or no `tls` section) is plaintext, as in the Collector;
`protocol_version` is checked (`x.y.z`) but aiokafka negotiates API versions with the
broker, so it only documents what the cluster runs; Kerberos, AWS MSK IAM and OAUTHBEARER
are not supported; `tls.server_name_override` cannot be honoured by aiokafka.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from agent.config.tls import TLSClientConfig
from agent.config.types import Duration

#: Collector client options Flowglass does not implement, as dotted paths.
CLIENT_UPSTREAM_OPTIONS = frozenset({
    "resolve_canonical_bootstrap_servers_only",
    "use_leader_epoch",
    "auth.kerberos",
    "auth.tls",
    "metadata.full",
    "metadata.retry.max",
    "tls.reload_interval",
    "tls.include_system_ca_certs_pool",
    "tls.cipher_suites",
    "tls.curve_preferences",
})

_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(\.\d+)?$")
_BROKER_RE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):(\d{1,5})$")

SASLMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "AWS_MSK_IAM_OAUTHBEARER", "OAUTHBEARER"]


class SASLConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`auth.sasl`: SASL authentication with a user name and password."""

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"aws_msk", "oauthbearer_token_source"})

    mechanism: SASLMechanism = "PLAIN"
    username: str = ""
    password: str = ""
    #: Accepted for compatibility; the SASL handshake version is negotiated.
    version: Annotated[int, msgspec.Meta(ge=0, le=1)] = 0

    def __post_init__(self) -> None:
        if self.mechanism in ("AWS_MSK_IAM_OAUTHBEARER", "OAUTHBEARER"):
            raise ValueError(
                f"mechanism {self.mechanism} is not supported by Flowglass; use PLAIN, "
                "SCRAM-SHA-256 or SCRAM-SHA-512"
            )
        if not self.username:
            raise ValueError(f"username is required for SASL {self.mechanism}")
        if not self.password:
            raise ValueError(f"password is required for SASL {self.mechanism}")


class PlainTextConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`auth.plain_text` (deprecated in the Collector): the same as SASL PLAIN."""

    username: str = ""
    password: str = ""


class AuthConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    sasl: SASLConfig | None = None
    plain_text: PlainTextConfig | None = None

    def __post_init__(self) -> None:
        if self.sasl is not None and self.plain_text is not None:
            raise ValueError("set either auth.sasl or the older auth.plain_text, not both")
        if self.plain_text is not None:
            self.sasl = SASLConfig(
                mechanism="PLAIN", username=self.plain_text.username, password=self.plain_text.password
            )
            self.plain_text = None


class MetadataRetryConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    #: Wait between retries of metadata and coordinator requests.
    backoff: Duration = Duration(0.25)


class MetadataConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    #: How often cluster metadata is refreshed even when nothing changed.
    refresh_interval: Duration = Duration(600.0)
    retry: MetadataRetryConfig = msgspec.field(default_factory=MetadataRetryConfig)


class KafkaClientConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Connection options shared by the `kafka` receiver and exporter.

    A `tls` section turns TLS on (an empty `tls:` means the system's CAs), unless it says
    `insecure: true`. SASL runs over TLS when TLS is on, else over plaintext.
    """

    brokers: list[str] = msgspec.field(default_factory=lambda: ["localhost:9092"])
    client_id: str = "flowglass"
    protocol_version: str = ""
    tls: TLSClientConfig | msgspec.UnsetType | None = msgspec.UNSET
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    metadata: MetadataConfig = msgspec.field(default_factory=MetadataConfig)
    #: Idle connections are closed after this long (0 keeps them).
    conn_idle_timeout: Duration = Duration(540.0)
    #: The rack this client runs in (Kafka's `client.rack`), for fetching from a close replica.
    rack_id: str = ""

    def __post_init__(self) -> None:
        if not self.brokers:
            raise ValueError("brokers must list at least one host:port")
        for broker in self.brokers:
            m = _BROKER_RE.match(broker.strip())
            if m is None or int(m.group(2)) > 65535:
                raise ValueError(f"broker {broker!r} must be host:port")
        if self.protocol_version and not _VERSION_RE.match(self.protocol_version):
            raise ValueError(
                f"protocol_version {self.protocol_version!r} must be a Kafka version such as 2.1.0"
            )
        if not self.client_id.strip():
            raise ValueError("client_id must not be empty")
        if self.tls is None:
            self.tls = TLSClientConfig()
        if isinstance(self.tls, TLSClientConfig) and self.tls.server_name_override:
            raise ValueError(
                "tls.server_name_override is not supported by the Kafka client: it checks the "
                "certificate against each broker's advertised host name"
            )

    @property
    def tls_enabled(self) -> bool:
        return isinstance(self.tls, TLSClientConfig) and not self.tls.insecure

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for `AIOKafkaProducer`, `AIOKafkaConsumer` and the admin client.

        Raises `OSError` or `ssl.SSLError` when a TLS file does not load.
        """
        options: dict[str, Any] = {
            "bootstrap_servers": [b.strip() for b in self.brokers],
            "client_id": self.client_id,
            "metadata_max_age_ms": int(self.metadata.refresh_interval * 1000),
            "retry_backoff_ms": max(1, int(self.metadata.retry.backoff * 1000)),
            "connections_max_idle_ms": int(self.conn_idle_timeout * 1000) or None,
        }
        ssl_context: ssl.SSLContext | None = None
        if self.tls_enabled:
            assert isinstance(self.tls, TLSClientConfig)
            ssl_context = self.tls.ssl_context()
            options["ssl_context"] = ssl_context
        sasl = self.auth.sasl
        if sasl is not None:
            options["security_protocol"] = "SASL_SSL" if ssl_context else "SASL_PLAINTEXT"
            options["sasl_mechanism"] = sasl.mechanism
            options["sasl_plain_username"] = sasl.username
            options["sasl_plain_password"] = sasl.password
        else:
            options["security_protocol"] = "SSL" if ssl_context else "PLAINTEXT"
        return options

    def describe(self) -> dict[str, Any]:
        """What the client connects to, for log lines (never the password)."""
        return {
            "brokers": ",".join(self.brokers),
            "tls": self.tls_enabled,
            "sasl": self.auth.sasl.mechanism if self.auth.sasl is not None else "",
        }


class _RepeatFilter(logging.Filter):
    """Lets each distinct warning or error of the Kafka client through once per `interval` s.

    While a broker is away aiokafka logs every reconnect attempt, several lines a second; the
    components log the outage themselves in one sentence. A line let through after a quiet
    spell says how many like it were held back (`similar_not_logged`).
    """

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self._interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.similar_not_logged = held
        return True


_REPEAT_FILTER = _RepeatFilter()


def quiet_client_logs() -> None:
    """Install the repeat filter on every aiokafka logger (call after importing aiokafka)."""
    for name in list(logging.Logger.manager.loggerDict):
        if name == "aiokafka" or name.startswith("aiokafka."):
            logger = logging.getLogger(name)
            if _REPEAT_FILTER not in logger.filters:
                logger.addFilter(_REPEAT_FILTER)
