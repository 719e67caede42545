"""`agent.processors.match`: the Collector's include/exclude properties, compiled."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent.config.types import dec_hook
from agent.model import Signal
from agent.processors.match import Matcher, MatchProperties, Selector, parse_severity
from agent.testing import key_values


def props(**raw: Any) -> MatchProperties:
    return msgspec.convert(raw, MatchProperties, dec_hook=dec_hook)


def matcher(**raw: Any) -> Matcher:
    return Matcher.from_properties(props(**raw))


def resource(**attrs: Any) -> Resource:
    r = Resource()
    r.attributes.extend(key_values(attrs))
    return r


def scope(name: str = "lib", version: str = "1.0") -> InstrumentationScope:
    return InstrumentationScope(name=name, version=version)


def span(name: str = "predict", kind: int = Span.SPAN_KIND_SERVER, **attrs: Any) -> Span:
    s = Span(name=name, kind=kind)  # type: ignore[arg-type]
    s.attributes.extend(key_values(attrs))
    return s


def record(body: Any = "hello", severity: int = 9, text: str = "INFO", **attrs: Any) -> LogRecord:
    r = LogRecord(severity_number=severity, severity_text=text)  # type: ignore[arg-type]
    if isinstance(body, str):
        r.body.string_value = body
    else:
        r.body.int_value = body
    r.attributes.extend(key_values(attrs))
    return r


RES = resource(**{"service.name": "model-server", "host.name": "node-1"})


# -- config ------------------------------------------------------------------------------


def test_match_type_is_required() -> None:
    with pytest.raises(msgspec.ValidationError, match="match_type"):
        msgspec.convert({"services": ["a"]}, MatchProperties)


def test_a_section_needs_a_property() -> None:
    with pytest.raises(msgspec.ValidationError, match="at least one of services"):
        props(match_type="strict")


def test_bad_regexp_is_a_validation_error() -> None:
    with pytest.raises(msgspec.ValidationError, match="not a valid regular expression"):
        props(match_type="regexp", span_names=["("])


def test_regexp_attribute_value_must_be_a_string() -> None:
    with pytest.raises(msgspec.ValidationError, match="needs a string value"):
        props(match_type="regexp", attributes=[{"key": "a", "value": 1}])


def test_bad_severity_name() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown severity"):
        props(match_type="strict", log_severity_number={"min": "LOUD"})


@pytest.mark.parametrize(
    ("signal", "raw", "problem"),
    [
        (Signal.TRACES, {"log_bodies": ["x"]}, "log_bodies cannot be used to match traces"),
        (Signal.LOGS, {"span_names": ["x"]}, "span_names cannot be used to match logs"),
        (Signal.METRICS, {"attributes": [{"key": "a"}]}, "attributes cannot be used to match metrics"),
        (Signal.METRICS, {"metric_names": ["m"]}, None),
    ],
)
def test_signal_problem(signal: Signal, raw: dict[str, Any], problem: str | None) -> None:
    found = props(match_type="strict", **raw).signal_problem(signal)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("value", "number"), [(0, 0), (17, 17), ("info", 9), ("WARN", 13), ("warn3", 15), ("Fatal4", 24), ("warning", 13)]
)
def test_parse_severity(value: int | str, number: int) -> None:
    assert parse_severity(value) == number


def test_parse_severity_out_of_range() -> None:
    with pytest.raises(ValueError, match="outside"):
        parse_severity(25)


# -- spans -------------------------------------------------------------------------------


def test_services_strict_and_regexp() -> None:
    assert matcher(match_type="strict", services=["model-server"]).span(RES, scope(), span())
    assert not matcher(match_type="strict", services=["model"]).span(RES, scope(), span())
    # regexp searches (unanchored), as Go's MatchString does.
    assert matcher(match_type="regexp", services=["model"]).span(RES, scope(), span())
    assert not matcher(match_type="regexp", services=["^model$"]).span(RES, scope(), span())


def test_missing_service_name_matches_only_the_placeholder() -> None:
    m = matcher(match_type="strict", services=["<nil-service-name>"])
    assert m.span(resource(), scope(), span())
    assert not m.span(RES, scope(), span())


def test_span_names_and_kinds() -> None:
    m = matcher(match_type="strict", span_names=["predict", "load"], span_kinds=["SPAN_KIND_SERVER"])
    assert m.span(RES, scope(), span("load"))
    assert not m.span(RES, scope(), span("other"))
    assert not m.span(RES, scope(), span("predict", kind=Span.SPAN_KIND_CLIENT))


def test_attributes_strict_needs_same_type_and_value() -> None:
    m = matcher(match_type="strict", attributes=[{"key": "code", "value": 200}, {"key": "present"}])
    assert m.span(RES, scope(), span(code=200, present="x"))
    assert not m.span(RES, scope(), span(code="200", present="x"))
    assert not m.span(RES, scope(), span(code=200.0, present="x"))
    assert not m.span(RES, scope(), span(code=200))  # every listed attribute must match


def test_attributes_strict_composite_values() -> None:
    m = matcher(match_type="strict", attributes=[{"key": "tags", "value": ["a", "b"]}])
    assert m.span(RES, scope(), span(tags=["a", "b"]))
    assert not m.span(RES, scope(), span(tags=["a"]))


def test_attributes_regexp_matches_text_of_scalars() -> None:
    m = matcher(match_type="regexp", attributes=[{"key": "code", "value": "^5\\d\\d$"}])
    assert m.span(RES, scope(), span(code=503))
    assert m.span(RES, scope(), span(code="500"))
    assert not m.span(RES, scope(), span(code=200))
    assert not m.span(RES, scope(), span(code=[500]))
    flag = matcher(match_type="regexp", attributes=[{"key": "f", "value": "^true$"}])
    assert flag.span(RES, scope(), span(f=True))


def test_resources_and_libraries() -> None:
    m = matcher(
        match_type="strict",
        resources=[{"key": "host.name", "value": "node-1"}],
        libraries=[{"name": "lib", "version": "1.0"}],
    )
    assert m.span(RES, scope(), span())
    assert not m.span(resource(**{"host.name": "node-2"}), scope(), span())
    assert not m.span(RES, scope(version="2.0"), span())
    any_version = matcher(match_type="strict", libraries=[{"name": "lib"}])
    assert any_version.span(RES, scope(version="9"), span())


# -- logs and metrics --------------------------------------------------------------------


def test_log_bodies_only_match_strings() -> None:
    m = matcher(match_type="regexp", log_bodies=["^hel"])
    assert m.log(RES, scope(), record("hello"))
    assert not m.log(RES, scope(), record("bye"))
    assert not m.log(RES, scope(), record(12))


def test_log_severity_texts_and_numbers() -> None:
    texts = matcher(match_type="strict", log_severity_texts=["ERROR"])
    assert texts.log(RES, scope(), record(text="ERROR"))
    assert not texts.log(RES, scope(), record(text="INFO"))
    warn = matcher(match_type="strict", log_severity_number={"min": "WARN"})
    assert warn.log(RES, scope(), record(severity=17))
    assert not warn.log(RES, scope(), record(severity=9))
    assert not warn.log(RES, scope(), record(severity=0))
    undefined = matcher(match_type="strict", log_severity_number={"min": "WARN", "match_undefined": True})
    assert undefined.log(RES, scope(), record(severity=0))


def test_log_attributes() -> None:
    m = matcher(match_type="strict", attributes=[{"key": "request.id", "value": "r1"}])
    assert m.log(RES, scope(), record(**{"request.id": "r1"}))
    assert not m.log(RES, scope(), record(**{"request.id": "r2"}))


def test_metric_names_and_resources() -> None:
    m = matcher(match_type="regexp", metric_names=["^latency_"], resources=[{"key": "host.name"}])
    assert m.metric(RES, scope(), Metric(name="latency_ms"))
    assert not m.metric(RES, scope(), Metric(name="requests"))
    assert not m.metric(resource(), scope(), Metric(name="latency_ms"))


# -- include and exclude -----------------------------------------------------------------


def test_selector_checks_include_then_exclude() -> None:
    sel = Selector.build(
        props(match_type="strict", services=["model-server"]),
        props(match_type="strict", span_names=["healthz"]),
    )
    assert sel is not None
    assert sel.span(RES, scope(), span("predict"))
    assert not sel.span(RES, scope(), span("healthz"))
    assert not sel.span(resource(**{"service.name": "other"}), scope(), span("predict"))


def test_selector_only_exclude_and_none() -> None:
    assert Selector.build(None, None) is None
    sel = Selector.build(None, props(match_type="strict", log_severity_texts=["DEBUG"]))
    assert sel is not None
    assert sel.log(RES, scope(), record(text="INFO"))
    assert not sel.log(RES, scope(), record(text="DEBUG"))
    msel = Selector.build(props(match_type="strict", metric_names=["a"]), None)
    assert msel is not None
    assert msel.metric(RES, scope(), Metric(name="a"))
    assert not msel.metric(RES, scope(), Metric(name="b"))
