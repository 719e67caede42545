"""Tests over the whole registry: every component type, its config defaults and lifecycle."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import msgspec
import pytest

import agent
from agent.component import (
    ConnectorFactory,
    ExporterFactory,
    Kind,
    ProcessorFactory,
    ReceiverFactory,
    Settings,
)
from agent.components import Registry, default_registry
from agent.config.types import dec_hook
from agent.model import Signal
from agent.testing import Sink, make_batch

FACTORIES = list(default_registry())
IDS = [f"{f.kind.value}:{f.type}" for f in FACTORIES]


def test_registry_rejects_duplicate_types() -> None:
    f = FACTORIES[0]
    with pytest.raises(ValueError, match="duplicate"):
        Registry([f, f])


def test_every_factory_has_a_description_and_signals() -> None:
    for f in FACTORIES:
        assert f.description, f.type
        assert f.signals, f.type
        assert f.config_type.__struct_config__.forbid_unknown_fields, f.type  # type: ignore[attr-defined]


def _minimal_options(f: object) -> dict[str, object]:
    """Options that make each config valid with otherwise default values."""
    t = f.type
    if t == "otlp" and isinstance(f, ReceiverFactory):
        return {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}}
    if t == "memory_limiter":
        return {"check_interval": "1s", "limit_mib": 4000}
    if t == "file":
        return {"path": "__TMP__/out.jsonl"}
    if t in ("otlp_grpc", "jaeger"):
        return {"endpoint": "127.0.0.1:1", "tls": {"insecure": True}}
    if t == "otlp_http":
        return {"endpoint": "http://127.0.0.1:1"}
    if t == "elasticsearch":
        return {"endpoint": "http://127.0.0.1:1"}
    if t == "prometheusremotewrite":
        return {"endpoint": "http://127.0.0.1:1/api/v1/write"}
    if t == "prometheus" and isinstance(f, ExporterFactory):
        return {"endpoint": "127.0.0.1:0"}
    if t == "attributes":
        return {"actions": [{"key": "flowglass.test", "value": 1, "action": "upsert"}]}
    if t == "resource":
        return {"attributes": [{"key": "flowglass.test", "value": 1, "action": "upsert"}]}
    if t == "probabilistic_sampler":
        return {"sampling_percentage": 100}  # keeps every item, so the lifecycle test sees them all
    if t == "tail_sampling":
        # Keeps every trace; shutdown decides the waiting ones, so the lifecycle test sees them all.
        return {"policies": [{"name": "all", "type": "always_sample"}]}
    if t == "syslog":
        return {"protocol": "rfc5424", "tcp": {"listen_address": "127.0.0.1:0"},
                "udp": {"listen_address": "127.0.0.1:0"}}
    return {}


def _config(f: object, tmp: str) -> object:
    opts = _minimal_options(f)
    if "path" in opts:
        opts["path"] = str(opts["path"]).replace("__TMP__", tmp)
    return msgspec.convert(opts, f.config_type, dec_hook=dec_hook)


def test_unknown_option_is_rejected_by_every_config() -> None:
    for f in FACTORIES:
        opts = {**_minimal_options(f), "no_such_option_anywhere": 1}
        with pytest.raises(msgspec.ValidationError, match="unknown field"):
            msgspec.convert(opts, f.config_type, dec_hook=dec_hook)


@pytest.mark.parametrize("factory", FACTORIES, ids=IDS)
async def test_lifecycle_start_consume_shutdown_twice(factory: object, tmp_path: object) -> None:
    """Every component starts, takes a batch of each signal it supports, shuts down twice."""
    config = _config(factory, str(tmp_path))
    if isinstance(factory, ReceiverFactory):
        settings = Settings.for_test(factory.type, Kind.RECEIVER)
        comp = factory.create(settings, config, {s: Sink() for s in factory.signals})  # type: ignore[misc]
        await comp.start()
        await comp.shutdown()
        await comp.shutdown()
        return
    if isinstance(factory, ProcessorFactory):
        for signal in factory.signals:
            sink = Sink()
            settings = Settings.for_test(factory.type, Kind.PROCESSOR, pipeline=signal.value)
            comp = factory.create(settings, config, signal, sink)  # type: ignore[misc]
            await comp.start()
            await comp.consume(make_batch(signal, 5))
            await comp.shutdown()
            await comp.shutdown()
            assert sink.items == 5, f"{factory.type} lost items on {signal}"
        return
    if isinstance(factory, ExporterFactory):
        settings = Settings.for_test(factory.type, Kind.EXPORTER)
        comp = factory.create(settings, config)  # type: ignore[misc]
        await comp.start()
        if factory.type in ("debug", "file"):
            for signal in factory.signals:
                await comp.consume(make_batch(signal, 3))
        await _bounded_shutdown(comp)
        await _bounded_shutdown(comp)
        return
    assert isinstance(factory, ConnectorFactory)
    for (a, b) in factory.signals:
        settings = Settings.for_test(factory.type, Kind.CONNECTOR)
        sink = Sink()
        comp = factory.create(settings, config, a, {b: sink})  # type: ignore[misc]
        await comp.start()
        await comp.consume(make_batch(a, 3))
        await comp.shutdown()
        await comp.shutdown()


async def _bounded_shutdown(comp: object) -> None:
    import asyncio

    try:
        await asyncio.wait_for(comp.shutdown(), 3.0)  # type: ignore[attr-defined]
    except TimeoutError:
        pass


def _modules() -> list[str]:
    # agent.__main__ runs the CLI when imported; it is exercised by the CLI tests instead.
    return sorted(m.name for m in pkgutil.walk_packages(agent.__path__, "agent.")
                  if "_proto" not in m.name and m.name != "agent.__main__")


@pytest.mark.parametrize("module", _modules())
def test_every_module_imports_alone(module: str) -> None:
    """Each module imports in a fresh interpreter (no hidden import-order dependencies)."""
    r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_signal_values_are_the_yaml_words() -> None:
    assert [s.value for s in Signal] == ["traces", "metrics", "logs"]
    importlib.import_module("agent.components")
