"""The sending options every exporter shares, with the Collector's names and defaults.

They are the Collector's `exporterhelper` options: `sending_queue`, `retry_on_failure` and
`timeout` (the last is a plain field of each exporter's Config, since its default differs
between exporters). An exporter's Config embeds them as

```python
timeout: Duration = Duration(5.0)
sending_queue: SendingQueueConfig = msgspec.field(default_factory=SendingQueueConfig)
retry_on_failure: RetryConfig = msgspec.field(default_factory=RetryConfig)
```

and lists `SENDING_UPSTREAM_OPTIONS` in its `__upstream_options__`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec

from agent.config.types import ByteSize, Duration

#: Options of the Collector's `sending_queue` that Flowglass does not implement. The config
#: layer rejects them with a sentence.
_QUEUE_UPSTREAM_OPTIONS = frozenset({"wait_for_result", "batch", "blocking"})

#: The same, as dotted paths inside an exporter's config, for its `__upstream_options__`.
SENDING_UPSTREAM_OPTIONS = frozenset(f"sending_queue.{name}" for name in _QUEUE_UPSTREAM_OPTIONS)

#: Default bound on the encoded size of everything in one sending queue.
DEFAULT_QUEUE_MAX_BYTES = ByteSize(256 * 1024 * 1024)

Sizer = Literal["requests", "items", "bytes"]


class SendingQueueConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`sending_queue`: where batches wait between `consume` and the send.

    `sizer` says what `queue_size` counts: `requests` (batches), `items` (spans, data
    points, log records) or `bytes` (encoded size). `max_bytes` (Flowglass's own) also
    bounds the encoded size of everything queued whatever the sizer, so that a queue of
    large batches cannot take the node's memory; 0 turns that bound off. It counts the
    protobuf encoding: the parsed form of a batch, when it is kept too, takes a few times
    more memory. `storage` is reserved for the persistent (write-ahead log) queue.
    """

    __upstream_options__: ClassVar[frozenset[str]] = _QUEUE_UPSTREAM_OPTIONS

    enabled: bool = True
    num_consumers: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 10
    queue_size: Annotated[int, msgspec.Meta(ge=1)] = 1000
    block_on_overflow: bool = False
    sizer: Sizer = "requests"
    max_bytes: ByteSize = DEFAULT_QUEUE_MAX_BYTES
    storage: str = ""

    def __post_init__(self) -> None:
        if self.storage:
            raise ValueError(
                f"storage {self.storage!r}: the persistent sending queue is not yet supported; "
                "remove `storage` to use the in-memory queue"
            )


class RetryConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`retry_on_failure`: exponential backoff with jitter between attempts of one batch.

    The n-th delay is `initial_interval * multiplier**(n-1)` capped at `max_interval`, then
    spread by `± randomization_factor`. A retry hint from the server (gRPC RetryInfo, HTTP
    Retry-After) replaces the computed delay. After `max_elapsed_time` (0 = never) the batch
    is given up.
    """

    enabled: bool = True
    initial_interval: Duration = Duration(5.0)
    randomization_factor: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5
    multiplier: Annotated[float, msgspec.Meta(ge=1.0)] = 1.5
    max_interval: Duration = Duration(30.0)
    max_elapsed_time: Duration = Duration(300.0)

    def __post_init__(self) -> None:
        if self.enabled and self.initial_interval <= 0:
            raise ValueError("initial_interval must be greater than 0 when retries are enabled")
        if self.max_interval < self.initial_interval:
            raise ValueError(
                f"max_interval ({self.max_interval:g}s) must not be less than "
                f"initial_interval ({self.initial_interval:g}s)"
            )
