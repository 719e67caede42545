"""Helpers for the otlp receiver tests: a running receiver, certificates, counters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import trustme

from agent.component import Consumer, Kind, Settings
from agent.config.types import dec_hook
from agent.model import Batch, Signal
from agent.receivers.otlp import OTLPReceiverConfig
from agent.receivers.otlp.receiver import OTLPReceiver
from agent.testing import Sink

LOOPBACK = "127.0.0.1:0"


def config_of(raw: Any) -> OTLPReceiverConfig:
    return msgspec.convert(raw, OTLPReceiverConfig, dec_hook=dec_hook)


class GatedSink(Sink):
    """A Sink whose `entered` event is set once a consume has begun (even a blocked one)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()

    async def consume(self, batch: Batch) -> None:
        self.entered.set()
        await super().consume(batch)


@dataclass
class Running:
    receiver: OTLPReceiver
    settings: Settings
    sink: GatedSink

    def counter(self, name: str, **labels: str) -> float:
        """A receiver counter's value (0 when never incremented)."""
        full = {"component": "otlp", "signal": "traces", **labels}
        value = self.settings.metrics.registry.get_sample_value(f"flowglass_receiver_{name}_total", full)
        return value or 0.0


@asynccontextmanager
async def running(
    grpc: dict[str, Any] | None = None,
    http: dict[str, Any] | None = None,
    consumers: Mapping[Signal, Consumer] | None = None,
    **kwargs: Any,
) -> AsyncIterator[Running]:
    """A started receiver on loopback ports, fed to a Sink for traces unless `consumers` says."""
    protocols: dict[str, Any] = {}
    if grpc is not None:
        protocols["grpc"] = {"endpoint": LOOPBACK, **grpc}
    if http is not None:
        protocols["http"] = {"endpoint": LOOPBACK, **http}
    settings = Settings.for_test("otlp", Kind.RECEIVER)
    sink = GatedSink()
    if consumers is None:
        consumers = {Signal.TRACES: sink}
    config = config_of({"protocols": protocols})
    receiver = OTLPReceiver(settings, config, consumers, **kwargs)
    await receiver.start()
    try:
        yield Running(receiver, settings, sink)
    finally:
        await receiver.shutdown()


@dataclass
class Certs:
    ca: trustme.CA
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @property
    def ca_pem(self) -> bytes:
        return bytes(self.ca.cert_pem.bytes())

    def client_pems(self) -> tuple[bytes, bytes]:
        """(client private key PEM, client certificate chain PEM)."""
        return self.client_key.read_bytes(), self.client_cert.read_bytes()


def make_certs(directory: Path) -> Certs:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("client.example")
    paths = {
        "ca_file": directory / "ca.pem",
        "server_cert": directory / "server.pem",
        "server_key": directory / "server.key",
        "client_cert": directory / "client.pem",
        "client_key": directory / "client.key",
    }
    ca.cert_pem.write_to_path(str(paths["ca_file"]))
    server.cert_chain_pems[0].write_to_path(str(paths["server_cert"]))
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(str(paths["server_cert"]), append=True)
    server.private_key_pem.write_to_path(str(paths["server_key"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client_cert"]))
    for pem in client.cert_chain_pems[1:]:
        pem.write_to_path(str(paths["client_cert"]), append=True)
    client.private_key_pem.write_to_path(str(paths["client_key"]))
    return Certs(ca=ca, **paths)
