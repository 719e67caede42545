"""The Collector's `include` / `exclude` matching, for `attributes` and `filter`.

A `MatchProperties` section names properties of an item; an item matches when it satisfies
every property that is set (an empty list means "any"):

- `services` (the resource's `service.name`), `span_names`, `span_kinds` (`SPAN_KIND_SERVER`,
  ...), `log_bodies` (string bodies only), `log_severity_texts`, `metric_names`: the value
  must match at least one entry;
- `log_severity_number`: `min` (a number or a name such as `WARN`) and `match_undefined`;
- `attributes` and `resources`: every listed key must be present and, when a `value` is
  given, equal to it (`strict`: same type and value) or match it (`regexp`: the value as
  text, for strings, booleans, integers and doubles);
- `libraries`: every listed `name` (and `version`, when given) must match the scope.

`match_type: strict` compares whole strings; `match_type: regexp` searches with the pattern
(unanchored, as Go's `MatchString`: write `^...$` for a whole-string match). Regexes are
compiled once, when the matcher is built.

With both `include` and `exclude`, an item is selected when it matches `include` and does
not match `exclude`.

Which properties make sense depends on the signal (as in the Collector): spans take
`services`, `span_names`, `span_kinds`, `attributes`, `resources`, `libraries`; logs take
`log_bodies`, `log_severity_texts`, `log_severity_number`, `attributes`, `resources`,
`libraries`; metrics take `metric_names` and `resources`. `signal_problem()` says what is
wrong for a signal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Literal

import msgspec
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent.model import Signal
from agent.model.attrs import format_double, get

__all__ = [
    "AttributeMatch",
    "LibraryMatch",
    "MatchProperties",
    "Matcher",
    "Selector",
    "SeverityNumberMatch",
    "parse_severity",
]

MatchType = Literal["strict", "regexp"]

_SEVERITY_BASES = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}
_SEVERITY_ALIASES = {"WARNING": "WARN"}


def parse_severity(value: int | str) -> int:
    """A severity number from an int (0–24) or a name (`INFO`, `warn3`, `ERROR`); ValueError if bad."""
    if isinstance(value, bool):
        raise ValueError(f"severity {value!r} is not a number or a severity name")
    if isinstance(value, int):
        if not 0 <= value <= 24:
            raise ValueError(f"severity number {value} is outside 0..24")
        return value
    text = value.strip().upper()
    m = re.fullmatch(r"([A-Z]+)([1-4]?)", text)
    if m:
        name = _SEVERITY_ALIASES.get(m.group(1), m.group(1))
        if name in _SEVERITY_BASES:
            return _SEVERITY_BASES[name] + (int(m.group(2)) - 1 if m.group(2) else 0)
    raise ValueError(
        f"unknown severity {value!r}: use a number (1-24) or TRACE, DEBUG, INFO, WARN, ERROR or "
        "FATAL, optionally followed by 2, 3 or 4"
    )


class AttributeMatch(msgspec.Struct, forbid_unknown_fields=True):
    #: The attribute to look for.
    key: str
    #: The value it must have (strict) or match (regexp); absent: the key must be present.
    value: Any = None


class LibraryMatch(msgspec.Struct, forbid_unknown_fields=True):
    #: The instrumentation scope name.
    name: str
    #: Its version; absent: any version.
    version: str | None = None


class SeverityNumberMatch(msgspec.Struct, forbid_unknown_fields=True):
    #: Lowest severity that matches: a number or a name such as `INFO` or `WARN2`.
    min: int | str = 0
    #: Whether records without a severity number match.
    match_undefined: bool = False

    def __post_init__(self) -> None:
        parse_severity(self.min)


class MatchProperties(msgspec.Struct, forbid_unknown_fields=True):
    """One `include` or `exclude` section."""

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({"regexp"})

    match_type: MatchType
    services: list[str] = msgspec.field(default_factory=list)
    span_names: list[str] = msgspec.field(default_factory=list)
    span_kinds: list[str] = msgspec.field(default_factory=list)
    log_bodies: list[str] = msgspec.field(default_factory=list)
    log_severity_texts: list[str] = msgspec.field(default_factory=list)
    log_severity_number: SeverityNumberMatch | None = None
    metric_names: list[str] = msgspec.field(default_factory=list)
    attributes: list[AttributeMatch] = msgspec.field(default_factory=list)
    resources: list[AttributeMatch] = msgspec.field(default_factory=list)
    libraries: list[LibraryMatch] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        set_fields = self._set_fields()
        if not set_fields:
            raise ValueError(
                "a match section needs at least one of services, span_names, span_kinds, "
                "log_bodies, log_severity_texts, log_severity_number, metric_names, attributes, "
                "resources or libraries"
            )
        # Compiling here reports a bad pattern or value at validation time.
        Matcher.from_properties(self)

    def _set_fields(self) -> list[str]:
        names = (
            "services", "span_names", "span_kinds", "log_bodies", "log_severity_texts",
            "log_severity_number", "metric_names", "attributes", "resources", "libraries",
        )
        return [n for n in names if getattr(self, n)]

    def signal_problem(self, signal: Signal) -> str | None:
        """A sentence when a property set here does not apply to `signal`, else None."""
        allowed = _ALLOWED[signal]
        wrong = [n for n in self._set_fields() if n not in allowed]
        if not wrong:
            return None
        return (
            f"{', '.join(wrong)} cannot be used to match {signal.value}; "
            f"use {', '.join(sorted(allowed))}"
        )


_ALLOWED = {
    Signal.TRACES: frozenset({"services", "span_names", "span_kinds", "attributes", "resources", "libraries"}),
    Signal.LOGS: frozenset({
        "log_bodies", "log_severity_texts", "log_severity_number", "attributes", "resources", "libraries",
    }),
    Signal.METRICS: frozenset({"metric_names", "resources"}),
}


# -- compiled matchers -------------------------------------------------------------------


def string_set(match_type: MatchType, items: Sequence[str]) -> Callable[[str], bool] | None:
    """A predicate true when a string matches one of `items`; None when `items` is empty."""
    if not items:
        return None
    if match_type == "strict":
        return frozenset(items).__contains__
    patterns = []
    for item in items:
        try:
            patterns.append(re.compile(item))
        except re.error as exc:
            raise ValueError(f"{item!r} is not a valid regular expression: {exc}") from None
    if len(patterns) == 1:
        search = patterns[0].search
        return lambda s: search(s) is not None
    return lambda s: any(p.search(s) is not None for p in patterns)


def _text_for_regexp(value: AnyValue) -> str | None:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return format_double(value.double_value)
    return None


def _strict_kind(expected: Any) -> str:
    if isinstance(expected, bool):
        return "bool_value"
    if isinstance(expected, int):
        return "int_value"
    if isinstance(expected, float):
        return "double_value"
    if isinstance(expected, str):
        return "string_value"
    if isinstance(expected, list):
        return "array_value"
    if isinstance(expected, dict):
        return "kvlist_value"
    raise ValueError(f"cannot match an attribute against a {type(expected).__name__} value")


def attribute_predicate(match_type: MatchType, key: str, expected: Any) -> Callable[[Any], bool]:
    """A predicate over a `repeated KeyValue`: `key` present and its value matching `expected`."""
    if not key:
        raise ValueError("an attribute to match needs a non-empty key")
    if expected is None:
        return lambda kvs: get(kvs, key) is not None
    if match_type == "regexp":
        if not isinstance(expected, str):
            raise ValueError(
                f"match_type regexp needs a string value for attribute {key!r}, got {type(expected).__name__}"
            )
        matches = string_set("regexp", [expected])
        assert matches is not None

        def regexp_match(kvs: Any) -> bool:
            value = get(kvs, key)
            if value is None:
                return False
            text = _text_for_regexp(value)
            return text is not None and matches(text)

        return regexp_match

    kind = _strict_kind(expected)
    if kind in ("array_value", "kvlist_value"):
        from agent.model.attrs import to_python

        def composite_match(kvs: Any) -> bool:
            value = get(kvs, key)
            return value is not None and value.WhichOneof("value") == kind and to_python(value) == expected

        return composite_match

    def strict_match(kvs: Any) -> bool:
        value = get(kvs, key)
        return value is not None and value.WhichOneof("value") == kind and getattr(value, kind) == expected

    return strict_match


class Matcher:
    """Compiled match properties; `span`, `log` and `metric` test one item in its context."""

    def __init__(
        self,
        match_type: MatchType,
        *,
        services: Sequence[str] = (),
        span_names: Sequence[str] = (),
        span_kinds: Sequence[str] = (),
        log_bodies: Sequence[str] = (),
        log_severity_texts: Sequence[str] = (),
        log_severity_number: SeverityNumberMatch | None = None,
        metric_names: Sequence[str] = (),
        attributes: Iterable[tuple[str, Any]] = (),
        resources: Iterable[tuple[str, Any]] = (),
        libraries: Iterable[tuple[str, str | None]] = (),
    ) -> None:
        self._services = string_set(match_type, services)
        self._span_names = string_set(match_type, span_names)
        self._span_kinds = string_set(match_type, span_kinds)
        self._bodies = string_set(match_type, log_bodies)
        self._severity_texts = string_set(match_type, log_severity_texts)
        self._severity: tuple[int, bool] | None = (
            (parse_severity(log_severity_number.min), log_severity_number.match_undefined)
            if log_severity_number is not None
            else None
        )
        self._metric_names = string_set(match_type, metric_names)
        self._attributes = [attribute_predicate(match_type, k, v) for k, v in attributes]
        self._resources = [attribute_predicate(match_type, k, v) for k, v in resources]
        self._libraries: list[tuple[Callable[[str], bool], Callable[[str], bool] | None]] = []
        for name, version in libraries:
            name_match = string_set(match_type, [name])
            assert name_match is not None
            self._libraries.append((name_match, string_set(match_type, [version]) if version is not None else None))

    @classmethod
    def from_properties(cls, p: MatchProperties) -> Matcher:
        return cls(
            p.match_type,
            services=p.services,
            span_names=p.span_names,
            span_kinds=p.span_kinds,
            log_bodies=p.log_bodies,
            log_severity_texts=p.log_severity_texts,
            log_severity_number=p.log_severity_number,
            metric_names=p.metric_names,
            attributes=[(a.key, a.value) for a in p.attributes],
            resources=[(a.key, a.value) for a in p.resources],
            libraries=[(lib.name, lib.version) for lib in p.libraries],
        )

    # -- shared parts --------------------------------------------------------------------

    def _context(self, resource: Resource, scope: InstrumentationScope) -> bool:
        for name_match, version_match in self._libraries:
            if not name_match(scope.name):
                return False
            if version_match is not None and not version_match(scope.version):
                return False
        if self._resources:
            attrs = resource.attributes
            for pred in self._resources:
                if not pred(attrs):
                    return False
        return True

    def _item_attributes(self, attrs: Any) -> bool:
        for pred in self._attributes:
            if not pred(attrs):
                return False
        return True

    # -- per signal ----------------------------------------------------------------------

    def span(self, resource: Resource, scope: InstrumentationScope, span: Span) -> bool:
        if self._services is not None:
            service = get(resource.attributes, "service.name")
            name = _text_for_regexp(service) if service is not None else None
            if not self._services(name if name is not None else "<nil-service-name>"):
                return False
        if self._span_names is not None and not self._span_names(span.name):
            return False
        if self._span_kinds is not None and not self._span_kinds(_span_kind_name(span.kind)):
            return False
        return self._context(resource, scope) and self._item_attributes(span.attributes)

    def log(self, resource: Resource, scope: InstrumentationScope, record: LogRecord) -> bool:
        if self._bodies is not None:
            if record.body.WhichOneof("value") != "string_value" or not self._bodies(record.body.string_value):
                return False
        if self._severity_texts is not None and not self._severity_texts(record.severity_text):
            return False
        if self._severity is not None:
            lowest, undefined = self._severity
            number = int(record.severity_number)
            if number == 0:
                if not undefined:
                    return False
            elif number < lowest:
                return False
        return self._context(resource, scope) and self._item_attributes(record.attributes)

    def metric(self, resource: Resource, scope: InstrumentationScope, metric: Metric) -> bool:
        if self._metric_names is not None and not self._metric_names(metric.name):
            return False
        return self._context(resource, scope)


def _span_kind_name(kind: int) -> str:
    try:
        return str(Span.SpanKind.Name(kind))
    except ValueError:
        return str(kind)


class Selector:
    """`include` and `exclude` together: an item is selected when included and not excluded."""

    def __init__(self, include: Matcher | None, exclude: Matcher | None) -> None:
        self.include = include
        self.exclude = exclude

    @classmethod
    def build(
        cls, include: MatchProperties | None, exclude: MatchProperties | None
    ) -> Selector | None:
        """The selector for two optional sections; None when both are absent (select all)."""
        if include is None and exclude is None:
            return None
        return cls(
            Matcher.from_properties(include) if include is not None else None,
            Matcher.from_properties(exclude) if exclude is not None else None,
        )

    def span(self, resource: Resource, scope: InstrumentationScope, span: Span) -> bool:
        if self.include is not None and not self.include.span(resource, scope, span):
            return False
        return self.exclude is None or not self.exclude.span(resource, scope, span)

    def log(self, resource: Resource, scope: InstrumentationScope, record: LogRecord) -> bool:
        if self.include is not None and not self.include.log(resource, scope, record):
            return False
        return self.exclude is None or not self.exclude.log(resource, scope, record)

    def metric(self, resource: Resource, scope: InstrumentationScope, metric: Metric) -> bool:
        if self.include is not None and not self.include.metric(resource, scope, metric):
            return False
        return self.exclude is None or not self.exclude.metric(resource, scope, metric)
