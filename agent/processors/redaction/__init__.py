"""`redaction`: delete attributes that are not allowed and mask personal data (traces, metrics, logs).

The Collector's redaction processor, with its options and order, plus named built-in
detectors. For every attribute map it covers — resource, span, span event, log record and
metric data point attributes — and for log bodies:

1. a key in `ignored_keys` or matching `ignored_key_patterns` passes untouched;
2. unless `allow_all_keys`, a key not in `allowed_keys` is deleted (fail-closed: an empty
   list deletes every attribute that is not ignored);
3. a key matching `blocked_key_patterns` has its whole value masked;
4. other string values (every value with `redact_all_types`, by its string form) that match
   one of `allowed_values` are left alone; otherwise each match of `blocked_values`, then
   each finding of the `detectors`, is replaced by `****` — or by its hex digest when
   `hash_function` is `md5`, `sha1` or `sha3` (SHA3-256);
5. with `url_sanitizer.enabled`, values of the listed attributes — and, with
   `sanitize_span_name` (default on), the names of server and client spans that hold a
   `/` — lose their query string and their id-like path segments (`/users/1234` →
   `/users/*`).

`summary: debug | info | silent` (default `silent`) writes on each changed map
`redaction.redacted.count`, `redaction.masked.count`, `redaction.allowed.count` and
`redaction.ignored.count` (`info`), plus the comma-separated sorted key lists
`redaction.redacted.keys`, `redaction.masked.keys`, `redaction.allowed.keys` (`debug`).

Values inside maps and lists (attribute values and log bodies) are walked recursively: every
string is scanned and a nested key matching `blocked_key_patterns` is masked whole. The
allowed/ignored key rules apply to the top level of each attribute map and of a map body,
where key names are meaningful to an operator; a map body's keys show up in the summary of
its log record as `body.<key>`, a masked string body as `body`.

    processors:
      redaction:
        allow_all_keys: true
        blocked_key_patterns: [".*token.*", ".*password.*"]
        blocked_values: ["4[0-9]{12}(?:[0-9]{3})?"]
        detectors: [email, credit_card, us_ssn, ipv4]
        summary: info

Detectors (a Flowglass addition, see `detectors.py`): `email`, `credit_card` (Luhn and
issuer prefix checked), `iban` (mod-97), `us_ssn` (area/group/serial rules), `phone`, `ipv4`,
`ipv6`, `jwt`, `bearer_token`, `aws_access_key`, `private_key_block`.

Guarantees: batches are changed in place (`mutates_data = True`); every regular expression
is compiled once, when the processor is created, and an invalid one is a config error with
its path. The text of a whole batch is scanned once per pattern; only values that the scan
flags are looked at one by one. Counters: `processor_redaction_deleted_keys`,
`processor_redaction_masked_values`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import msgspec

from agent.component import Consumer, ProcessorFactory, Settings, Stability
from agent.model import Signal
from agent.processors.redaction.detectors import DETECTORS

DetectorName = Literal[
    "email", "credit_card", "iban", "us_ssn", "phone", "ipv4", "ipv6", "jwt", "bearer_token",
    "aws_access_key", "private_key_block",
]
HashFunction = Literal["", "md5", "sha1", "sha3"]
Summary = Literal["debug", "info", "silent"]


class URLSanitizerConfig(msgspec.Struct, forbid_unknown_fields=True):
    #: Turns URL sanitization on.
    enabled: bool = False
    #: Attribute keys whose values are URLs to sanitize.
    attributes: list[str] = msgspec.field(default_factory=list)
    #: Also sanitize the names of server and client spans that contain "/".
    sanitize_span_name: bool = True


class RedactionConfig(msgspec.Struct, forbid_unknown_fields=True):
    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"db_sanitizer"})

    #: Keep every key (only values are checked). Disables `allowed_keys`.
    allow_all_keys: bool = False
    #: Keys kept; every other key that is not ignored is deleted (empty: all are deleted).
    allowed_keys: list[str] = msgspec.field(default_factory=list)
    #: Keys passed through untouched (neither deleted nor masked).
    ignored_keys: list[str] = msgspec.field(default_factory=list)
    #: Regular expressions; keys matching one are passed through untouched.
    ignored_key_patterns: list[str] = msgspec.field(default_factory=list)
    #: Regular expressions; the whole value of a key matching one is masked.
    blocked_key_patterns: list[str] = msgspec.field(default_factory=list)
    #: Regular expressions; each match in a value is masked.
    blocked_values: list[str] = msgspec.field(default_factory=list)
    #: Regular expressions; a value matching one is never masked (wins over blocked ones).
    allowed_values: list[str] = msgspec.field(default_factory=list)
    #: Check ints, doubles and bools too, by their string form.
    redact_all_types: bool = False
    #: Replace matches by their md5, sha1 or sha3 (SHA3-256) hex digest instead of "****".
    hash_function: HashFunction = ""
    #: Diagnostic attributes written on changed maps: debug (keys and counts), info (counts), silent.
    summary: Summary = "silent"
    url_sanitizer: URLSanitizerConfig = msgspec.field(default_factory=URLSanitizerConfig)
    #: Built-in detectors to run after blocked_values (a Flowglass option).
    detectors: list[DetectorName] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        for option in ("ignored_key_patterns", "blocked_key_patterns", "blocked_values", "allowed_values"):
            for i, pattern in enumerate(getattr(self, option)):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"{option}[{i}] {pattern!r} is not a valid regular expression: {exc}") from None
        for name in self.detectors:
            if name not in DETECTORS:  # pragma: no cover - the Literal type rejects it first
                raise ValueError(f"unknown detector {name!r}")
        if len(set(self.detectors)) != len(self.detectors):
            raise ValueError("detectors lists a detector more than once")
        if self.url_sanitizer.enabled and not self.url_sanitizer.attributes and not self.url_sanitizer.sanitize_span_name:
            raise ValueError(
                "url_sanitizer is enabled but has nothing to do: list attributes or keep sanitize_span_name on"
            )


def _create(settings: Settings, config: Any, signal: Signal, next_consumer: Consumer) -> Any:
    from agent.processors.redaction.processor import RedactionProcessor

    assert isinstance(config, RedactionConfig)
    return RedactionProcessor(settings, config, signal, next_consumer)


FACTORY = ProcessorFactory(
    type="redaction",
    config_type=RedactionConfig,
    description="Deletes attributes that are not allowed and masks blocked values and detected personal data.",
    signals={Signal.TRACES: Stability.BETA, Signal.METRICS: Stability.BETA, Signal.LOGS: Stability.BETA},
    create=_create,
)

__all__ = ["FACTORY", "DetectorName", "RedactionConfig", "URLSanitizerConfig"]
