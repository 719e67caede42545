"""Plain config data → `AgentConfig`: the shape, each component's options, the service section.

Every problem is collected; an `AgentConfig` comes back only when there are none. The
pipeline cross-checks live in `agent.config.pipelines`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from agent.component import ComponentID, Kind
from agent.config.convert import convert
from agent.config.model import AgentConfig, ComponentConfig, ServiceSection
from agent.config.pipelines import Declared, check_pipelines, split_address
from agent.config.problems import Path, Problems, describe, format_path, segment

if TYPE_CHECKING:
    from agent.components import Registry

_COMPONENT_KINDS = (Kind.RECEIVER, Kind.PROCESSOR, Kind.EXPORTER, Kind.CONNECTOR, Kind.EXTENSION)
SECTIONS = (*(k.section for k in _COMPONENT_KINDS), "service")


def build(raw: Any, registry: Registry) -> tuple[AgentConfig | None, Problems]:
    """The config, or None and every problem found."""
    problems = Problems()
    if not isinstance(raw, Mapping):
        problems.add((), f"the top level must be a mapping of sections, got {describe(raw)}")
        return None, problems
    declared: dict[Kind, Declared] = {k: {} for k in _COMPONENT_KINDS}
    configs: dict[Kind, dict[ComponentID, ComponentConfig]] = {k: {} for k in _COMPONENT_KINDS}
    for key, value in raw.items():
        kind = next((k for k in _COMPONENT_KINDS if k.section == key), None)
        if kind is not None:
            _section(kind, value, registry, declared[kind], configs[kind], problems)
        elif key != "service":
            problems.add((segment(key),), f"unknown section; the sections are {_listing(SECTIONS)}")
    _ambiguous_connectors(declared, problems)
    raw_service = raw.get("service")
    service = _service(raw_service, declared[Kind.EXTENSION], problems)
    raw_pipelines = raw_service.get("pipelines") if isinstance(raw_service, Mapping) else None
    pipelines, sections = check_pipelines(raw_pipelines, declared, configs, service, problems)
    if service is not None:
        service = msgspec.structs.replace(service, pipelines=sections)
    if problems or service is None:
        return None, problems
    return (
        AgentConfig(
            receivers=configs[Kind.RECEIVER],
            processors=configs[Kind.PROCESSOR],
            exporters=configs[Kind.EXPORTER],
            connectors=configs[Kind.CONNECTOR],
            extensions=configs[Kind.EXTENSION],
            pipelines=pipelines,
            service=service,
        ),
        problems,
    )


def _listing(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def _section(kind: Kind, value: Any, registry: Registry, declared: Declared,
             configs: dict[ComponentID, ComponentConfig], problems: Problems) -> None:
    path: Path = (kind.section,)
    if value is None:
        return
    if not isinstance(value, Mapping):
        problems.add(path, f"expected a mapping of {kind.value} ids to their options, got {describe(value)}")
        return
    for key, options in value.items():
        cpath = (*path, segment(key))
        try:
            cid = ComponentID.parse(key)
        except ValueError as err:
            problems.add(cpath, str(err))
            continue
        if cid in declared:
            problems.add(cpath, f'the id "{cid}" is already used by {format_path(declared[cid])}')
            continue
        declared[cid] = cpath
        factory = registry.get(kind, cid.type)
        if factory is None:
            problems.add(cpath, _unknown_type(kind, cid.type, registry))
            continue
        config, problem = convert(options, factory.config_type, cpath)
        if problem is not None:
            problems.items.append(problem)
            continue
        configs[cid] = ComponentConfig(id=cid, kind=kind, factory=factory, config=config)


def _unknown_type(kind: Kind, type_name: str, registry: Registry) -> str:
    known = registry.names(kind)
    if kind is Kind.EXTENSION:
        text = (
            f'the Collector\'s extension "{type_name}" is not supported by Flowglass; Flowglass '
            "itself serves /healthz, /readyz and /metrics on service.telemetry.metrics.address"
        )
        return text + (f" (extensions here: {', '.join(known)})" if known else "")
    text = f'unknown {kind.value} type "{type_name}"'
    text += f" (known: {', '.join(known)})" if known else f" (no {kind.value} types are registered)"
    for other in _COMPONENT_KINDS:
        if other is not kind and registry.get(other, type_name) is not None:
            text += f'; "{type_name}" is a{"n" if other.value[0] in "aeiou" else ""} {other.value}, configure it under {other.section}'
            break
    return text


def _ambiguous_connectors(declared: Mapping[Kind, Declared], problems: Problems) -> None:
    """A connector id must not also be a receiver or exporter id: pipelines could not tell them apart."""
    for cid, path in declared[Kind.CONNECTOR].items():
        for kind in (Kind.RECEIVER, Kind.EXPORTER):
            if cid in declared[kind]:
                problems.add(path, f'the id "{cid}" is also used by {format_path(declared[kind][cid])}; '
                                   "pipelines could not tell them apart")


def _service(raw: Any, extensions: Declared, problems: Problems) -> ServiceSection | None:
    """The service section without its pipelines (checked apart). Each option is converted
    alone first, so that every bad option is reported, not just the first."""
    path: Path = ("service",)
    if raw is None:
        return ServiceSection()
    if not isinstance(raw, Mapping):
        problems.add(path, f"expected a mapping, got {describe(raw)}")
        return None
    rest = {k: v for k, v in raw.items() if k != "pipelines"}
    found = len(problems)
    for key, value in rest.items():
        part, problem = convert({key: value}, ServiceSection, path)
        if problem is not None:
            problems.items.append(problem)
        else:
            _check_service_option(key, part, extensions, problems)
    if len(problems) > found:
        return None
    service, problem = convert(rest, ServiceSection, path)
    if problem is not None:
        problems.items.append(problem)
        return None
    assert isinstance(service, ServiceSection)
    return service


def _check_service_option(key: Any, part: ServiceSection, extensions: Declared, problems: Problems) -> None:
    if key == "workers" and part.workers < 1:
        problems.add(("service", "workers"), f"must be at least 1, got {part.workers}")
    elif key == "telemetry":
        address = part.telemetry.metrics.address
        if address and split_address(address) is None:
            problems.add(("service", "telemetry", "metrics", "address"),
                         f'expected host:port (or "" to turn it off), got {address!r}')
    elif key == "extensions":
        _service_extensions(part, extensions, problems)


def _service_extensions(service: ServiceSection, declared: Declared, problems: Problems) -> None:
    seen: set[ComponentID] = set()
    for i, text in enumerate(service.extensions):
        path: Path = ("service", "extensions", i)
        try:
            eid = ComponentID.parse(text)
        except ValueError as err:
            problems.add(path, str(err))
            continue
        if eid in seen:
            problems.add(path, f'extension "{eid}" is listed twice')
        elif eid not in declared:
            problems.add(path, f'extension "{eid}" is not configured')
        seen.add(eid)
