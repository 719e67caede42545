"""The `filter` processor: config, drop semantics per signal, legacy match config, error_mode."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest

from agent.component import Kind, Settings
from agent.components import default_registry
from agent.config import load_text
from agent.config.types import dec_hook
from agent.errors import ConfigError, PermanentError
from agent.model import Batch, Signal
from agent.processors.filter import FACTORY, FilterConfig
from agent.processors.filter.processor import FilterProcessor
from agent.testing import Sink, attrs_dict, key_values, make_logs, make_metrics, make_traces, spans_of

ID = "filter/t"


def convert(raw: dict[str, Any]) -> FilterConfig:
    return msgspec.convert(raw, FilterConfig, dec_hook=dec_hook)


def make(signal: Signal, **raw: Any) -> tuple[FilterProcessor, Sink, Settings]:
    sink = Sink()
    settings = Settings.for_test(ID, Kind.PROCESSOR, signal.value)
    assert FACTORY.create is not None
    proc = FACTORY.create(settings, convert(raw), signal, sink)
    assert isinstance(proc, FilterProcessor)
    return proc, sink, settings


def dropped(settings: Settings, signal: Signal) -> float:
    value = settings.metrics.registry.get_sample_value(
        "flowglass_processor_dropped_items_total",
        {"component": ID, "pipeline": signal.value, "signal": signal.value, "reason": "filtered"},
    )
    return value or 0.0


def errors(settings: Settings, signal: Signal) -> float:
    value = settings.metrics.registry.get_sample_value(
        "flowglass_processor_condition_errors_total",
        {"component": ID, "pipeline": signal.value, "signal": signal.value},
    )
    return value or 0.0


def traces(**kw: Any) -> Batch:
    """Two resources (services a and b), 4 spans each; every 2nd span has status ERROR."""
    req_a = make_traces(4, service="a", error_every=2, seed=1, **kw)
    req_b = make_traces(4, service="b", error_every=2, seed=2, **kw)
    return Batch.merge([req_a, req_b])


# -- config ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"traces": {"span": ["Len(name) > 1"]}}, "unsupported function 'Len'"),
        ({"traces": {"spanevent": ["trace_id == nil"]}}, "unsupported path"),
        ({"metrics": {"datapoint": ["kind == 1"]}}, "unsupported path"),
        ({"logs": {"log_record": ["severity_number <"]}}, "expected a value"),
        ({"trace_conditions": ['name == "a"']}, "needs a context prefix"),
        ({"metric_conditions": ['span.name == "a"']}, "context 'span' cannot be used here"),
        ({"log_conditions": ["true"]}, "names no path"),
        ({"trace_conditions": ['span.name == "a"'], "traces": {"span": ['name == "b"']}},
         "cannot be combined"),
        ({"spans": {"include": {"match_type": "strict", "span_names": ["a"]}},
          "traces": {"span": ['name == "b"']}}, "either spans"),
        ({"metrics": {"include": {"match_type": "strict", "metric_names": ["a"]}, "metric": ['name == "b"']}},
         "either include/exclude"),
        ({"metrics": {"include": {"match_type": "expr", "metric_names": ["a"]}}}, "expr is not supported"),
        ({"metrics": {"exclude": {"match_type": "strict"}}}, "needs metric_names"),
        ({"logs": {"include": {"match_type": "strict"}}}, "needs at least one of"),
        ({"logs": {"include": {"match_type": "strict", "bodies": ["x"]}, "log_record": ["true"]}},
         "either include/exclude"),
        ({"log_conditions": ['log.body == "x"'], "logs": {"log_record": ['body == "y"']}}, "cannot be combined"),
        ({"spans": {"include": {"match_type": "strict", "metric_names": ["m"]}}}, "cannot be used to match traces"),
        ({"error_mode": "loud"}, "error_mode"),
    ],
)
def test_config_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        convert(raw)


def test_upstream_options_are_named_unsupported() -> None:
    text = """
receivers: {otlp: {protocols: {grpc: {endpoint: 127.0.0.1:0}}}}
processors:
  filter:
    profile_conditions: ['profile.x == 1']
exporters: {debug: {}}
service: {pipelines: {traces: {receivers: [otlp], processors: [filter], exporters: [debug]}}}
"""
    with pytest.raises(ConfigError) as info:
        load_text(text, registry=default_registry(), environ={})
    assert "not supported by Flowglass" in str(info.value)


def test_default_error_mode_is_propagate() -> None:
    assert convert({}).error_mode == "propagate"


# -- traces ------------------------------------------------------------------------------


async def test_span_conditions_drop_spans_and_count_them() -> None:
    proc, sink, settings = make(Signal.TRACES, traces={"span": ["status.code == STATUS_CODE_ERROR"]})
    await proc.consume(traces())
    out = sink.batches[0]
    assert out.items == 4
    assert all(s.status.code != 2 for s in spans_of([out]))
    assert dropped(settings, Signal.TRACES) == 4


async def test_empty_scopes_and_resources_are_removed() -> None:
    proc, sink, _ = make(Signal.TRACES, traces={"span": ['resource.attributes["service.name"] == "a"']})
    await proc.consume(traces())
    out = sink.batches[0]
    assert len(out.message.resource_spans) == 1  # type: ignore[union-attr]
    assert attrs_dict(out.message.resource_spans[0].resource.attributes)["service.name"] == "b"  # type: ignore[union-attr]
    assert out.items == 4


async def test_everything_dropped_is_accepted_and_not_passed_on() -> None:
    proc, sink, settings = make(Signal.TRACES, traces={"span": ["true"]})
    await proc.consume(traces())
    assert sink.calls == 0
    assert dropped(settings, Signal.TRACES) == 8


async def test_span_events_are_dropped_but_their_span_stays() -> None:
    proc, sink, _ = make(Signal.TRACES, traces={"spanevent": ['name == "tokens" and span.name == "predict"']})
    await proc.consume(traces())
    spans = spans_of(sink.batches)
    assert len(spans) == 8
    assert all(len(s.events) == 0 for s in spans)


async def test_trace_conditions_drop_resources_scopes_spans_and_events() -> None:
    batch = traces()
    # A second scope in resource b with a different name, one span.
    rs_b = batch.mutable().resource_spans[1]  # type: ignore[union-attr]
    extra = rs_b.scope_spans.add()
    extra.scope.name = "other.lib"
    extra.spans.add(name="x")
    proc, sink, settings = make(
        Signal.TRACES,
        trace_conditions=[
            'resource.attributes["service.name"] == "a"',
            'scope.name == "other.lib"',
            'span.kind == SPAN_KIND_SERVER and span.status.code == STATUS_CODE_ERROR',
            'IsMatch(spanevent.name, "^tok")',
        ],
    )
    await proc.consume(batch)
    out = sink.batches[0]
    assert len(out.message.resource_spans) == 1  # type: ignore[union-attr]
    assert len(out.message.resource_spans[0].scope_spans) == 1  # type: ignore[union-attr]
    spans = spans_of([out])
    assert len(spans) == 2 and all(len(s.events) == 0 for s in spans)
    assert dropped(settings, Signal.TRACES) == 4 + 1 + 2


async def test_legacy_spans_include_exclude_keeps_the_selected() -> None:
    proc, sink, settings = make(
        Signal.TRACES,
        spans={
            "include": {"match_type": "strict", "services": ["a"]},
            "exclude": {"match_type": "regexp", "attributes": [{"key": "url.path", "value": "healthz"}]},
        },
    )
    batch = Batch.merge([make_traces(3, service="a"), make_traces(2, service="a", span_attrs={"url.path": "/healthz"}),
                         make_traces(4, service="b")])
    await proc.consume(batch)
    assert sink.batches[0].items == 3
    assert dropped(settings, Signal.TRACES) == 6


async def test_a_signal_without_rules_passes_batches_untouched() -> None:
    proc, sink, _ = make(Signal.METRICS, traces={"span": ["true"]})
    batch = Batch.parse(Signal.METRICS, make_metrics(3).serialize())
    data = batch.serialize()
    await proc.consume(batch)
    assert sink.batches[0].serialize() is data


# -- metrics -----------------------------------------------------------------------------


async def test_datapoints_dropped_and_emptied_metrics_removed() -> None:
    proc, sink, settings = make(Signal.METRICS, metrics={"datapoint": ['attributes["i"] >= 3']})
    await proc.consume(make_metrics(6))
    out = sink.batches[0]
    names = [m.name for m in out.message.resource_metrics[0].scope_metrics[0].metrics]  # type: ignore[union-attr]
    assert names == ["requests_sum_0", "requests_gauge_1", "requests_histogram_2"]
    assert out.items == 3
    assert dropped(settings, Signal.METRICS) == 3


async def test_metric_conditions_and_legacy_metric_names() -> None:
    proc, sink, _ = make(Signal.METRICS, metric_conditions=['IsMatch(metric.name, "gauge")',
                                                           'datapoint.attributes["i"] == 0'])
    await proc.consume(make_metrics(6))
    names = [m.name for m in sink.batches[0].message.resource_metrics[0].scope_metrics[0].metrics]  # type: ignore[union-attr]
    assert names == ["requests_histogram_2", "requests_sum_3", "requests_histogram_5"]

    proc, sink, _ = make(Signal.METRICS, metrics={"include": {"match_type": "regexp", "metric_names": ["^requests_sum"]}})
    await proc.consume(make_metrics(6))
    names = [m.name for m in sink.batches[0].message.resource_metrics[0].scope_metrics[0].metrics]  # type: ignore[union-attr]
    assert names == ["requests_sum_0", "requests_sum_3"]


async def test_metrics_resource_condition_counts_points() -> None:
    proc, sink, settings = make(Signal.METRICS, metric_conditions=['resource.attributes["service.name"] == "x"'])
    await proc.consume(Batch.merge([make_metrics(4, service="x"), make_metrics(2, service="y")]))
    assert sink.batches[0].items == 2
    assert dropped(settings, Signal.METRICS) == 4


# -- logs --------------------------------------------------------------------------------


async def test_log_record_conditions() -> None:
    batch = make_logs(4)
    records = batch.mutable().resource_logs[0].scope_logs[0].log_records  # type: ignore[union-attr]
    records[1].severity_number = 17  # type: ignore[assignment]
    records[2].severity_number = 5  # type: ignore[assignment]
    proc, sink, settings = make(Signal.LOGS, logs={"log_record": ["severity_number < SEVERITY_NUMBER_INFO",
                                                                  'IsMatch(body, "done 3$")']})
    await proc.consume(batch)
    out = sink.batches[0].message.resource_logs[0].scope_logs[0].log_records  # type: ignore[union-attr]
    assert [r.body.string_value for r in out] == ["inference done 0", "inference done 1"]
    assert dropped(settings, Signal.LOGS) == 2


async def test_log_conditions_and_legacy_logs_match() -> None:
    proc, sink, _ = make(Signal.LOGS, log_conditions=['log.attributes["request.id"] == "req-0-1"'])
    await proc.consume(make_logs(3))
    assert sink.batches[0].items == 2

    batch = make_logs(3)
    records = batch.mutable().resource_logs[0].scope_logs[0].log_records  # type: ignore[union-attr]
    records[0].severity_number = 17  # type: ignore[assignment]
    records[0].attributes.extend(key_values({"gpu": "0"}))
    proc, sink, _ = make(Signal.LOGS, logs={"include": {"match_type": "strict", "severity_number": {"min": "ERROR"},
                                                       "record_attributes": [{"key": "gpu"}]}})
    await proc.consume(batch)
    assert sink.batches[0].items == 1
    proc, sink, _ = make(Signal.LOGS, logs={"exclude": {"match_type": "regexp", "bodies": ["done [01]$"]}})
    await proc.consume(make_logs(3))
    assert sink.batches[0].items == 1


# -- error_mode --------------------------------------------------------------------------

BAD = {"traces": {"span": ['IsMatch(attributes["tags"], "x")']}}


def tagged() -> Batch:
    return make_traces(3, span_attrs={"tags": ["x"]})


async def test_propagate_refuses_the_batch_permanently() -> None:
    proc, sink, settings = make(Signal.TRACES, **BAD)
    with pytest.raises(PermanentError, match="could not be evaluated"):
        await proc.consume(tagged())
    assert sink.calls == 0
    assert errors(settings, Signal.TRACES) == 1


async def test_ignore_takes_the_condition_as_false_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    proc, sink, settings = make(Signal.TRACES, error_mode="ignore", **BAD)
    with caplog.at_level(logging.WARNING):
        await proc.consume(tagged())
        await proc.consume(tagged())
    assert sink.batches[0].items == 3
    assert errors(settings, Signal.TRACES) == 6
    assert len([r for r in caplog.records if "could not be evaluated" in r.getMessage()]) == 1


async def test_silent_does_not_log(caplog: pytest.LogCaptureFixture) -> None:
    proc, sink, settings = make(Signal.TRACES, error_mode="silent", **BAD)
    with caplog.at_level(logging.DEBUG):
        await proc.consume(tagged())
    assert sink.batches[0].items == 3
    assert errors(settings, Signal.TRACES) == 3
    assert not [r for r in caplog.records if "could not be evaluated" in r.getMessage()]


async def test_a_batch_kept_whole_keeps_its_bytes() -> None:
    proc, sink, settings = make(Signal.TRACES, traces={"span": ['name == "nothing-has-this-name"']})
    batch = Batch.parse(Signal.TRACES, make_traces(3).serialize())
    data = batch.serialize()
    await proc.consume(batch)
    assert sink.batches[0].serialize() is data
    assert dropped(settings, Signal.TRACES) == 0


async def test_dropping_only_events_drops_the_cached_bytes() -> None:
    proc, sink, _ = make(Signal.TRACES, traces={"spanevent": ["true"]})
    batch = Batch.parse(Signal.TRACES, make_traces(2).serialize())
    data = batch.serialize()
    await proc.consume(batch)
    out = sink.batches[0].serialize()
    assert out != data
    assert all(len(s.events) == 0 for s in spans_of([Batch.parse(Signal.TRACES, out)]))
