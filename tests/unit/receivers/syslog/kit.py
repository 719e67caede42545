"""Helpers for the syslog receiver tests: configs, one-frame parsing, a running receiver."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from agent.component import Consumer, Kind, Settings
from agent.config.types import dec_hook
from agent.model import Batch
from agent.receivers.syslog import SyslogConfig
from agent.receivers.syslog.receiver import SyslogReceiver
from agent.receivers.syslog.record import RecordEncoder
from agent.receivers.syslog.timestamps import Stamp
from agent.testing import Sink, attrs_dict

OBSERVED = 1_700_000_000_123_456_789


def config_of(raw: dict[str, Any] | None = None, **options: Any) -> SyslogConfig:
    doc: dict[str, Any] = {"protocol": "rfc5424", "tcp": {"listen_address": "127.0.0.1:0"}}
    doc.update(raw or {})
    doc.update(options)
    return msgspec.convert(doc, SyslogConfig, dec_hook=dec_hook)


def decode(data: bytes) -> list[LogRecord]:
    request = ExportLogsServiceRequest()
    request.ParseFromString(data)
    return [lr for rl in request.resource_logs for sl in rl.scope_logs for lr in sl.log_records]


def records(frames: list[bytes], config: SyslogConfig | None = None, *, clock: float | None = None,
            **options: Any) -> list[LogRecord]:
    """The log records the receiver makes of `frames` (observed at `OBSERVED`)."""
    config = config or config_of(**options)
    stamp = Stamp(_zone(config), clock=lambda: clock) if clock is not None else None
    encoder = RecordEncoder(config, stamp=stamp)
    out = encoder.encode(frames, encoder.tail(OBSERVED))
    return decode(encoder.request(out.records)) if out.records else []


def record(frame: bytes, **options: Any) -> LogRecord:
    """The one log record of `frame`."""
    found = records([frame], **options)
    assert len(found) == 1, found
    return found[0]


def attrs(frame: bytes, **options: Any) -> dict[str, Any]:
    return attrs_dict(record(frame, **options).attributes)


def _zone(config: SyslogConfig) -> Any:
    import zoneinfo

    return zoneinfo.ZoneInfo(config.location)


def batch_records(batches: list[Batch]) -> list[LogRecord]:
    return [lr for b in batches for rl in b.message.resource_logs for sl in rl.scope_logs  # type: ignore[union-attr]
            for lr in sl.log_records]


def messages(batches: list[Batch]) -> list[str]:
    """The `message` attribute of every record, in order."""
    return [attrs_dict(lr.attributes).get("message", "") for lr in batch_records(batches)]


@dataclass
class Running:
    receiver: SyslogReceiver
    settings: Settings
    sink: Sink

    def counter(self, name: str, transport: str = "tcp", **labels: str) -> float:
        full = {"component": "syslog", "signal": "logs", "transport": transport, **labels}
        value = self.settings.metrics.registry.get_sample_value(f"flowglass_receiver_{name}_total", full)
        return value or 0.0

    @property
    def tcp(self) -> tuple[str, int]:
        assert self.receiver.tcp_port is not None
        return "127.0.0.1", self.receiver.tcp_port

    @property
    def udp(self) -> tuple[str, int]:
        assert self.receiver.udp_port is not None
        return "127.0.0.1", self.receiver.udp_port


@asynccontextmanager
async def running(raw: dict[str, Any] | None = None, consumer: Consumer | None = None,
                  **kwargs: Any) -> AsyncIterator[Running]:
    """A started receiver feeding a Sink (or `consumer`); shut down on exit."""
    config = config_of(raw)
    settings = Settings.for_test("syslog", Kind.RECEIVER)
    sink = Sink()
    receiver = SyslogReceiver(settings, config, consumer or sink, **kwargs)
    await receiver.start()
    try:
        yield Running(receiver, settings, sink)
    finally:
        sink.unblock()
        await receiver.shutdown()


async def send_tcp(address: tuple[str, int], *chunks: bytes) -> None:
    _reader, writer = await asyncio.open_connection(*address)
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def send_udp(address: tuple[str, int], *datagrams: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for datagram in datagrams:
            s.sendto(datagram, address)


async def eventually(predicate: Any, timeout: float = 5.0) -> None:
    """Wait until `predicate()` is true (polling the loop), or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def octet(*messages: bytes) -> bytes:
    return b"".join(b"%d %b" % (len(m), m) for m in messages)
