from __future__ import annotations

import logging

import msgspec
import pytest

from agent.component import Kind, Settings
from agent.errors import ShuttingDownError
from agent.exporters.debug import FACTORY, DebugConfig, DebugExporter, LineSampler
from agent.model import Batch, Signal
from agent.testing import make_logs, make_metrics, make_traces, spans_of

LOGGER = "agent.exporters.debug"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _exporter(clock: FakeClock | None = None, **options: object) -> tuple[DebugExporter, Settings]:
    settings = Settings.for_test("debug", Kind.EXPORTER)
    config = msgspec.convert(options, DebugConfig)
    return DebugExporter(settings, config, clock=clock or FakeClock()), settings


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


@pytest.fixture(autouse=True)
def _capture_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)


def test_config_defaults_and_errors() -> None:
    config = msgspec.convert({}, DebugConfig)
    assert (config.verbosity, config.sampling_initial, config.sampling_thereafter) == ("basic", 2, 1)
    assert config.use_internal_logger
    with pytest.raises(msgspec.ValidationError, match="verbosity"):
        msgspec.convert({"verbosity": "loud"}, DebugConfig)
    with pytest.raises(msgspec.ValidationError, match="sampling_initial"):
        msgspec.convert({"sampling_initial": -1}, DebugConfig)
    with pytest.raises(msgspec.ValidationError, match="loglevel"):
        msgspec.convert({"loglevel": "debug"}, DebugConfig)
    assert FACTORY.type == "debug"
    assert set(FACTORY.signals) == set(Signal)


async def test_basic_writes_one_count_line_per_batch(caplog: pytest.LogCaptureFixture) -> None:
    exporter, settings = _exporter()
    await exporter.start()
    await exporter.consume(make_traces(7, resources=2))
    await exporter.consume(make_metrics(6))
    await exporter.consume(make_logs(4))
    assert _lines(caplog) == [
        "Traces resource spans=2 spans=14",
        "Metrics resource metrics=1 metrics=6 data points=6",
        "Logs resource logs=1 log records=4",
    ]
    record = next(r for r in caplog.records if r.name == LOGGER)
    assert record.levelno == logging.INFO
    assert record.__dict__["component"] == "debug"
    sent = settings.metrics.registry.get_sample_value(
        "flowglass_exporter_sent_items_total", {"component": "debug", "signal": "traces"}
    )
    assert sent == 14
    await exporter.shutdown()


async def test_normal_writes_one_line_per_item(caplog: pytest.LogCaptureFixture) -> None:
    exporter, _ = _exporter(verbosity="normal")
    traces = make_traces(3, name="infer")
    await exporter.consume(traces)
    span_lines = _lines(caplog)
    assert len(span_lines) == 3
    for span, line in zip(spans_of([traces]), span_lines, strict=True):
        assert line == f"Span trace_id={span.trace_id.hex()} span_id={span.span_id.hex()} name=infer"

    caplog.clear()
    await exporter.consume(make_metrics(3))
    assert _lines(caplog) == [
        "Metric name=requests_sum_0 data points=1",
        "Metric name=requests_gauge_1 data points=1",
        "Metric name=requests_histogram_2 data points=1",
    ]

    caplog.clear()
    await exporter.consume(make_logs(2, body="line one\nline two"))
    assert _lines(caplog) == [
        "Log severity=INFO body=line one\\nline two 0",
        "Log severity=INFO body=line one\\nline two 1",
    ]


async def test_detailed_dumps_every_field_once_per_batch(caplog: pytest.LogCaptureFixture) -> None:
    exporter, _ = _exporter(verbosity="detailed")
    traces = make_traces(2, error_every=2)
    await exporter.consume(traces)
    (dump,) = _lines(caplog)
    span = spans_of([traces])[1]
    assert dump.startswith("Traces resource spans=1 spans=2\n")
    assert "-> service.name: Str(model-server)" in dump
    assert "name: flowglass.test" in dump  # the scope
    assert f"trace_id: {span.trace_id.hex()}" in dump
    assert f"span_id: {span.span_id.hex()}" in dump
    assert "kind: SPAN_KIND_SERVER" in dump
    assert "-> http.response.status_code: Int(200)" in dump
    assert "-> ml.latency.queue_ms: Double(1.5)" in dump
    assert "code: STATUS_CODE_ERROR" in dump
    assert "message: inference failed" in dump
    assert f"start_time_unix_nano: {span.start_time_unix_nano} (" in dump
    assert "events #0" in dump and "links #0" in dump

    caplog.clear()
    await exporter.consume(make_metrics(3))
    (dump,) = _lines(caplog)
    assert "bucket_counts: [1, 1, 1]" in dump
    assert "explicit_bounds: [0.1, 1.0]" in dump
    assert "aggregation_temporality: AGGREGATION_TEMPORALITY_CUMULATIVE" in dump

    caplog.clear()
    await exporter.consume(make_logs(1))
    (dump,) = _lines(caplog)
    assert "body: Str(inference done 0)" in dump
    assert "severity_number: SEVERITY_NUMBER_INFO" in dump


async def test_sampling_limits_lines_per_second(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    exporter, settings = _exporter(clock, sampling_initial=2, sampling_thereafter=3)
    for _ in range(10):
        await exporter.consume(make_traces(1))
    # zap's rule: lines 1 and 2, then every 3rd after them (5 and 8).
    assert len(_lines(caplog)) == 4
    # Another signal has its own budget.
    await exporter.consume(make_logs(1))
    assert len(_lines(caplog)) == 5
    # A new second starts a new budget.
    clock.now += 1.0
    caplog.clear()
    for _ in range(2):
        await exporter.consume(make_traces(1))
    assert len(_lines(caplog)) == 2
    # Sampling affects lines, never the count of items sent.
    sent = settings.metrics.registry.get_sample_value(
        "flowglass_exporter_sent_items_total", {"component": "debug", "signal": "traces"}
    )
    assert sent == 12


async def test_sampling_counts_each_item_line(caplog: pytest.LogCaptureFixture) -> None:
    exporter, _ = _exporter(verbosity="normal", sampling_initial=3, sampling_thereafter=0)
    await exporter.consume(make_traces(10))
    assert len(_lines(caplog)) == 3


async def test_detailed_output_is_sampled_per_batch(caplog: pytest.LogCaptureFixture) -> None:
    exporter, _ = _exporter(verbosity="detailed", sampling_initial=1, sampling_thereafter=0)
    for _ in range(3):
        await exporter.consume(make_logs(2))
    assert len(_lines(caplog)) == 1


def test_line_sampler_follows_zap() -> None:
    clock = FakeClock()
    sampler = LineSampler(initial=1, thereafter=2, clock=clock)
    assert [sampler.allow("k") for _ in range(5)] == [True, False, True, False, True]
    assert sampler.dropped == 2
    clock.now += 0.5
    assert not sampler.allow("k")
    clock.now += 0.5
    assert sampler.allow("k")


async def test_stdout_without_internal_logger(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    exporter, _ = _exporter(use_internal_logger=False, sampling_initial=0, sampling_thereafter=0)
    await exporter.consume(make_traces(3))
    await exporter.consume(make_traces(3))
    assert capsys.readouterr().out.splitlines() == ["Traces resource spans=1 spans=3"] * 2
    assert _lines(caplog) == []


async def test_batches_are_not_changed() -> None:
    for verbosity in ("basic", "normal", "detailed"):
        exporter, _ = _exporter(verbosity=verbosity)
        batch = make_traces(5, seed=1)
        before = batch.message.SerializeToString()
        await exporter.consume(batch)
        assert batch.message.SerializeToString() == before
    assert DebugExporter.mutates_data is False


async def test_consume_after_shutdown_is_refused() -> None:
    exporter, _ = _exporter()
    await exporter.start()
    await exporter.shutdown()
    await exporter.shutdown()
    with pytest.raises(ShuttingDownError):
        await exporter.consume(Batch(Signal.TRACES, make_traces(1).message))
