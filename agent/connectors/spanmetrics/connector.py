"""The spanmetrics connector component: takes trace batches, emits metric batches on a timer.

`consume` aggregates synchronously (it never waits on the metrics pipeline), so a slow
metrics pipeline does not hold up traces. One flush at a time sends the state to the next
consumer: from the `flush` task every `metrics_flush_interval`, and once at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent.component import Consumer, Settings, TaskOwner
from agent.connectors.spanmetrics import SpanMetricsConfig
from agent.connectors.spanmetrics.aggregation import Aggregator
from agent.errors import ShuttingDownError
from agent.model import Batch, Signal

logger = logging.getLogger(__name__)


class SpanMetricsConnector:
    """traces → metrics; see `agent.connectors.spanmetrics` for what is emitted and guaranteed."""

    mutates_data = False

    def __init__(
        self,
        settings: Settings,
        config: SpanMetricsConfig,
        next_consumer: Consumer,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._next = next_consumer
        self._clock = clock
        self._interval = float(config.metrics_flush_interval)
        self._delta = config.delta
        self._aggregator = Aggregator(config)
        self._logger = settings.logger
        self._label = settings.label
        self._lock = asyncio.Lock()
        self._closing = False
        self._closed = False
        self._tasks = TaskOwner(self._label, self._logger, settings.report_status)
        m = settings.metrics
        label = settings.label
        self._series_gauge = m.spanmetrics_series.labels(label)
        self._overflow_spans = m.spanmetrics_overflow_spans.labels(label)
        self._skipped_no_service = m.spanmetrics_skipped_spans.labels(label, "no_service_name")
        self._expired = m.spanmetrics_expired_series.labels(label)
        self._flushes = {o: m.spanmetrics_flushes.labels(label, o) for o in ("ok", "failed", "empty")}
        self._overflow_logged = False

    @property
    def aggregator(self) -> Aggregator:
        return self._aggregator

    async def start(self) -> None:
        self._aggregator.start(self._clock())
        self._tasks.spawn("flush", self._flush_loop())

    async def consume(self, batch: Batch) -> None:
        if self._closing:
            raise ShuttingDownError("the spanmetrics connector is shutting down", retry_after=1.0)
        message = batch.message
        assert isinstance(message, ExportTraceServiceRequest)
        result = self._aggregator.add(message, self._clock())
        if result.skipped:
            self._skipped_no_service.inc(result.skipped)
        if result.overflowed:
            self._overflow_spans.inc(result.overflowed)
            if not self._overflow_logged:
                self._overflow_logged = True
                self._logger.warning(
                    "The spanmetrics series limit was reached; further series are aggregated "
                    "into overflow series (otel.metric.overflow=true).",
                    extra={"component": self._label, "series": self._aggregator.series},
                )
        self._series_gauge.set(self._aggregator.series)

    async def flush(self) -> bool:
        """Send the current state to the next consumer; False when that failed."""
        async with self._lock:
            now = self._clock()
            request = self._aggregator.build(now)
            expired = self._aggregator.after_flush(now)
            if expired:
                self._expired.inc(expired)
            self._series_gauge.set(self._aggregator.series)
            if request is None:
                self._flushes["empty"].inc()
                return True
            batch = Batch(Signal.METRICS, request)
            try:
                await self._next.consume(batch)
            except Exception as exc:
                self._flushes["failed"].inc()
                self._report_failure(exc, batch.items)
                return False
            self._flushes["ok"].inc()
            return True

    def _report_failure(self, exc: Exception, points: int) -> None:
        extra = {"component": self._label, "data_points": points, "error": repr(exc)}
        if self._delta:
            self._logger.error(
                "The span metrics of one interval could not be delivered and are lost (delta temporality).",
                extra=extra,
            )
        else:
            self._logger.warning(
                "The span metrics could not be delivered; the next flush carries the totals again.",
                extra=extra,
            )

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def shutdown(self) -> None:
        """Refuse new spans, stop the timer (after a flush in flight), then flush what is held."""
        if self._closed:
            return
        self._closing = True
        async with self._lock:
            await self._tasks.close()
        if not self._closed:
            self._closed = True
            await self.flush()
