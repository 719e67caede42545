"""Factories: how the registry knows a component type.

One factory per kind, each a frozen record: the YAML type name (plus aliases), the Config
Struct users write, the signals it supports with their stability, and `create`. The config
layer converts a component's YAML section into `config_type` (unknown keys rejected) before
`create` is ever called.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import msgspec

from agent.component.ids import Kind, Stability
from agent.component.protocols import Connector, Consumer, Exporter, Processor, Receiver
from agent.component.settings import Settings
from agent.model import Signal

ConfigT = Any  # a msgspec.Struct instance of the factory's config_type


def _no_addresses(config: ConfigT) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True)
class _FactoryBase:
    type: str
    config_type: builtins.type[msgspec.Struct]
    description: str
    aliases: tuple[str, ...] = ()
    #: `(label, host:port)` pairs the component listens on, for the "two receivers on one
    #: port" check. Label names the protocol (`grpc`, `http`, ...).
    listen_addresses: Callable[[ConfigT], list[tuple[str, str]]] = field(default=_no_addresses)


@dataclass(frozen=True)
class ReceiverFactory(_FactoryBase):
    signals: Mapping[Signal, Stability] = field(default_factory=dict)
    #: create(settings, config, {signal: consumer}) — one instance per receiver id, given a
    #: consumer for each signal that some pipeline uses it for.
    create: Callable[[Settings, ConfigT, Mapping[Signal, Consumer]], Receiver] | None = None
    kind: Kind = Kind.RECEIVER


@dataclass(frozen=True)
class ProcessorFactory(_FactoryBase):
    signals: Mapping[Signal, Stability] = field(default_factory=dict)
    #: create(settings, config, signal, next) — one instance per (pipeline, processor id).
    create: Callable[[Settings, ConfigT, Signal, Consumer], Processor] | None = None
    kind: Kind = Kind.PROCESSOR


@dataclass(frozen=True)
class ExporterFactory(_FactoryBase):
    signals: Mapping[Signal, Stability] = field(default_factory=dict)
    #: create(settings, config) — one instance per exporter id, fed by every pipeline naming it.
    create: Callable[[Settings, ConfigT], Exporter] | None = None
    kind: Kind = Kind.EXPORTER


@dataclass(frozen=True)
class ConnectorFactory(_FactoryBase):
    #: (input signal, output signal) → stability.
    signals: Mapping[tuple[Signal, Signal], Stability] = field(default_factory=dict)
    #: create(settings, config, input_signal, {output signal: consumer}).
    create: Callable[[Settings, ConfigT, Signal, Mapping[Signal, Consumer]], Connector] | None = None
    kind: Kind = Kind.CONNECTOR


Factory = Union[ReceiverFactory, ProcessorFactory, ExporterFactory, ConnectorFactory]
