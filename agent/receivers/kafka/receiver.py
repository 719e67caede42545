"""`KafkaReceiver`: one consumer-group member that hands records to the pipelines, at least once.

Tasks: `connect` (start the consumer, retrying while the brokers are unreachable, then the
fetch loop), `commit` (commit finished offsets every `autocommit.interval`, or as soon as
they advance), and one task per record in flight (decode, `consume()`, back off and retry,
pass over). Partition bookkeeping is `PartitionState`'s; what happens to a record is in
`_handle`. See the package doc for the guarantees.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from aiokafka.errors import ConsumerStoppedError, IllegalStateError, KafkaError

from agent.component import Consumer, Settings, TaskOwner
from agent.config.kafka import quiet_client_logs
from agent.config.types import Duration
from agent.errors import FlowglassError, MemoryRefusedError, PermanentError, RetryableError
from agent.exporters.sending import SYSTEM_CLOCK, Backoff, Clock, RetryConfig
from agent.model import Signal
from agent.receivers.kafka import KafkaReceiverConfig
from agent.receivers.kafka.deadletter import DeadLetterWriter, is_permanent
from agent.receivers.kafka.decode import Decoder, UndecodableError, client_info, decoder, extract_headers
from agent.receivers.kafka.partition import PartitionState

quiet_client_logs()

_ASSIGNORS = {
    "range": RangePartitionAssignor,
    "roundrobin": RoundRobinPartitionAssignor,
    "sticky": StickyPartitionAssignor,
}
#: Seconds `shutdown()` waits for records in flight before giving them up.
DEFAULT_GRACE = 10.0
#: How long one fetch waits for records, in milliseconds.
POLL_MS = 250
#: Header names of a dead-letter record.
SKIP_REASONS = ("poison", "refused", "retries_exhausted")


@dataclass(frozen=True)
class _Route:
    """What a topic's records become and where they go, with the label-bound counters."""

    signal: Signal
    decode: Decoder
    consumer: Consumer
    accepted: Any
    refused: dict[str, Any]
    skipped: dict[str, Any]
    retries: Any
    dead_letters: dict[str, Any]


class _Throttled:
    """One log line per kind of trouble per `interval` seconds, saying how many were left out."""

    def __init__(self, settings: Settings, interval: float = 30.0) -> None:
        self._settings = settings
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str, **extra: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -self._interval) < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        self._settings.logger.warning(message, extra={
            "component": self._settings.label, **extra,
            "similar_not_logged": self._suppressed.pop(kind, 0),
        })


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka has no type hints
    def __init__(self, receiver: KafkaReceiver) -> None:
        self._receiver = receiver

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._receiver._revoke(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._receiver._assign(assigned)


class KafkaReceiver:
    """Consumes the topics of the signals in `consumers`; factories and clock are for tests."""

    def __init__(
        self,
        settings: Settings,
        config: KafkaReceiverConfig,
        consumers: Mapping[Signal, Consumer],
        *,
        consumer_factory: Any = AIOKafkaConsumer,
        producer_factory: Any = AIOKafkaProducer,
        clock: Clock = SYSTEM_CLOCK,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        self._settings = settings
        self._config = config
        self._log = settings.logger
        self._label = settings.label
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self._clock = clock
        self._grace = grace
        self._rebalance_grace = min(5.0, float(config.session_timeout) / 2)
        self._routes = {
            topic: self._route(topic, signal, consumer)
            for signal, consumer in consumers.items()
            for topic in config.signal(signal).topics
        }
        self._retry = RetryConfig(
            initial_interval=config.error_backoff.initial_interval,
            max_interval=config.error_backoff.max_interval,
            multiplier=config.error_backoff.multiplier,
            randomization_factor=config.error_backoff.randomization_factor,
            max_elapsed_time=config.error_backoff.max_elapsed_time,
        )
        self._rng = random.Random()
        self._tasks = TaskOwner(settings.label, settings.logger, settings.report_status)
        self._throttled = _Throttled(settings)
        self._partitions: dict[Any, PartitionState] = {}
        self._in_flight = 0
        self._room: asyncio.Event | None = None
        self._advanced: asyncio.Event | None = None
        self._commit_lock: asyncio.Lock | None = None
        self._intake_open = False
        self._consumer: Any = None
        self._dead_letters = DeadLetterWriter(config, producer_factory)
        self._unreachable = False
        self._commit_failing = False
        self._stopped = False
        self._stopping: asyncio.Lock | None = None
        m, label = settings.metrics, settings.label
        self._lag = m.kafka_receiver_lag
        self._assigned = m.kafka_receiver_assigned.labels(label)
        self._rebalances = m.kafka_receiver_rebalances.labels(label)
        self._commits = {o: m.kafka_receiver_commits.labels(label, o) for o in ("success", "failed")}

    def _route(self, topic: str, signal: Signal, consumer: Consumer) -> _Route:
        m, label = self._settings.metrics, self._label
        return _Route(
            signal=signal,
            decode=decoder(signal, self._config.signal(signal).encoding),
            consumer=consumer,
            accepted=m.receiver_accepted.labels(label, signal.value, "kafka"),
            refused={r: m.receiver_refused.labels(label, signal.value, "kafka", r)
                     for r in ("partial", "permanent", "memory_limit", "retryable")},
            skipped={r: m.kafka_receiver_skipped.labels(label, topic, r) for r in SKIP_REASONS},
            retries=m.kafka_receiver_retries.labels(label, topic),
            dead_letters={o: m.kafka_receiver_dead_letters.labels(label, topic, o) for o in ("written", "failed")},
        )

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start consuming in the background: the brokers need not be reachable yet."""
        self._room = asyncio.Event()
        self._advanced = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._stopping = asyncio.Lock()
        if not self._routes:
            return
        self._intake_open = True
        self._tasks.spawn("connect", self._run())
        self._tasks.spawn("commit", self._commit_loop())
        self._log.info(
            "The Kafka receiver started; it joins its consumer group in the background.",
            extra={"component": self._label, "group_id": self._config.group_id,
                   "topics": sorted(self._routes), **self._config.describe()},
        )

    async def stop_intake(self) -> None:
        """Fetch no more records; records in flight carry on (their retries stop)."""
        self._intake_open = False
        if self._room is not None:
            self._room.set()

    async def shutdown(self) -> None:
        """Stop fetching, let records in flight finish (bounded), commit, leave the group."""
        if self._stopping is None:
            return
        async with self._stopping:
            if self._stopped:
                return
            self._stopped = True
            await self.stop_intake()
            await self._settle_records(list(self._partitions.values()), self._grace)
            await self._commit()
            await self._tasks.close(timeout=5.0)
            consumer, self._consumer = self._consumer, None
            if consumer is not None:
                await _stop_quietly(consumer)
            await self._dead_letters.close()
            for state in self._partitions.values():
                self._forget(state)
            self._partitions.clear()
            self._assigned.set(0)

    # ---- the consumer -----------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(RetryConfig(initial_interval=Duration(1.0), max_interval=Duration(10.0)), self._rng)
        while self._intake_open:
            consumer = self._new_consumer()
            try:
                await consumer.start()
            except (KafkaError, OSError) as exc:
                await _stop_quietly(consumer)
                self._report_unreachable(exc)
                await self._clock.sleep(backoff.next_delay())
                continue
            consumer.subscribe(sorted(self._routes), listener=_Listener(self))
            self._consumer = consumer
            if self._unreachable:
                self._unreachable = False
                self._log.info("The Kafka receiver reaches its brokers again.",
                               extra={"component": self._label, **self._config.describe()})
            await self._fetch(consumer)
            return

    def _new_consumer(self) -> Any:
        config = self._config
        try:
            options = config.client_options()
        except (OSError, ssl.SSLError) as exc:
            raise FlowglassError(f"cannot load the Kafka TLS files: {exc}") from exc
        return self._consumer_factory(
            **options,
            group_id=config.group_id,
            group_instance_id=config.group_instance_id or None,
            client_rack=config.rack_id or None,
            enable_auto_commit=False,
            auto_offset_reset=config.initial_offset,
            session_timeout_ms=int(config.session_timeout * 1000),
            heartbeat_interval_ms=int(config.heartbeat_interval * 1000),
            fetch_min_bytes=config.min_fetch_size,
            fetch_max_bytes=int(config.max_fetch_size),
            fetch_max_wait_ms=int(config.max_fetch_wait * 1000),
            max_partition_fetch_bytes=int(config.max_partition_fetch_size),
            partition_assignment_strategy=tuple(_ASSIGNORS[s] for s in config.strategies),
        )

    def _report_unreachable(self, exc: BaseException) -> None:
        if not self._unreachable:
            self._unreachable = True
            self._log.warning(
                "The Kafka receiver cannot reach its brokers; it keeps trying.",
                extra={"component": self._label, "error": repr(exc), **self._config.describe()},
            )

    async def _fetch(self, consumer: Any) -> None:
        assert self._room is not None
        while self._intake_open:
            room = self._config.max_in_flight - self._in_flight
            if room <= 0:
                self._room.clear()
                try:
                    async with asyncio.timeout(1.0):
                        await self._room.wait()
                except TimeoutError:
                    pass
                continue
            try:
                fetched = await consumer.getmany(timeout_ms=POLL_MS, max_records=room)
            except ConsumerStoppedError:
                return
            except KafkaError as exc:
                self._throttled.warning("fetch", "Fetching from Kafka failed; the receiver retries.",
                                        error=repr(exc))
                await self._clock.sleep(1.0)
                continue
            for tp, records in fetched.items():
                state = self._partitions.get(tp)
                route = self._routes.get(tp.topic)
                if state is None or route is None or state.revoked or not self._intake_open:
                    continue  # not ours (any more): whoever owns the partition reads them again
                for record in records:
                    self._start(state, route, record)

    # ---- one record -------------------------------------------------------------------------

    def _start(self, state: PartitionState, route: _Route, record: Any) -> None:
        state.start(record.offset)
        self._in_flight += 1
        task = self._tasks.spawn("record", self._process(state, route, record))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)

    async def _process(self, state: PartitionState, route: _Route, record: Any) -> None:
        finished = False
        try:
            finished = await self._handle(state, route, record)
        finally:
            self._in_flight -= 1
            assert self._room is not None and self._advanced is not None
            self._room.set()
            if finished:
                state.finish(record.offset)
                self._advanced.set()

    async def _handle(self, state: PartitionState, route: _Route, record: Any) -> bool:
        """Deliver one record; True when it is done with (accepted or passed over for good)."""
        client = client_info(record)
        value: bytes = record.value or b""
        backoff: Backoff | None = None
        deadline = 0.0
        while True:
            try:
                batch = route.decode(value, record.timestamp or 0, client)
            except UndecodableError as exc:
                return await self._pass_over(state, route, record, "poison", str(exc))
            except Exception as exc:  # a decoder bug must not stop the partition either
                return await self._pass_over(state, route, record, "poison", repr(exc))
            if self._config.header_extraction.extract_headers:
                extract_headers(batch, record.headers, self._config.header_extraction.headers)
            items = batch.items
            if items == 0:
                return True
            try:
                await route.consumer.consume(batch)
            except PermanentError as exc:
                if exc.rejected is not None and 0 <= exc.rejected < items:
                    route.accepted.inc(items - exc.rejected)
                    route.refused["partial"].inc(exc.rejected)
                    return True
                route.refused["permanent"].inc(items)
                return await self._pass_over(state, route, record, "refused", str(exc))
            except Exception as exc:
                route.refused["memory_limit" if isinstance(exc, MemoryRefusedError) else "retryable"].inc(items)
                if not isinstance(exc, FlowglassError):
                    self._throttled.warning("pipeline", "A pipeline failed with an unexpected error; "
                                            "the record is handed over again.", error=repr(exc))
                if backoff is None:
                    backoff = Backoff(self._retry, self._rng)
                    deadline = self._clock.monotonic() + self._retry.max_elapsed_time
                if self._retry.max_elapsed_time > 0 and self._clock.monotonic() >= deadline:
                    return self._give_up(route, record, exc)
                if not self._intake_open or state.revoked:
                    return False  # not committed: read again after the restart or rebalance
                hint = exc.retry_after if isinstance(exc, RetryableError) else None
                route.retries.inc()
                await self._paused(state, hint if hint and hint > 0 else backoff.next_delay())
                if not self._intake_open or state.revoked:
                    return False
                continue
            route.accepted.inc(items)
            return True

    async def _paused(self, state: PartitionState, delay: float) -> None:
        """Wait `delay` seconds with the partition paused (fetching resumes after the last wait)."""
        consumer = self._consumer
        state.retrying += 1
        if state.retrying == 1 and consumer is not None:
            _quietly(consumer.pause, state.tp)
        try:
            await self._clock.sleep(delay)
        finally:
            state.retrying -= 1
            if state.retrying == 0 and consumer is not None and not state.revoked:
                _quietly(consumer.resume, state.tp)

    def _give_up(self, route: _Route, record: Any, exc: BaseException) -> bool:
        route.skipped["retries_exhausted"].inc()
        self._log.error(
            "A record was refused until error_backoff.max_elapsed_time ran out; it is passed over.",
            extra={"component": self._label, "topic": record.topic, "partition": record.partition,
                   "offset": record.offset, "error": repr(exc)},
        )
        return True

    async def _pass_over(self, state: PartitionState, route: _Route, record: Any, reason: str,
                         message: str) -> bool:
        """Count a record that will never be accepted, dead-letter it when configured; True when done."""
        route.skipped[reason].inc()
        self._throttled.warning(
            f"skip-{reason}", "Records that will never be accepted are passed over"
            + (" and written to the dead-letter topic." if self._config.dead_letter_topic else "."),
            reason=reason, topic=record.topic, partition=record.partition, offset=record.offset, error=message,
        )
        if not self._config.dead_letter_topic:
            return True
        return await self._dead_letter(state, route, record, f"{reason}: {message}")

    async def _dead_letter(self, state: PartitionState, route: _Route, record: Any, reason: str) -> bool:
        """Write the record to the dead-letter topic, retrying while that fails; True when done."""
        backoff = Backoff(self._retry, self._rng)
        while True:
            try:
                await self._dead_letters.write(record, reason)
            except Exception as exc:
                if is_permanent(exc):
                    route.dead_letters["failed"].inc()
                    self._log.error("A record could not be written to the dead-letter topic; it is lost.",
                                    extra={"component": self._label, "error": repr(exc)})
                    return True
                if not self._intake_open or state.revoked:
                    return False
                self._throttled.warning("dead-letter", "Writing to the dead-letter topic failed; retrying.",
                                        error=repr(exc))
                await self._paused(state, backoff.next_delay())
                continue
            route.dead_letters["written"].inc()
            return True

    # ---- rebalances and commits -------------------------------------------------------------

    def _assign(self, assigned: Any) -> None:
        for tp in assigned:
            if tp not in self._partitions:
                state = PartitionState(tp)
                state.lag = self._lag.labels(self._label, tp.topic, str(tp.partition))
                self._partitions[tp] = state
        self._rebalances.inc()
        self._assigned.set(len(self._partitions))
        self._log.info("The Kafka receiver was assigned partitions.",
                       extra={"component": self._label, "partitions": len(self._partitions),
                              "group_id": self._config.group_id})

    async def _revoke(self, revoked: Any) -> None:
        states = [s for tp in revoked if (s := self._partitions.get(tp)) is not None]
        await self._settle_records(states, self._rebalance_grace)
        await self._commit(states)
        for state in states:
            self._forget(state)
            del self._partitions[state.tp]
        self._assigned.set(len(self._partitions))

    async def _settle_records(self, states: list[PartitionState], grace: float) -> None:
        """Start nothing more on `states`; wait up to `grace` s for their records, then give up the rest."""
        for state in states:
            state.revoked = True
        tasks = [t for s in states for t in s.tasks]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            self._log.warning(
                "Records still in the pipeline were given up; they are read again later.",
                extra={"component": self._label, "records": len(pending)},
            )

    def _forget(self, state: PartitionState) -> None:
        try:
            self._lag.remove(self._label, state.topic, str(state.partition))
        except KeyError:
            pass

    async def _commit_loop(self) -> None:
        assert self._advanced is not None
        autocommit = self._config.autocommit
        while True:
            if autocommit.enable:
                await asyncio.sleep(float(autocommit.interval))
            else:
                await self._advanced.wait()
                self._advanced.clear()
            await self._commit()
            self._update_lag()

    async def _commit(self, states: list[PartitionState] | None = None) -> None:
        """Commit the commit point of `states` (default: every partition) where it moved."""
        consumer = self._consumer
        if consumer is None or self._commit_lock is None:
            return
        async with self._commit_lock:
            chosen = list(self._partitions.values()) if states is None else states
            offsets = {s.tp: point for s in chosen if (point := s.pending_commit()) is not None}
            if not offsets:
                return
            try:
                await consumer.commit(offsets)
            except (KafkaError, OSError) as exc:
                self._commits["failed"].inc()
                self._commit_failing = True
                self._throttled.warning("commit", "Committing offsets failed; finished work is committed "
                                        "again with the next commit.", error=repr(exc))
                return
            for state in chosen:
                if state.tp in offsets:
                    state.committed = offsets[state.tp]
            self._commits["success"].inc()
            if self._commit_failing:
                self._commit_failing = False
                self._log.info("The Kafka receiver commits offsets again.", extra={"component": self._label})

    def _update_lag(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        for state in list(self._partitions.values()):
            try:
                highwater = consumer.highwater(state.tp)
            except (IllegalStateError, KafkaError, AssertionError):
                continue
            point = state.commit_point()
            if point is None:
                point = state.committed
            if highwater is not None and point is not None and state.lag is not None:
                state.lag.set(max(0, highwater - point))


def _quietly(action: Any, tp: Any) -> None:
    try:
        action(tp)
    except (IllegalStateError, KafkaError):
        pass  # the partition was just taken away: nothing to pause or resume


async def _stop_quietly(client: Any) -> None:
    try:
        await client.stop()
    except Exception:  # stopping a client that never connected may fail: nothing is lost
        pass
