"""What every exporter shares: the sending queue, retries and timeouts (`exporterhelper`).

An exporter subclasses `QueuedExporter` (which owns a `Sender` built around the exporter's
one-attempt `_send(batch)` coroutine and the lifecycle) and implements `_open`, `_send` and
`_close`.
Its Config embeds `SendingQueueConfig` (`sending_queue`), `RetryConfig`
(`retry_on_failure`) and a `timeout`, and adds `SENDING_UPSTREAM_OPTIONS` to its
`__upstream_options__`.
"""

from __future__ import annotations

from agent.exporters.sending.config import (
    DEFAULT_QUEUE_MAX_BYTES,
    SENDING_UPSTREAM_OPTIONS,
    RetryConfig,
    SendingQueueConfig,
)
from agent.exporters.sending.exporter import QueuedExporter
from agent.exporters.sending.queue import BatchQueue, BatchTooLargeError, MemoryQueue, QueuedBatch
from agent.exporters.sending.retry import SYSTEM_CLOCK, Backoff, Clock, SystemClock
from agent.exporters.sending.sender import OUTCOMES, Sender, SendFunc

__all__ = [
    "DEFAULT_QUEUE_MAX_BYTES",
    "OUTCOMES",
    "SENDING_UPSTREAM_OPTIONS",
    "SYSTEM_CLOCK",
    "Backoff",
    "BatchQueue",
    "BatchTooLargeError",
    "Clock",
    "MemoryQueue",
    "QueuedBatch",
    "QueuedExporter",
    "RetryConfig",
    "SendFunc",
    "Sender",
    "SendingQueueConfig",
    "SystemClock",
]
