"""The errors that cross component seams.

The `consume()` contract (DESIGN §4): returning means accepted; `PermanentError` means the
batch will never be accepted (count it, drop it, never retry); any other exception means it
may succeed later. `RetryableError` and `MemoryRefusedError` are the named forms of "later"
that carry a hint for the sender.
"""

from __future__ import annotations


class FlowglassError(Exception):
    """Base of the agent's own exceptions."""


class PermanentError(FlowglassError):
    """The data will never be accepted: count it, drop it, never retry it.

    `rejected` says how many items of the batch were refused when that is fewer than all of
    them (OTLP partial success): receivers then answer success with a `partial_success`
    that carries the count and this message. None means the whole batch.
    """

    def __init__(self, message: str, rejected: int | None = None) -> None:
        super().__init__(message)
        self.rejected = rejected


class RetryableError(FlowglassError):
    """The data may be accepted later; `retry_after` (seconds) is a hint for the sender."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MemoryRefusedError(RetryableError):
    """Refused because the agent is above its memory limit (gRPC RESOURCE_EXHAUSTED, HTTP 429)."""


class QueueFullError(RetryableError):
    """Refused because a bounded queue is full and the component refuses rather than drops."""


class ShuttingDownError(RetryableError):
    """Refused because the component is shutting down and takes no new data."""


class ConfigError(FlowglassError):
    """A configuration has problems; `problems` holds every one, each starting with its path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StartError(FlowglassError):
    """A component could not start (a port in use, a certificate that does not load, ...)."""
