"""The `jaeger` exporter: config, and api_v2 PostSpans against a collector built from `proto/`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import msgspec
import pytest
import trustme

from agent.component import Kind, Settings
from agent.config.types import dec_hook
from agent.errors import PermanentError, RetryableError, StartError
from agent.exporters import jaeger
from agent.exporters.jaeger import JaegerExporterConfig, with_default_port
from agent.exporters.jaeger.exporter import JaegerGRPCExporter
from agent.exporters.otlp_grpc import OTLPGRPCExporter
from agent.model import Batch, Signal
from agent.testing import make_traces
from tests.unit.exporters.helpers import FakeClock, metric
from tests.unit.exporters.jaeger.collector import Collector, fail
from tests.unit.exporters.jaeger.mapping import check_request

SENT = "flowglass_exporter_sent_items_total"
FAILED = "flowglass_exporter_send_failed_items_total"
RETRIES = "flowglass_exporter_retries_total"


def make_config(**raw: Any) -> JaegerExporterConfig:
    return msgspec.convert(raw, JaegerExporterConfig, dec_hook=dec_hook)


def make_exporter(config: JaegerExporterConfig, clock: FakeClock | None = None) -> JaegerGRPCExporter:
    settings = Settings.for_test("jaeger/test", Kind.EXPORTER)
    return JaegerGRPCExporter(settings, config, clock=clock or FakeClock())


def grpc_config(port: int, **extra: Any) -> JaegerExporterConfig:
    return make_config(protocol="grpc", endpoint=f"127.0.0.1:{port}", tls={"insecure": True}, **extra)


def inline(port: int, **extra: Any) -> JaegerExporterConfig:
    """Queue disabled, so the outcome of each send is the caller's."""
    return grpc_config(port, sending_queue={"enabled": False}, **extra)


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    c = await Collector().start()
    yield c
    await c.stop()


# --- config -----------------------------------------------------------------------------


def test_config_defaults_are_otlp_grpcs() -> None:
    c = make_config(endpoint="jaeger:4317")
    assert c.protocol == "otlp" and c.compression == "gzip" and c.timeout == 5.0
    assert c.sending_queue.queue_size == 1000 and c.retry_on_failure.enabled
    assert c.target() == ("jaeger:4317", True)


@pytest.mark.parametrize(
    ("protocol", "endpoint", "target"),
    [
        ("otlp", "jaeger", ("jaeger:4317", True)),
        ("grpc", "jaeger", ("jaeger:14250", True)),
        ("grpc", "http://jaeger", ("jaeger:14250", False)),
        ("grpc", "https://jaeger:9999/", ("jaeger:9999", True)),
        ("grpc", "[::1]", ("[::1]:14250", True)),
        ("grpc", "[::1]:1", ("[::1]:1", True)),
        ("otlp", "::1", ("[::1]:4317", True)),
        ("grpc", "dns:///jaeger:14250", ("dns:///jaeger:14250", True)),
    ],
)
def test_endpoint_gets_the_protocols_default_port(protocol: str, endpoint: str, target: tuple[str, bool]) -> None:
    assert make_config(protocol=protocol, endpoint=endpoint).target() == target


def test_compression_defaults_to_gzip_for_otlp_and_none_for_api_v2() -> None:
    assert make_config(endpoint="j").compression == "gzip"
    assert make_config(endpoint="j", protocol="grpc").compression == "none"
    assert make_config(endpoint="j", protocol="grpc", compression="gzip").compression == "gzip"


def test_with_default_port_keeps_a_given_port() -> None:
    assert with_default_port("h:1", 2) == "h:1"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"endpoint": "j", "protocol": "thrift"}, "Invalid enum value 'thrift'"),
        ({"endpoint": " "}, "endpoint must be set"),
        ({"endpoint": "j", "compression": "zstd"}, "not supported by the gRPC exporter"),
        ({"endpoint": "j", "auth": {"authenticator": "x"}}, "unknown field"),
        ({}, "missing required field `endpoint`"),
    ],
)
def test_config_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        make_config(**raw)


def test_factory_makes_the_exporter_of_the_protocol() -> None:
    assert jaeger.FACTORY.type == "jaeger" and set(jaeger.FACTORY.signals) == {Signal.TRACES}
    assert {"auth", "sending_queue.batch"} <= JaegerExporterConfig.__upstream_options__
    settings = Settings.for_test("jaeger", Kind.EXPORTER)
    otlp = jaeger.create(settings, make_config(endpoint="j"))
    assert type(otlp) is OTLPGRPCExporter
    assert isinstance(jaeger.create(settings, make_config(endpoint="j", protocol="grpc")), JaegerGRPCExporter)


# --- behaviour ---------------------------------------------------------------------------


async def test_batches_arrive_with_every_field_through_the_queue(collector: Collector) -> None:
    exporter = make_exporter(grpc_config(collector.port, headers={"X-Tenant": "ml-team"}, compression="gzip"))
    await exporter.start()
    batch = make_traces(30, resources=3, seed=1, error_every=4)
    await exporter.consume(batch)
    await exporter.shutdown()
    assert len(collector.calls) == 3  # one PostSpans per resource
    check_request(batch.message, collector.batches)
    assert all(c.metadata["x-tenant"] == "ml-team" for c in collector.calls)
    assert metric(exporter._settings, SENT, signal="traces") == 90
    await exporter.shutdown()  # idempotent


async def test_receiver_bytes_are_parsed_and_translated(collector: Collector) -> None:
    original = make_traces(5, seed=2)
    batch = Batch(Signal.TRACES, data=original.serialize())
    exporter = make_exporter(inline(collector.port, compression="none"))
    await exporter.start()
    await exporter.consume(batch)
    await exporter.shutdown()
    check_request(original.message, collector.batches)


async def test_unavailable_is_retried_then_delivered_without_duplicates(collector: Collector) -> None:
    # Resource 1 goes through, resource 2 is refused twice: the retries send only resource 2.
    collector.script = [None, fail(grpc.StatusCode.UNAVAILABLE, "overloaded"),
                        fail(grpc.StatusCode.UNAVAILABLE, "still overloaded")]
    clock = FakeClock()
    exporter = make_exporter(inline(collector.port), clock)
    await exporter.start()
    batch = make_traces(4, resources=2, seed=3)
    await exporter.consume(batch)
    await exporter.shutdown()
    assert len(collector.calls) == 4
    assert [c.accepted for c in collector.calls] == [True, False, False, True]
    check_request(batch.message, collector.batches)  # each resource exactly once
    settings = exporter._settings
    assert len(clock.sleeps) == 2 and metric(settings, RETRIES, signal="traces") == 2
    assert metric(settings, SENT, signal="traces") == 8
    assert not exporter._progress


async def test_invalid_argument_is_permanent_and_counted(collector: Collector) -> None:
    collector.script = [fail(grpc.StatusCode.INVALID_ARGUMENT, "bad span")]
    exporter = make_exporter(inline(collector.port))
    await exporter.start()
    with pytest.raises(PermanentError, match="bad span"):
        await exporter.consume(make_traces(6, seed=4))
    await exporter.shutdown()
    assert len(collector.calls) == 1  # never retried
    settings = exporter._settings
    assert metric(settings, FAILED, signal="traces", reason="permanent") == 6
    assert metric(settings, SENT, signal="traces") == 0


async def test_a_resource_refused_permanently_does_not_stop_the_others(collector: Collector) -> None:
    collector.script = [None, fail(grpc.StatusCode.INVALID_ARGUMENT, "bad batch"), None]
    exporter = make_exporter(grpc_config(collector.port))
    await exporter.start()
    batch = make_traces(5, resources=3, seed=5)
    await exporter.consume(batch)
    await exporter.shutdown()
    assert [c.accepted for c in collector.calls] == [True, False, True]
    assert [b.process.tags[0].v_str for b in collector.batches] == ["model-server-0", "model-server-2"]
    settings = exporter._settings
    assert metric(settings, FAILED, signal="traces", reason="partial") == 5
    assert metric(settings, SENT, signal="traces") == 10


async def test_retries_exhausted_forget_the_progress(collector: Collector) -> None:
    collector.script = [fail(grpc.StatusCode.UNAVAILABLE, "down")] * 50
    exporter = make_exporter(inline(collector.port, retry_on_failure={"max_elapsed_time": "20s"}))
    await exporter.start()
    with pytest.raises(RetryableError):
        await exporter.consume(make_traces(3, seed=6))
    await exporter.shutdown()
    assert metric(exporter._settings, FAILED, signal="traces", reason="retries_exhausted") == 3
    assert len(exporter._progress) <= 1  # kept only until evicted; bounded


async def test_progress_of_abandoned_batches_is_bounded() -> None:
    exporter = make_exporter(inline(1, retry_on_failure={"enabled": False}, timeout="1s"))
    await exporter.start()
    for seed in range(exporter._progress_limit + 10):
        with pytest.raises(RetryableError):
            await exporter.consume(make_traces(1, seed=seed))
    assert len(exporter._progress) == exporter._progress_limit
    await exporter.shutdown()


async def test_tls_with_a_private_ca() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    credentials = grpc.ssl_server_credentials([(cert.private_key_pem.bytes(), cert.cert_chain_pems[0].bytes())])
    collector = await Collector().start(credentials)
    try:
        good = make_exporter(make_config(protocol="grpc", endpoint=f"https://127.0.0.1:{collector.port}",
                                         tls={"ca_pem": ca.cert_pem.bytes().decode()},
                                         sending_queue={"enabled": False}))
        await good.start()
        await good.consume(make_traces(2))
        await good.shutdown()
        assert len(collector.spans) == 2

        untrusted = make_exporter(make_config(protocol="grpc", endpoint=f"127.0.0.1:{collector.port}",
                                              sending_queue={"enabled": False},
                                              retry_on_failure={"enabled": False}, timeout="2s"))
        await untrusted.start()
        with pytest.raises(RetryableError):
            await untrusted.consume(make_traces(2))
        await untrusted.shutdown()
        assert len(collector.calls) == 1
    finally:
        await collector.stop()


async def test_missing_ca_file_fails_start(tmp_path: Any) -> None:
    exporter = make_exporter(make_config(protocol="grpc", endpoint="j", tls={"ca_file": str(tmp_path / "no.pem")}))
    with pytest.raises(StartError, match="cannot read a TLS file"):
        await exporter.start()
    await exporter.shutdown()


async def test_send_before_start_is_retryable() -> None:
    exporter = make_exporter(inline(1, retry_on_failure={"enabled": False}))
    with pytest.raises(RetryableError, match="not started"):
        await exporter._send(make_traces(1))
