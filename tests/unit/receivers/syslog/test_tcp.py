"""The TCP listener: delivery, batching, backpressure, retries, bad input, limits, TLS."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from agent.errors import MemoryRefusedError, PermanentError, RetryableError
from agent.model import Batch, Signal
from agent.testing import Sink, attrs_dict
from tests.unit.receivers.otlp.kit import make_certs
from tests.unit.receivers.syslog.kit import (
    batch_records,
    eventually,
    messages,
    octet,
    running,
    send_tcp,
)

TCP = {"protocol": "rfc5424", "tcp": {"listen_address": "127.0.0.1:0"}}


def msgs(n: int, prefix: str = "m") -> list[bytes]:
    return [b"<14>1 2024-01-02T03:04:05.%06dZ host app 1 - - %s-%d" % (i, prefix.encode(), i) for i in range(n)]


class FlakySink(Sink):
    """Refuses the first `times` batches with `error`, then accepts."""

    def __init__(self, error: Exception, times: int) -> None:
        super().__init__()
        self.error = error
        self.times = times

    async def consume(self, batch: Batch) -> None:
        if self.times > 0:
            self.times -= 1
            self.calls += 1
            raise self.error
        await super().consume(batch)


async def test_octet_counted_messages_arrive_once_in_order_and_batched() -> None:
    async with running(TCP) as r:
        await send_tcp(r.tcp, octet(*msgs(500)))
        await r.sink.wait_for_items(500)
        assert messages(r.sink.batches) == [f"m-{i}" for i in range(500)]
        assert len(r.sink.batches) < 500  # many records per batch
        assert r.counter("accepted_items") == 500


@pytest.mark.parametrize("sep", [b"\n", b"\r\n", b"\0"])
async def test_trailer_framed_connections_are_detected(sep: bytes) -> None:
    async with running(TCP) as r:
        await send_tcp(r.tcp, b"".join(m + sep for m in msgs(50)))
        await r.sink.wait_for_items(50)
        assert messages(r.sink.batches) == [f"m-{i}" for i in range(50)]


async def test_explicit_framing_options() -> None:
    async with running({**TCP, "enable_octet_counting": True}) as r:
        await send_tcp(r.tcp, octet(*msgs(3)))
        await r.sink.wait_for_items(3)
    async with running({**TCP, "non_transparent_framing_trailer": "NUL"}) as r:
        await send_tcp(r.tcp, b"\0".join(msgs(3)) + b"\0")
        await r.sink.wait_for_items(3)
        assert messages(r.sink.batches) == ["m-0", "m-1", "m-2"]


async def test_one_log_per_packet_makes_the_connection_one_message() -> None:
    raw = {"protocol": "rfc3164", "tcp": {"listen_address": "127.0.0.1:0", "one_log_per_packet": True}}
    async with running(raw) as r:
        await send_tcp(r.tcp, b"<13>line one\n", b"line two\n")
        await r.sink.wait_for_items(1)
        assert messages(r.sink.batches) == ["line one\nline two"]


async def test_a_blocked_pipeline_stops_the_sender_and_nothing_is_lost() -> None:
    async with running(TCP) as r:
        r.sink.block()
        _, writer = await asyncio.open_connection(*r.tcp)
        payload = octet(*msgs(2000, "bp"))
        sent, stalled = 0, False
        for _ in range(2000):  # up to ~340 MB if nothing pushed back
            writer.write(payload)
            try:
                await asyncio.wait_for(writer.drain(), 0.5)
            except TimeoutError:
                stalled = True
                break
            sent += 2000
        assert stalled, "the sender was never stopped"
        in_flight = r.receiver.intakes[0].budget.used
        assert 0 < in_flight <= 16384 + 2000  # one read past the per-connection bound at most
        r.sink.unblock()
        await writer.drain()
        writer.close()
        total = sent + 2000
        await r.sink.wait_for_items(total, timeout=60)
        assert r.sink.items == total
        assert r.counter("accepted_items") == total


@pytest.mark.parametrize("error", [RetryableError("later", retry_after=0.01), MemoryRefusedError("full"),
                                   RuntimeError("bug")])
async def test_refused_batches_are_retried_until_accepted(error: Exception) -> None:
    sink = FlakySink(error, times=3)
    async with running(TCP, consumer=sink) as r:
        await send_tcp(r.tcp, octet(*msgs(20)))
        await sink.wait_for_items(20)
        assert sorted(messages(sink.batches)) == sorted(f"m-{i}" for i in range(20))
        assert r.counter("accepted_items") == 20
        assert r.counter("refused_items", reason="retryable") == 0


async def test_a_permanent_refusal_is_counted_and_the_connection_carries_on() -> None:
    sink = FlakySink(PermanentError("never"), times=1)
    async with running(TCP, consumer=sink) as r:
        _reader, writer = await asyncio.open_connection(*r.tcp)
        writer.write(octet(*msgs(5)))
        await eventually(lambda: r.counter("refused_items", reason="permanent") == 5)
        writer.write(octet(*msgs(5, "after")))
        await sink.wait_for_items(5)
        assert messages(sink.batches) == [f"after-{i}" for i in range(5)]
        writer.close()


async def test_a_partial_refusal_counts_both_parts() -> None:
    sink = FlakySink(PermanentError("some", rejected=2), times=1)
    async with running(TCP, consumer=sink) as r:
        await send_tcp(r.tcp, octet(*msgs(5)))
        await eventually(lambda: r.counter("refused_items", reason="permanent") == 2)
        assert r.counter("accepted_items") == 3


async def test_a_bad_count_closes_only_its_connection() -> None:
    async with running(TCP) as r:
        _good_reader, good = await asyncio.open_connection(*r.tcp)
        good.write(octet(*msgs(2, "good")))
        bad_reader, bad = await asyncio.open_connection(*r.tcp)
        bad.write(octet(*msgs(2, "bad")) + b"12x garbage")
        assert await asyncio.wait_for(bad_reader.read(), 5) == b""  # closed by the receiver
        good.write(octet(*msgs(2, "more")))
        await r.sink.wait_for_items(6)
        assert sorted(messages(r.sink.batches)) == sorted(["good-0", "good-1", "bad-0", "bad-1", "more-0", "more-1"])
        assert r.counter("refused_items", reason="framing") == 1
        good.close()


async def test_too_large_frames_are_skipped_and_truncated_ones_counted() -> None:
    raw = {**TCP, "max_octets": 100}
    async with running(raw) as r:
        big = b"<14>1 - - - - - - " + b"x" * 200
        await send_tcp(r.tcp, octet(b"<14>1 - - - - - - before", big, b"<14>1 - - - - - - after") + b"50 <14>1 cut")
        await r.sink.wait_for_items(2)
        await eventually(lambda: r.counter("refused_items", reason="truncated") == 1)
        assert messages(r.sink.batches) == ["before", "after"]
        assert r.counter("refused_items", reason="too_large") == 1


async def test_a_never_ending_line_is_counted_and_memory_stays_bounded() -> None:
    raw = {"protocol": "rfc3164", "tcp": {"listen_address": "127.0.0.1:0", "max_log_size": "64KiB"}}
    async with running(raw) as r:
        _reader, writer = await asyncio.open_connection(*r.tcp)
        writer.write(b"<13>first\n")
        for _ in range(64):  # 4 MiB without a trailer
            writer.write(b"y" * 65536)
            await writer.drain()
        writer.write(b"\n<13>second\n")
        await r.sink.wait_for_items(2)
        assert messages(r.sink.batches) == ["first", "second"]
        assert r.counter("refused_items", reason="too_large") == 1
        writer.close()


async def test_max_connections() -> None:
    raw = {"protocol": "rfc5424", "tcp": {"listen_address": "127.0.0.1:0", "max_connections": 1}}
    async with running(raw) as r:
        _first_reader, first = await asyncio.open_connection(*r.tcp)
        first.write(octet(*msgs(1)))
        await r.sink.wait_for_items(1)
        second_reader, second = await asyncio.open_connection(*r.tcp)
        assert await asyncio.wait_for(second_reader.read(), 5) == b""
        assert r.counter("refused_requests", reason="too_many_connections") == 1
        first.write(octet(*msgs(1, "still")))
        await r.sink.wait_for_items(2)
        first.close()
        second.close()


async def test_idle_connections_are_closed() -> None:
    raw = {"protocol": "rfc5424", "tcp": {"listen_address": "127.0.0.1:0", "connection_idle_timeout": "100ms"}}
    async with running(raw) as r:
        reader, writer = await asyncio.open_connection(*r.tcp)
        writer.write(octet(*msgs(1)))
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert r.sink.items == 1
        writer.close()


async def test_add_attributes() -> None:
    raw = {"protocol": "rfc5424", "tcp": {"listen_address": "127.0.0.1:0", "add_attributes": True}}
    async with running(raw) as r:
        _reader, writer = await asyncio.open_connection(*r.tcp)
        writer.write(octet(*msgs(1)))
        await r.sink.wait_for_items(1)
        a = attrs_dict(batch_records(r.sink.batches)[0].attributes)
        local_port = writer.get_extra_info("sockname")[1]
        assert a["net.transport"] == "IP.TCP"
        assert a["net.peer.ip"] == "127.0.0.1" and a["net.peer.port"] == str(local_port)
        assert a["net.host.ip"] == "127.0.0.1" and a["net.host.port"] == str(r.tcp[1])
        assert a["net.peer.name"] and a["net.host.name"]
        writer.close()


async def test_tls(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    raw = {"protocol": "rfc5424", "tcp": {"listen_address": "127.0.0.1:0", "tls": {
        "cert_file": str(certs.server_cert), "key_file": str(certs.server_key)}}}
    async with running(raw) as r:
        context = ssl.create_default_context(cafile=str(certs.ca_file))
        _reader, writer = await asyncio.open_connection(*r.tcp, ssl=context, server_hostname="localhost")
        writer.write(octet(*msgs(10)))
        await writer.drain()
        await r.sink.wait_for_items(10)
        assert messages(r.sink.batches) == [f"m-{i}" for i in range(10)]
        writer.close()
        # Plain text on the TLS port is not syslog: the handshake fails, nothing arrives.
        await send_tcp(r.tcp, octet(*msgs(1)))
        assert r.sink.items == 10


async def test_shutdown_answers_batches_in_flight_then_closes() -> None:
    async with running(TCP, grace=5.0) as r:
        r.sink.block()
        reader, writer = await asyncio.open_connection(*r.tcp)
        writer.write(octet(*msgs(10)))
        await eventually(lambda: r.sink.calls > 0)
        await r.receiver.stop_intake()
        # No new connections once intake stopped.
        with pytest.raises(OSError):
            await asyncio.open_connection(*r.tcp)
        stopping = asyncio.ensure_future(r.receiver.shutdown())
        await asyncio.sleep(0)
        r.sink.unblock()
        await stopping
        assert r.sink.items == 10 and r.counter("accepted_items") == 10
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_shutdown_grace_counts_what_it_gives_up() -> None:
    async with running(TCP, grace=0.1) as r:
        r.sink.block()
        _, writer = await asyncio.open_connection(*r.tcp)
        writer.write(octet(*msgs(7)))
        await eventually(lambda: r.sink.calls > 0)
        await r.receiver.shutdown()
        assert r.counter("refused_items", reason="shutting_down") == 7
        writer.close()


async def test_workers_share_the_ports() -> None:
    from agent.component import Kind, Settings
    from agent.receivers.syslog import FACTORY
    from agent.receivers.syslog.receiver import SyslogReceiver
    from tests.unit.receivers.syslog.kit import config_of

    probe = config_of({"tcp": {"listen_address": "127.0.0.1:0"}})
    first = SyslogReceiver(Settings.for_test("syslog", Kind.RECEIVER), probe, Sink(), reuse_port=True)
    await first.start()
    port = first.tcp_port
    config = config_of({"tcp": {"listen_address": f"127.0.0.1:{port}"}, "udp": {"listen_address": f"127.0.0.1:{port}"}})
    settings = Settings(**{**Settings.for_test("syslog", Kind.RECEIVER).__dict__, "shared_ports": True})
    second = FACTORY.create(settings, config, {Signal.LOGS: Sink()})  # type: ignore[misc]
    try:
        await second.start()
        assert second.tcp_port == port  # type: ignore[attr-defined]
    finally:
        await second.shutdown()
        await first.shutdown()
