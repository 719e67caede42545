"""The `batch` processor: triggers, splitting, errors reaching callers, backpressure, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from agent.component import Kind, Settings
from agent.config.types import dec_hook
from agent.errors import PermanentError, RetryableError, ShuttingDownError
from agent.model import Batch, ClientInfo, Signal
from agent.processors.batch import FACTORY, BatchConfig, BatchProcessor
from agent.testing import Sink, make_logs, make_metrics, make_traces, spans_of

PIPELINE = "traces/main"


def convert(raw: dict[str, Any]) -> BatchConfig:
    return msgspec.convert(raw, BatchConfig, dec_hook=dec_hook)


def settings() -> Settings:
    return Settings.for_test("batch/test", Kind.PROCESSOR, PIPELINE)


def make(sink: Sink, signal: Signal = Signal.TRACES, **raw: Any) -> tuple[BatchProcessor, Settings]:
    s = settings()
    assert FACTORY.create is not None
    proc = FACTORY.create(s, convert(raw), signal, sink)
    assert isinstance(proc, BatchProcessor)
    return proc, s


def sample(s: Settings, name: str, **labels: str) -> float:
    base = {"component": "batch/test", "pipeline": PIPELINE, "signal": "traces"}
    value = s.metrics.registry.get_sample_value(name, {**base, **labels})
    return 0.0 if value is None else value


def triggers(s: Settings, trigger: str) -> float:
    return sample(s, "flowglass_processor_batch_sends_total", trigger=trigger)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (polling) until `condition` holds; fail after `timeout` seconds."""

    async def poll() -> None:
        while True:
            if condition():
                return
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)


def span_ids(batches: list[Batch]) -> list[bytes]:
    return [span.span_id for span in spans_of(batches)]


# -- config ----------------------------------------------------------------------------


def test_config_defaults_match_the_collector() -> None:
    config = convert({})
    assert config.timeout == 0.2
    assert config.send_batch_size == 8192
    assert config.send_batch_max_size == 0
    assert config.metadata_keys == []
    assert config.metadata_cardinality_limit == 1000
    assert config.max_in_flight == 4


def test_config_parses_durations() -> None:
    assert convert({"timeout": "5s", "send_batch_size": 100, "send_batch_max_size": 100}).timeout == 5.0
    assert convert({"timeout": 0}).timeout == 0.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"send_batch_size": 100, "send_batch_max_size": 50},
            "send_batch_max_size (50) must be greater than or equal to send_batch_size (100)",
        ),
        ({"send_batch_max_size": 1000}, "must be greater than or equal to send_batch_size (8192)"),
        ({"metadata_keys": ["tenant", "Tenant"]}, "duplicate entry in metadata_keys: 'tenant'"),
        ({"send_batch_size": -1}, "Expected `int` >= 0 - at `$.send_batch_size`"),
        ({"send_batch_size": 2**32}, "at `$.send_batch_size`"),
        ({"timeout": "-5s"}, "at `$.timeout`"),
        ({"timeout": "soon"}, "expected a duration"),
        ({"max_in_flight": 0}, "at `$.max_in_flight`"),
        ({"send_batch_timeout": "1s"}, "unknown field `send_batch_timeout`"),
    ],
)
def test_config_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        convert(raw)
    assert message in str(info.value)


def test_factory_declares_every_signal_and_no_mutation() -> None:
    assert FACTORY.type == "batch"
    assert set(FACTORY.signals) == set(Signal)
    proc, _ = make(Sink())
    assert proc.mutates_data is False


# -- triggers --------------------------------------------------------------------------


async def test_size_trigger_sends_one_merged_batch_and_releases_every_caller() -> None:
    sink = Sink()
    proc, s = make(sink, send_batch_size=10, timeout="1h")
    inputs = [make_traces(3, seed=i) for i in range(4)]
    callers = [asyncio.create_task(proc.consume(b)) for b in inputs]
    await asyncio.gather(*callers)
    assert [b.items for b in sink.batches] == [12]
    assert span_ids(sink.batches) == span_ids(inputs)
    assert triggers(s, "size") == 1
    assert triggers(s, "timeout") == 0
    assert sample(s, "flowglass_processor_batch_send_size_sum") == 12
    await proc.shutdown()


async def test_caller_returns_only_after_its_batch_was_accepted() -> None:
    sink = Sink()
    sink.block()
    proc, _ = make(sink, send_batch_size=2, timeout="1h")
    caller = asyncio.create_task(proc.consume(make_traces(2)))
    await until(lambda: sink.calls == 1)
    await asyncio.sleep(0)
    assert not caller.done()
    sink.unblock()
    await caller
    assert sink.items == 2
    await proc.shutdown()


async def test_timeout_trigger_sends_a_small_batch() -> None:
    sink = Sink()
    proc, s = make(sink, send_batch_size=1000, timeout="20ms")
    await asyncio.gather(proc.consume(make_traces(3)), proc.consume(make_traces(2)))
    assert [b.items for b in sink.batches] == [5]
    assert triggers(s, "timeout") == 1
    assert triggers(s, "size") == 0
    await proc.shutdown()


async def test_zero_timeout_sends_every_batch_at_once() -> None:
    sink = Sink()
    proc, s = make(sink, send_batch_size=1000, timeout=0)
    await proc.consume(make_traces(3))
    await proc.consume(make_traces(4))
    assert [b.items for b in sink.batches] == [3, 4]
    assert triggers(s, "timeout") == 0
    await proc.shutdown()


async def test_shutdown_flushes_what_waits_and_then_refuses() -> None:
    sink = Sink()
    proc, s = make(sink, send_batch_size=1000, timeout="1h")
    await proc.start()
    callers = [asyncio.create_task(proc.consume(make_traces(n))) for n in (2, 3)]
    await until(lambda: proc.waiting_items == 5)
    assert sink.calls == 0
    await proc.shutdown()
    await asyncio.gather(*callers)
    assert [b.items for b in sink.batches] == [5]
    assert triggers(s, "shutdown") == 1
    with pytest.raises(ShuttingDownError):
        await proc.consume(make_traces(4))
    assert sample(s, "flowglass_processor_refused_items_total", reason="shutting_down") == 4
    await proc.shutdown()  # idempotent


async def test_shutdown_cancelled_at_its_deadline_tells_callers_to_retry() -> None:
    sink = Sink()
    sink.block()
    proc, _ = make(sink, send_batch_size=1000, timeout="1h")
    caller = asyncio.create_task(proc.consume(make_traces(2)))
    await until(lambda: proc.waiting_items == 2)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(proc.shutdown(), 0.05)
    with pytest.raises(ShuttingDownError):
        await caller
    assert proc.in_flight == 0


# -- splitting -------------------------------------------------------------------------


async def test_an_oversized_batch_is_split_and_its_caller_waits_for_every_piece() -> None:
    sink = Sink()
    proc, s = make(sink, send_batch_size=4, send_batch_max_size=4, timeout="20ms")
    batch = make_traces(10, seed=7)
    await proc.consume(batch)
    assert sorted(b.items for b in sink.batches) == [2, 4, 4]
    assert sorted(span_ids(sink.batches)) == sorted(span_ids([batch]))
    assert all(b.items <= 4 for b in sink.batches)
    assert triggers(s, "size") == 2
    assert triggers(s, "timeout") == 1
    await proc.shutdown()


async def test_a_batch_that_does_not_fit_next_to_waiting_items_sends_them_first() -> None:
    sink = Sink()
    proc, s = make(sink, send_batch_size=10, send_batch_max_size=10, timeout="20ms")
    await asyncio.gather(proc.consume(make_traces(6)), proc.consume(make_traces(6)))
    assert [b.items for b in sink.batches] == [6, 6]
    assert triggers(s, "size") == 1
    await proc.shutdown()


async def test_a_failed_piece_fails_the_caller_and_accepted_pieces_stay_accepted() -> None:
    sink = Sink()
    sink.fail_with = RetryableError("exporter busy", retry_after=2.0)
    sink.fail_times = 1
    proc, _ = make(sink, send_batch_size=4, send_batch_max_size=4, timeout="20ms")
    with pytest.raises(RetryableError, match="exporter busy"):
        await proc.consume(make_traces(10))
    assert sink.calls == 3
    assert sink.items == 6, "the two pieces that were accepted stay accepted"
    await proc.shutdown()


# -- errors reach every caller ---------------------------------------------------------


async def test_downstream_error_reaches_every_caller_of_the_merged_batch() -> None:
    sink = Sink()
    sink.fail_with = RetryableError("down", retry_after=1.0)
    proc, _ = make(sink, send_batch_size=6, timeout="1h")
    results = await asyncio.gather(*(proc.consume(make_traces(2)) for _ in range(3)), return_exceptions=True)
    assert sink.calls == 1
    assert all(isinstance(r, RetryableError) and str(r) == "down" for r in results)
    await proc.shutdown()


async def test_a_partial_rejection_is_narrowed_to_the_callers_items() -> None:
    sink = Sink()
    sink.fail_with = PermanentError("3 spans had no name", rejected=3)
    proc, _ = make(sink, send_batch_size=6, timeout="1h")
    results = await asyncio.gather(
        proc.consume(make_traces(2)), proc.consume(make_traces(4)), return_exceptions=True
    )
    assert [(type(r), r.rejected) for r in results if isinstance(r, PermanentError)] == [
        (PermanentError, 2),
        (PermanentError, 3),
    ]
    await proc.shutdown()


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    sink = Sink()
    proc, _ = make(sink, send_batch_size=4, timeout="1h")
    first = asyncio.create_task(proc.consume(make_traces(2)))
    await until(lambda: proc.waiting_items == 2)
    first.cancel()
    await proc.consume(make_traces(2))
    assert sink.items == 4  # the cancelled caller's items were already placed
    assert first.cancelled()
    await proc.shutdown()


# -- backpressure ----------------------------------------------------------------------


async def test_backpressure_bounds_waiting_items_and_delivers_everything_once() -> None:
    sink = Sink()
    sink.block()
    proc, s = make(sink, send_batch_size=10, timeout="1h", max_in_flight=1)
    inputs = [make_traces(10, seed=i) for i in range(6)]
    callers = []
    for b in inputs:
        callers.append(asyncio.create_task(proc.consume(b)))
        await asyncio.sleep(0)
    # One send is in flight (blocked); 2 × send_batch_size items wait; the rest wait outside.
    await until(lambda: proc.blocked_callers == 3)
    assert sink.calls == 1
    assert proc.in_flight == 1
    assert proc.waiting_items == 20
    assert not any(c.done() for c in callers)

    sink.unblock()
    await asyncio.gather(*callers)
    assert sink.items == 60
    assert sorted(span_ids(sink.batches)) == sorted(span_ids(inputs)), "each span exactly once"
    assert len(set(span_ids(sink.batches))) == 60
    assert triggers(s, "size") == 6
    assert sample(s, "flowglass_processor_batch_send_size_count") == 6
    assert sample(s, "flowglass_processor_batch_send_size_sum") == 60
    assert proc.waiting_items == 0
    await proc.shutdown()


async def test_a_caller_cancelled_while_waiting_for_room_withdraws_its_items() -> None:
    sink = Sink()
    sink.block()
    proc, _ = make(sink, send_batch_size=10, timeout="1h", max_in_flight=1)
    callers = [asyncio.create_task(proc.consume(make_traces(10))) for _ in range(4)]
    await until(lambda: proc.blocked_callers == 1)
    callers[3].cancel()
    await asyncio.gather(callers[3], return_exceptions=True)
    assert proc.blocked_callers == 0
    sink.unblock()
    await asyncio.gather(*callers[:3])
    assert sink.items == 30
    await proc.shutdown()


async def test_sends_run_on_the_processors_own_named_tasks() -> None:
    names: list[str] = []

    class Recorder(Sink):
        async def consume(self, batch: Batch) -> None:
            task = asyncio.current_task()
            assert task is not None
            names.append(task.get_name())
            await super().consume(batch)

    sink = Recorder()
    proc, _ = make(sink, send_batch_size=2, timeout="1h")
    caller = asyncio.create_task(proc.consume(make_traces(2)), name="caller")
    await caller
    assert names == [f"batch/test/{PIPELINE}:send"]
    await proc.shutdown()


async def test_waiting_callers_are_refused_at_shutdown() -> None:
    sink = Sink()
    sink.block()
    proc, _ = make(sink, send_batch_size=10, timeout="1h", max_in_flight=1)
    callers = [asyncio.create_task(proc.consume(make_traces(10))) for _ in range(4)]
    await until(lambda: proc.blocked_callers == 1)
    stopping = asyncio.create_task(proc.shutdown())
    results = await asyncio.gather(callers[3], return_exceptions=True)
    assert isinstance(results[0], ShuttingDownError)
    sink.unblock()
    await stopping
    await asyncio.gather(*callers[:3])
    assert sink.items == 30


# -- metadata --------------------------------------------------------------------------


def tenant(value: str) -> ClientInfo:
    return ClientInfo(address="10.1.1.1", metadata={"tenant": (value,), "other": ("x",)})


async def test_metadata_keys_batch_each_tenant_separately() -> None:
    sink = Sink()
    proc, _ = make(sink, send_batch_size=4, timeout="1h", metadata_keys=["Tenant"])
    inputs = []
    for i, who in enumerate("abab"):
        b = make_traces(2, service=f"svc-{who}", seed=i)
        inputs.append(Batch(Signal.TRACES, b.message, client=tenant(who)))
    await asyncio.gather(*(proc.consume(b) for b in inputs))
    assert len(sink.batches) == 2
    for out in sink.batches:
        (who,) = out.client.get("tenant")
        assert out.client.get("other") == (), "only the metadata keys travel on"
        services = {
            kv.value.string_value
            for rs in out.message.resource_spans
            for kv in rs.resource.attributes
            if kv.key == "service.name"
        }
        assert services == {f"svc-{who}"}
    await proc.shutdown()


async def test_metadata_cardinality_limit_refuses_a_new_combination() -> None:
    sink = Sink()
    proc, s = make(
        sink, send_batch_size=100, timeout="1h", metadata_keys=["tenant"], metadata_cardinality_limit=1
    )
    first = asyncio.create_task(
        proc.consume(Batch(Signal.TRACES, make_traces(2).message, client=tenant("a")))
    )
    await until(lambda: proc.waiting_items == 2)
    with pytest.raises(RetryableError, match="metadata_cardinality_limit is 1"):
        await proc.consume(Batch(Signal.TRACES, make_traces(3).message, client=tenant("b")))
    assert sample(s, "flowglass_processor_refused_items_total", reason="metadata_cardinality") == 3
    await proc.shutdown()
    await first


# -- data ------------------------------------------------------------------------------


@pytest.mark.parametrize("signal", list(Signal))
async def test_merged_bytes_decode_to_the_same_items_in_order_and_inputs_are_unchanged(
    signal: Signal,
) -> None:
    sink = Sink()
    proc, _ = make(sink, signal, send_batch_size=15, timeout="1h")
    builders: dict[Signal, Callable[[int], Batch]] = {
        Signal.TRACES: make_traces,
        Signal.METRICS: make_metrics,
        Signal.LOGS: make_logs,
    }
    originals = [builders[signal](3) for _ in range(5)]
    # As a receiver hands them over: bytes known, nothing parsed.
    inputs = [Batch(signal, data=b.serialize(), items=b.items) for b in originals]
    before = [b.serialize() for b in inputs]
    await asyncio.gather(*(proc.consume(b) for b in inputs))
    (merged,) = sink.batches
    assert merged.serialize() == b"".join(before), "merging joins encodings, no re-serialization"
    expected = [o.message for o in originals]
    resources = _resources(signal, merged)
    assert resources == [r for m in expected for r in _resource_list(signal, m)]
    assert [b.serialize() for b in inputs] == before
    assert [Batch.parse(signal, b).message for b in before] == expected
    await proc.shutdown()


def _resource_list(signal: Signal, message: Any) -> list[Any]:
    return list(
        getattr(
            message,
            {"traces": "resource_spans", "metrics": "resource_metrics", "logs": "resource_logs"}[
                signal.value
            ],
        )
    )


def _resources(signal: Signal, batch: Batch) -> list[Any]:
    return _resource_list(signal, Batch.parse(signal, batch.serialize()).message)


async def test_a_batch_built_in_memory_is_not_changed_by_merging() -> None:
    sink = Sink()
    proc, _ = make(sink, send_batch_size=6, timeout="1h")
    inputs = [make_traces(3, seed=1), make_traces(3, seed=2)]
    copies = [b.copy().message for b in inputs]
    await asyncio.gather(*(proc.consume(b) for b in inputs))
    assert [b.message for b in inputs] == copies
    assert spans_of(sink.batches) == spans_of(inputs)
    await proc.shutdown()
