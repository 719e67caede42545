"""`service.pipelines` and the checks across sections.

Each pipeline needs a receiver and an exporter; every id it lists must be configured in the
right section (receivers and exporters may be connectors), support the pipeline's signal, and
appear once. A connector must be used on both sides, and for every signal A of a pipeline
that exports to it and every signal B of a pipeline that receives from it, it must support
(A, B): the graph hands a connector every pipeline that receives from it. Connectors must not
form a cycle. Two receivers used by pipelines (or the agent's own telemetry address) must not
listen on the same port of overlapping hosts. A configured component no pipeline uses is
fine: the graph builds only what pipelines use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.component import ComponentID, ConnectorFactory, Kind, PipelineID
from agent.config.convert import convert
from agent.config.model import ComponentConfig, PipelineConfig, PipelineSection, ServiceSection
from agent.config.problems import Path, Problems, describe, segment
from agent.model import Signal

#: Where each configured id was written, per section.
Declared = dict[ComponentID, Path]

_PIPELINES: Path = ("service", "pipelines")
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
_ROLE_KINDS = {
    "receivers": (Kind.RECEIVER, Kind.CONNECTOR),
    "processors": (Kind.PROCESSOR,),
    "exporters": (Kind.EXPORTER, Kind.CONNECTOR),
}


@dataclass
class _Use:
    """A connector named in a pipeline: which pipeline, and where."""

    pipeline: PipelineID
    path: Path


def check_pipelines(
    raw: Any,
    declared: Mapping[Kind, Declared],
    configs: Mapping[Kind, Mapping[ComponentID, ComponentConfig]],
    service: ServiceSection | None,
    problems: Problems,
) -> tuple[dict[PipelineID, PipelineConfig], dict[str, PipelineSection]]:
    """Pipelines by id (and as written), checked against the configured components."""
    pipelines: dict[PipelineID, PipelineConfig] = {}
    sections: dict[str, PipelineSection] = {}
    if raw is None or (isinstance(raw, Mapping) and not raw):
        problems.add(_PIPELINES, "at least one pipeline is required")
        return pipelines, sections
    if not isinstance(raw, Mapping):
        problems.add(_PIPELINES, f"expected a mapping of pipeline ids to pipelines, got {describe(raw)}")
        return pipelines, sections
    as_exporter: dict[ComponentID, list[_Use]] = {}
    as_receiver: dict[ComponentID, list[_Use]] = {}
    written: dict[PipelineID, Path] = {}
    for key, body in raw.items():
        path = (*_PIPELINES, segment(key))
        try:
            pid = PipelineID.parse(key)
        except ValueError as err:
            problems.add(path, str(err))
            continue
        if pid in written:
            problems.add(path, f'the pipeline id "{pid}" is already used by {".".join(map(str, written[pid]))}')
            continue
        written[pid] = path
        section, problem = convert(body, PipelineSection, path)
        if problem is not None:
            problems.items.append(problem)
            continue
        assert isinstance(section, PipelineSection)
        sections[segment(key)] = section
        ids = {
            role: _references(role, getattr(section, role), pid, path, declared, configs,
                              as_exporter, as_receiver, problems)
            for role in _ROLE_KINDS
        }
        for role in ("receivers", "exporters"):
            if not getattr(section, role):
                problems.add((*path, role), f"at least one {role[:-1]} is required")
        pipelines[pid] = PipelineConfig(pid, ids["receivers"], ids["processors"], ids["exporters"])
    _check_connectors(as_exporter, as_receiver, configs[Kind.CONNECTOR], problems)
    _check_cycles(pipelines, as_exporter, as_receiver, written, problems)
    _check_ports(pipelines, declared[Kind.RECEIVER], configs[Kind.RECEIVER], service, problems)
    return pipelines, sections


def _references(
    role: str,
    texts: list[str],
    pid: PipelineID,
    path: Path,
    declared: Mapping[Kind, Declared],
    configs: Mapping[Kind, Mapping[ComponentID, ComponentConfig]],
    as_exporter: dict[ComponentID, list[_Use]],
    as_receiver: dict[ComponentID, list[_Use]],
    problems: Problems,
) -> tuple[ComponentID, ...]:
    """The ids of one list of a pipeline, each checked; problems for the bad ones."""
    noun = role[:-1]
    out: list[ComponentID] = []
    for i, text in enumerate(texts):
        ipath = (*path, role, i)
        try:
            cid = ComponentID.parse(text)
        except ValueError as err:
            problems.add(ipath, str(err))
            continue
        if cid in out:
            problems.add(ipath, f'{noun} "{cid}" is listed twice in this pipeline')
            continue
        kind = next((k for k in _ROLE_KINDS[role] if cid in declared[k]), None)
        if kind is None:
            problems.add(ipath, f'{noun} "{cid}" is not configured' + _elsewhere(cid, role, declared))
            continue
        out.append(cid)
        cc = configs[kind].get(cid)
        if cc is None:
            continue  # its own section already has a problem
        if kind is Kind.CONNECTOR:
            uses = as_exporter if role == "exporters" else as_receiver
            uses.setdefault(cid, []).append(_Use(pid, ipath))
        elif pid.signal not in cc.factory.signals:
            supported = ", ".join(s.value for s in cc.factory.signals) or "nothing"  # type: ignore[union-attr]
            problems.add(ipath, f'{noun} "{cid}" does not support {pid.signal.value} (it supports {supported})')
    return tuple(out)


def _elsewhere(cid: ComponentID, role: str, declared: Mapping[Kind, Declared]) -> str:
    for kind in Kind:
        if kind not in _ROLE_KINDS[role] and cid in declared.get(kind, {}):
            return f" (there is {kind.value} \"{cid}\", but a pipeline's {role} cannot name a {kind.value})"
    return ""


def _pair(a: Signal, b: Signal) -> str:
    return f"{a.value} to {b.value}"


def _check_connectors(
    as_exporter: Mapping[ComponentID, list[_Use]],
    as_receiver: Mapping[ComponentID, list[_Use]],
    configs: Mapping[ComponentID, ComponentConfig],
    problems: Problems,
) -> None:
    for cid in (*as_exporter, *(c for c in as_receiver if c not in as_exporter)):
        exports, receives = as_exporter.get(cid, []), as_receiver.get(cid, [])
        if not receives:
            problems.add(exports[0].path, f'connector "{cid}" is used as an exporter but no pipeline '
                                          "lists it as a receiver")
            continue
        if not exports:
            problems.add(receives[0].path, f'connector "{cid}" is used as a receiver but no pipeline '
                                           "lists it as an exporter")
            continue
        factory = configs[cid].factory
        assert isinstance(factory, ConnectorFactory)
        supported = ", ".join(_pair(a, b) for a, b in factory.signals) or "nothing"
        reported: set[tuple[Signal, Signal]] = set()
        for out_use in receives:
            for in_use in exports:
                pair = (in_use.pipeline.signal, out_use.pipeline.signal)
                if pair in factory.signals or pair in reported:
                    continue
                reported.add(pair)
                problems.add(
                    out_use.path,
                    f'connector "{cid}" cannot connect {_pair(*pair)} (pipeline "{in_use.pipeline}" '
                    f'exports to it, pipeline "{out_use.pipeline}" receives from it); it supports {supported}',
                )


def _check_cycles(
    pipelines: Mapping[PipelineID, PipelineConfig],
    as_exporter: Mapping[ComponentID, list[_Use]],
    as_receiver: Mapping[ComponentID, list[_Use]],
    written: Mapping[PipelineID, Path],
    problems: Problems,
) -> None:
    """Pipelines joined through connectors must not loop back to themselves."""
    edges: dict[PipelineID, set[PipelineID]] = {pid: set() for pid in pipelines}
    for cid, exports in as_exporter.items():
        for in_use in exports:
            edges[in_use.pipeline] |= {u.pipeline for u in as_receiver.get(cid, [])}
    done: set[PipelineID] = set()
    for start in pipelines:
        stack: list[tuple[PipelineID, list[PipelineID]]] = [(start, [start])]
        while stack:
            pid, trail = stack.pop()
            for nxt in sorted(edges[pid]):
                if nxt == start:
                    if not done & set(trail):
                        loop = " → ".join(str(p) for p in (*trail, start))
                        problems.add(written[start], f"connectors form a cycle: {loop}")
                    break
                if nxt not in trail:
                    stack.append((nxt, [*trail, nxt]))
        done.add(start)


# ---- ports -------------------------------------------------------------------------------


@dataclass
class _Listener:
    path: Path
    owner: str  # `receiver "otlp"`, or the telemetry server
    label: str
    address: str
    host: str
    port: int


def split_address(address: str) -> tuple[str, int] | None:
    """`host:port` → (host, port), brackets removed from IPv6 hosts; None when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _normal_host(host: str) -> str:
    host = host.lower()
    return "127.0.0.1" if host == "localhost" else host


def _overlap(a: _Listener, b: _Listener) -> bool:
    if a.port != b.port or a.port == 0:
        return False
    return a.host in _WILDCARD_HOSTS or b.host in _WILDCARD_HOSTS or a.host == b.host


def _check_ports(
    pipelines: Mapping[PipelineID, PipelineConfig],
    declared: Declared,
    configs: Mapping[ComponentID, ComponentConfig],
    service: ServiceSection | None,
    problems: Problems,
) -> None:
    used = {rid for p in pipelines.values() for rid in p.receivers}
    listeners: list[_Listener] = []
    for rid, cc in configs.items():
        if rid not in used:
            continue
        try:
            addresses = cc.factory.listen_addresses(cc.config)
        except ValueError as err:
            problems.add(declared[rid], str(err))
            continue
        for label, address in addresses:
            split = split_address(address)
            if split is not None:
                listeners.append(_Listener(declared[rid], f'receiver "{rid}"', label, address,
                                           _normal_host(split[0]), split[1]))
    if service is not None:
        address = service.telemetry.metrics.address
        split = split_address(address) if address else None
        if split is not None:
            listeners.append(_Listener(("service", "telemetry", "metrics", "address"),
                                       "the agent's telemetry server", "metrics", address,
                                       _normal_host(split[0]), split[1]))
    for j, later in enumerate(listeners):
        for earlier in listeners[:j]:
            if _overlap(earlier, later):
                other = "its" if earlier.owner == later.owner else earlier.owner
                problems.add(later.path, f"{later.label} address {later.address} uses the same port as "
                                         f"{other} {earlier.label} address {earlier.address}")
                break
