"""sending_queue / retry_on_failure: the Collector's names and defaults, and every check."""

from __future__ import annotations

import msgspec
import pytest

from agent.config.types import dec_hook
from agent.exporters.sending import (
    DEFAULT_QUEUE_MAX_BYTES,
    SENDING_UPSTREAM_OPTIONS,
    RetryConfig,
    SendingQueueConfig,
)


def test_defaults_are_the_collectors() -> None:
    q = SendingQueueConfig()
    assert (q.enabled, q.num_consumers, q.queue_size, q.block_on_overflow, q.sizer) == (
        True, 10, 1000, False, "requests")
    assert q.max_bytes == DEFAULT_QUEUE_MAX_BYTES == 256 * 1024 * 1024
    r = RetryConfig()
    assert (r.enabled, r.initial_interval, r.randomization_factor, r.multiplier, r.max_interval,
            r.max_elapsed_time) == (True, 5.0, 0.5, 1.5, 30.0, 300.0)


def test_durations_and_sizes_parse() -> None:
    q = msgspec.convert({"max_bytes": "64MiB", "sizer": "items"}, SendingQueueConfig, dec_hook=dec_hook)
    assert q.max_bytes == 64 * 1024 * 1024
    r = msgspec.convert({"initial_interval": "200ms", "max_elapsed_time": "0"}, RetryConfig, dec_hook=dec_hook)
    assert r.initial_interval == pytest.approx(0.2)
    assert float(r.max_elapsed_time) == 0.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"storage": "file_storage"}, "persistent sending queue is not yet supported"),
        ({"num_consumers": 0}, ">= 1"),
        ({"queue_size": 0}, ">= 1"),
        ({"sizer": "pages"}, "Invalid enum value"),
        ({"max_bytes": "lots"}, "expected a size"),
        ({"blocking": True}, "unknown field"),
    ],
)
def test_queue_config_errors(raw: dict[str, object], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert(raw, SendingQueueConfig, dec_hook=dec_hook)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"multiplier": 0.5}, ">= 1.0"),
        ({"randomization_factor": 2}, "<= 1.0"),
        ({"initial_interval": "1m", "max_interval": "30s"}, "must not be less than initial_interval"),
        ({"initial_interval": "0s"}, "greater than 0"),
        ({"max_interval": "soon"}, "expected a duration"),
    ],
)
def test_retry_config_errors(raw: dict[str, object], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert(raw, RetryConfig, dec_hook=dec_hook)


def test_unimplemented_collector_options_are_listed() -> None:
    assert {"sending_queue.wait_for_result", "sending_queue.batch"} <= SENDING_UPSTREAM_OPTIONS


def test_the_config_layer_names_unimplemented_queue_options() -> None:
    from agent.config.convert import convert

    _, problem = convert({"wait_for_result": True}, SendingQueueConfig, ("exporters", "otlp", "sending_queue"))
    assert problem is not None
    assert "wait_for_result" in str(problem) and "not supported" in str(problem)
