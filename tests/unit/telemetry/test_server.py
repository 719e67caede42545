from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from agent.errors import StartError
from agent.telemetry.health import Health
from agent.telemetry.metrics import AgentMetrics
from agent.telemetry.server import TelemetryServer, parse_address

Served = tuple[TelemetryServer, AgentMetrics, Health, str]


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    metrics = AgentMetrics()
    health = Health(metrics)
    server = TelemetryServer("127.0.0.1:0", metrics, health)
    await server.start()
    try:
        yield server, metrics, health, f"http://127.0.0.1:{server.port}"
    finally:
        await server.shutdown()


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def _get_json(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.json()


async def test_metrics_shows_counter_incremented_before_scrape(served: Served) -> None:
    _, metrics, _, base = served
    metrics.exporter_sent.labels(component="file", signal="traces").inc(7)
    status, content_type, body = await _get(base + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    assert 'flowglass_exporter_sent_items_total{component="file",signal="traces"} 7.0' in body
    metrics.exporter_sent.labels(component="file", signal="traces").inc(3)
    _, _, body = await _get(base + "/metrics")
    assert 'flowglass_exporter_sent_items_total{component="file",signal="traces"} 10.0' in body


async def test_metrics_speaks_openmetrics_when_asked(served: Served) -> None:
    _, _, _, base = served
    status, content_type, body = await _get(
        base + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")


async def test_healthz_answers_ok(served: Served) -> None:
    _, _, _, base = served
    status, doc = await _get_json(base + "/healthz")
    assert status == 200
    assert doc == {"status": "ok"}


async def test_readyz_names_failing_component_then_turns_ready(served: Served) -> None:
    _, _, health, base = served
    health.set("receiver:otlp", "ok")
    health.set("exporter:kafka", "starting")
    status, doc = await _get_json(base + "/readyz")
    assert status == 503  # not started yet
    assert doc["service"] == "starting"

    health.mark_started()
    health.report("exporter:kafka", ConnectionError("no broker at 127.0.0.1:9092"))
    status, doc = await _get_json(base + "/readyz")
    assert status == 503
    assert doc["status"] == "not_ready"
    components = doc["components"]
    assert isinstance(components, dict)
    assert components["exporter:kafka"]["status"] == "failed"
    assert "no broker at 127.0.0.1:9092" in components["exporter:kafka"]["error"]
    assert components["receiver:otlp"] == {"status": "ok"}

    health.report("exporter:kafka", None)
    status, doc = await _get_json(base + "/readyz")
    assert status == 200
    assert doc["status"] == "ready"


async def test_port_in_use_is_a_start_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = TelemetryServer(f"127.0.0.1:{port}", AgentMetrics(), Health())
        with pytest.raises(StartError, match=f"cannot listen on 127.0.0.1:{port}"):
            await server.start()
        await server.shutdown()


async def test_shutdown_is_idempotent_and_closes_the_port() -> None:
    server = TelemetryServer("127.0.0.1:0", AgentMetrics(), Health())
    await server.start()
    port = server.port
    await server.shutdown()
    await server.shutdown()
    with pytest.raises(RuntimeError):
        _ = server.port
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))  # free again


async def test_empty_address_disables_the_server() -> None:
    server = TelemetryServer("", AgentMetrics(), Health())
    assert not server.enabled
    await server.start()
    with pytest.raises(RuntimeError):
        _ = server.port
    await server.shutdown()


async def test_bad_address_is_a_start_error() -> None:
    server = TelemetryServer("localhost", AgentMetrics(), Health())
    with pytest.raises(StartError, match="not valid"):
        await server.start()


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:8888") == ("127.0.0.1", 8888)
    assert parse_address(":8888") == (None, 8888)
    assert parse_address("[::1]:9") == ("::1", 9)
    for bad in ("8888", "host:http", "host:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)
