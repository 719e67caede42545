"""The `redaction` component: redacts each batch in place (see `redactor.py`) and counts."""

from __future__ import annotations

from agent.component import Consumer, Settings
from agent.model import Batch, Signal
from agent.processors.redaction import RedactionConfig
from agent.processors.redaction.redactor import MASK, Redactor

__all__ = ["MASK", "RedactionProcessor", "Redactor"]


class RedactionProcessor:
    """Redacts each batch in place and passes it on."""

    mutates_data = True

    def __init__(self, settings: Settings, config: RedactionConfig, signal: Signal, next_consumer: Consumer) -> None:
        self.redactor = Redactor(config)
        self._signal = signal
        self._next = next_consumer
        pipeline = str(settings.pipeline) if settings.pipeline is not None else ""
        labels = (settings.label, pipeline, signal.value)
        self._deleted = settings.metrics.redaction_deleted_keys.labels(*labels)
        self._masked = settings.metrics.redaction_masked_values.labels(*labels)
        if not config.allow_all_keys and not config.allowed_keys:
            settings.logger.warning(
                "allowed_keys is empty and allow_all_keys is false, so every attribute that is "
                "not ignored will be deleted; set allow_all_keys: true to keep keys and mask values.",
                extra={"component": settings.label},
            )

    async def start(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def consume(self, batch: Batch) -> None:
        deleted, masked = self.redactor.redact(batch.signal, batch.mutable())
        if deleted:
            self._deleted.inc(deleted)
        if masked:
            self._masked.inc(masked)
        await self._next.consume(batch)
