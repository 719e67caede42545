"""The OTTL subset: parsing, refusing what is outside it, evaluating, inferring contexts."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, NumberDataPoint
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agent.processors.filter.ottl import EvalError, compile_condition, infer_context
from agent.testing import key_values

RES = Resource()
RES.attributes.extend(key_values({"service.name": "model-server", "k8s.pod.name": "pod-7"}))
SCOPE = InstrumentationScope(name="lib", version="2.1")


def make_span(**attrs: Any) -> Span:
    s = Span(name="predict", kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=1_000, end_time_unix_nano=5_001_000)
    s.status.code = Status.STATUS_CODE_ERROR
    s.attributes.extend(key_values({"http.response.status_code": 503, "ratio": 0.25, "ok": False,
                                    "path": "/v1/models/resnet", "tags": ["a"], **attrs}))
    return s


SPAN = make_span()


def span_is(text: str, span: Span = SPAN) -> bool:
    return compile_condition(text, "span")(RES, SCOPE, None, span)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('name == "predict"', True),
        ('name != "predict"', False),
        ("kind == SPAN_KIND_SERVER", True),
        ("kind == SPAN_KIND_CLIENT", False),
        ("status.code == STATUS_CODE_ERROR", True),
        ("duration > 4000000", True),
        ("duration >= 5000000", True),
        ("duration < 5000000", False),
        ('attributes["http.response.status_code"] >= 500', True),
        ('attributes["http.response.status_code"] <= 499', False),
        ('attributes["ratio"] < 0.5', True),
        ('attributes["ratio"] == 0.25', True),
        ('attributes["http.response.status_code"] == 503.0', True),
        ('attributes["http.response.status_code"] == "503"', False),
        ('attributes["http.response.status_code"] != "503"', True),
        ('attributes["ok"] == false', True),
        ('attributes["ok"] < true', False),
        ('attributes["missing"] == nil', True),
        ('attributes["missing"] != nil', False),
        ('attributes["path"] != nil', True),
        ('attributes["missing"] > 1', False),
        ('attributes["path"] > "/a"', True),
        ('resource.attributes["service.name"] == "model-server"', True),
        ('scope.name == "lib" and scope.version == "2.1"', True),
        ('IsMatch(attributes["path"], "resnet$")', True),
        ('IsMatch(attributes["path"], "^resnet")', False),
        ('IsMatch(attributes["http.response.status_code"], "^5")', True),
        ('IsMatch(attributes["missing"], ".*")', False),
        ('IsMatch(resource.attributes["k8s.pod.name"], "pod-\\\\d+")', True),
        ('name == "x" or kind == SPAN_KIND_SERVER', True),
        ('name == "predict" and kind == SPAN_KIND_CLIENT', False),
        ('not name == "x"', True),
        ('not (name == "predict" and duration > 0)', False),
        ('(name == "x" or name == "predict") and not IsMatch(name, "z")', True),
        ("true", True),
        ("false or false", False),
        ('name == "a" or name == "b" and true', False),
        ('status.message == ""', True),
        ("start_time_unix_nano == 1000", True),
    ],
)
def test_span_conditions(text: str, expected: bool) -> None:
    assert span_is(text) is expected


def test_and_binds_tighter_than_or() -> None:
    # a or (b and c): true because a is true.
    assert span_is('name == "predict" or name == "x" and false') is True


def test_string_escapes() -> None:
    span = make_span(q='say "hi"\\')
    assert span_is('attributes["q"] == "say \\"hi\\"\\\\"', span) is True


def test_is_match_on_a_list_is_an_evaluation_error() -> None:
    with pytest.raises(EvalError):
        span_is('IsMatch(attributes["tags"], "a")')


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("Len(name) > 3", "unsupported function 'Len'"),
        ('set(attributes["a"], "b")', "unsupported function 'set'"),
        ("name", "is not a condition"),
        ('attributes["a"]["b"] == 1', "nested keys are not supported"),
        ("trace_id == nil", "unsupported path 'trace_id'"),
        ('attributes == "x"', "write attributes"),
        ('name["x"] == 1', "only attributes[...] takes a key"),
        ('name == "x" and', "expected a value"),
        ('name == "x" xor true', "unexpected 'xor'"),
        ("FOO_BAR == 1", "unknown enum 'FOO_BAR'"),
        ('IsMatch(name, name)', "must be a string literal"),
        ('IsMatch(name, "(")', "not a valid regex"),
        ('IsMatch(name)', "takes two arguments"),
        ('name == "x" ;', "unexpected character"),
        ("attributes[1] == 1", "only string keys"),
        ('(name == "x"', "expected ')'"),
        ('name == "\\q"', "unsupported escape"),
    ],
)
def test_outside_the_subset_is_refused_naming_the_part(text: str, part: str) -> None:
    with pytest.raises(ValueError) as info:
        compile_condition(text, "span")
    assert part in str(info.value)
    assert repr(text) in str(info.value)


def test_span_event_context_reaches_its_span() -> None:
    event = Span.Event(name="exception")
    event.attributes.extend(key_values({"exception.type": "OOM"}))
    cond = compile_condition('name == "exception" and span.name == "predict" and '
                             'attributes["exception.type"] == "OOM"', "spanevent")
    assert cond(RES, SCOPE, SPAN, event) is True


def test_log_context() -> None:
    record = LogRecord(severity_number=13, severity_text="WARN")  # type: ignore[arg-type]
    record.body.string_value = "GPU memory low"
    is_true = lambda text: compile_condition(text, "log")(RES, SCOPE, None, record)  # noqa: E731
    assert is_true("severity_number >= SEVERITY_NUMBER_WARN")
    assert not is_true("severity_number < SEVERITY_NUMBER_INFO")
    assert is_true('severity_text == "WARN"')
    assert is_true('IsMatch(body, "(?i)gpu")')
    assert is_true('body != nil')
    empty = LogRecord()
    assert compile_condition("body == nil", "log")(RES, SCOPE, None, empty)


def test_metric_and_datapoint_contexts() -> None:
    metric = Metric(name="gpu.utilization", unit="1")
    point = NumberDataPoint(as_double=0.5)
    point.attributes.extend(key_values({"gpu": "0"}))
    assert compile_condition('name == "gpu.utilization" and unit == "1"', "metric")(RES, SCOPE, None, metric)
    assert compile_condition('metric.name == "gpu.utilization" and attributes["gpu"] == "0"', "datapoint")(
        RES, SCOPE, metric, point
    )
    with pytest.raises(ValueError, match="unsupported path 'kind' in the metric context"):
        compile_condition("kind == 1", "metric")


@pytest.mark.parametrize(
    ("text", "context"),
    [
        ('resource.attributes["host.name"] == "x"', "resource"),
        ('scope.name == "lib"', "scope"),
        ('span.name == "a" and resource.attributes["a"] == nil', "span"),
        ('IsMatch(spanevent.name, "grpc") or span.name == "a"', "spanevent"),
        ('instrumentation_scope.name == "lib"', "scope"),
    ],
)
def test_infer_context_picks_the_lowest(text: str, context: str) -> None:
    assert infer_context(text, ("resource", "scope", "span", "spanevent")) == context


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ('name == "a"', "needs a context prefix"),
        ("true", "names no path"),
        ('log.body == "x"', "context 'log' cannot be used here"),
    ],
)
def test_infer_context_errors(text: str, part: str) -> None:
    with pytest.raises(ValueError, match=part):
        infer_context(text, ("resource", "scope", "span", "spanevent"))


def test_prefixed_conditions_need_prefixes_everywhere() -> None:
    cond = compile_condition('span.name == "predict" and resource.attributes["service.name"] != nil', "span",
                             prefixed=True)
    assert cond(RES, SCOPE, None, SPAN)
    with pytest.raises(ValueError, match="needs a context prefix"):
        compile_condition('span.name == "predict" and kind == 2', "span", prefixed=True)
