"""The UDP listener: one message per datagram, batching, counted drops, net attributes."""

from __future__ import annotations

import socket

import pytest

from agent.errors import MemoryRefusedError, PermanentError, RetryableError
from agent.model import Batch
from agent.testing import Sink, attrs_dict
from tests.unit.receivers.syslog.kit import batch_records, eventually, messages, running, send_udp

UDP = {"protocol": "rfc3164", "tcp": None, "udp": {"listen_address": "127.0.0.1:0"}}


class RefusingSink(Sink):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def consume(self, batch: Batch) -> None:
        self.calls += 1
        raise self.error


async def test_each_datagram_is_one_message_and_datagrams_are_batched() -> None:
    async with running(UDP) as r:
        send_udp(r.udp, *[b"<13>Jan  2 03:04:05 host app[1]: msg %d\n\0" % i for i in range(200)])
        await r.sink.wait_for_items(200)
        assert sorted(messages(r.sink.batches), key=lambda m: int(m.split()[1])) == [f"msg {i}" for i in range(200)]
        assert len(r.sink.batches) < 200
        assert r.counter("accepted_items", transport="udp") == 200


async def test_a_datagram_with_several_lines_stays_one_message() -> None:
    async with running(UDP) as r:
        send_udp(r.udp, b"<13>app: line one\nline two")
        await r.sink.wait_for_items(1)
        assert messages(r.sink.batches) == ["line one\nline two"]


@pytest.mark.parametrize(("error", "reason"), [(RetryableError("x"), "retryable"),
                                               (MemoryRefusedError("x"), "memory_limit"),
                                               (PermanentError("x"), "permanent")])
async def test_refusals_are_counted_and_dropped(error: Exception, reason: str) -> None:
    sink = RefusingSink(error)
    async with running(UDP, consumer=sink) as r:
        send_udp(r.udp, b"<13>app: one", b"<13>app: two")
        await eventually(lambda: r.counter("refused_items", transport="udp", reason=reason) == 2)
        assert r.counter("accepted_items", transport="udp") == 0


async def test_what_does_not_fit_in_flight_is_dropped_and_counted() -> None:
    async with running(UDP) as r:
        r.sink.block()
        r.receiver.intakes[0].budget.limit = 5
        send_udp(r.udp, *[b"<13>app: first %d" % i for i in range(5)])
        await eventually(lambda: r.receiver.intakes[0].budget.used == 5)
        send_udp(r.udp, *[b"<13>app: dropped %d" % i for i in range(3)])
        await eventually(lambda: r.counter("refused_items", transport="udp", reason="queue_full") == 3)
        r.sink.unblock()
        await r.sink.wait_for_items(5)
        send_udp(r.udp, b"<13>app: later")
        await r.sink.wait_for_items(6)
        assert "later" in messages(r.sink.batches)


async def test_unparsed_datagrams_are_sent_raw_and_counted() -> None:
    async with running({**UDP, "protocol": "rfc5424"}) as r:
        send_udp(r.udp, b"not syslog", b"<13>1 - - - - - - fine")
        await r.sink.wait_for_items(2)
        assert r.counter("unparsed_items", transport="udp") == 1
    async with running({**UDP, "protocol": "rfc5424", "on_error": "drop_quiet"}) as r:
        send_udp(r.udp, b"not syslog", b"<13>1 - - - - - - fine")
        await eventually(lambda: r.counter("refused_items", transport="udp", reason="malformed") == 1)
        await r.sink.wait_for_items(1)


async def test_add_attributes() -> None:
    raw = {**UDP, "udp": {"listen_address": "127.0.0.1:0", "add_attributes": True}}
    async with running(raw) as r:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.sendto(b"<13>app: first", r.udp)
            await r.sink.wait_for_items(1)
            await eventually(lambda: r.receiver._udp._resolver.cached("127.0.0.1") is not None)  # type: ignore[union-attr]
            s.sendto(b"<13>app: second", r.udp)
            await r.sink.wait_for_items(2)
        first, second = (attrs_dict(lr.attributes) for lr in batch_records(r.sink.batches))
        for a in (first, second):
            assert a["net.transport"] == "IP.UDP"
            assert a["net.peer.ip"] == "127.0.0.1" and a["net.peer.port"] == str(port)
            assert a["net.host.ip"] == "127.0.0.1" and a["net.host.port"] == str(r.udp[1])
        assert first["net.peer.name"] in ("127.0.0.1", second["net.peer.name"])  # before the lookup: the address
        assert second["net.host.name"] == second["net.peer.name"]


async def test_tcp_and_udp_on_the_same_port() -> None:
    raw = {"protocol": "auto", "tcp": {"listen_address": "127.0.0.1:0"}}
    async with running(raw) as r:
        port = r.tcp[1]
    raw = {"protocol": "auto", "tcp": {"listen_address": f"127.0.0.1:{port}"},
           "udp": {"listen_address": f"127.0.0.1:{port}"}}
    async with running(raw) as r:
        send_udp(r.udp, b"<13>1 - - - - - - over udp")
        await r.sink.wait_for_items(1)
        assert r.tcp[1] == r.udp[1]


async def test_shutdown_hands_over_what_was_gathered() -> None:
    async with running(UDP) as r:
        send_udp(r.udp, b"<13>app: last words")
        await eventually(lambda: r.receiver._udp._pending_count == 1 or r.sink.items == 1)  # type: ignore[union-attr]
        await r.receiver.stop_intake()
        await r.sink.wait_for_items(1)
        send_udp(r.udp, b"<13>app: too late")
        assert r.sink.items == 1
