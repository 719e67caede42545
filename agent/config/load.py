"""Loading a configuration: read → parse → deep-merge → expand `${env:...}` → validate.

Every problem is collected and raised once as `ConfigError`, sorted by where it appears in
the sources. A source that cannot be read or parsed stops there (the rest would only echo
it): those problems name the file and line instead of a config path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agent.config.document import Document, SourceError, merge, parse
from agent.config.env import expand
from agent.config.model import AgentConfig
from agent.config.problems import Problem, in_order
from agent.config.validate import build
from agent.errors import ConfigError

if TYPE_CHECKING:
    from agent.components import Registry


def load(
    paths: Sequence[str | os.PathLike[str]],
    registry: Registry,
    *,
    environ: Mapping[str, str] | None = None,
) -> AgentConfig:
    """Load YAML files, later ones deep-merged over earlier ones; raises ConfigError."""
    if not paths:
        raise ConfigError(["no configuration file was given"])
    sources: list[tuple[str, str]] = []
    unreadable: list[str] = []
    for path in paths:
        name = os.fspath(path)
        try:
            with open(name, encoding="utf-8") as f:
                sources.append((name, f.read()))
        except UnicodeDecodeError as err:
            unreadable.append(f"{name}: the file is not UTF-8 text (byte {err.start})")
        except OSError as err:
            unreadable.append(f"{name}: cannot read the file: {err.strerror or err}")
    if unreadable:
        raise ConfigError(unreadable)
    return _load(sources, registry, environ)


def load_text(*texts: str, registry: Registry, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Load YAML strings (named `<config 1>`, ... in problems) as `load` loads files."""
    if not texts:
        raise ConfigError(["no configuration was given"])
    return _load([(f"<config {i}>", t) for i, t in enumerate(texts, start=1)], registry, environ)


def load_dict(raw: Mapping[str, Any], registry: Registry) -> AgentConfig:
    """Validate plain data whose `${env:...}` references are already expanded."""
    config, problems = build(raw, registry)
    if config is None:
        raise ConfigError([str(p) for p in problems.items])
    return config


def _load(sources: list[tuple[str, str]], registry: Registry, environ: Mapping[str, str] | None) -> AgentConfig:
    documents: list[Document] = []
    problems: list[Problem] = []
    broken: list[str] = []
    for index, (name, text) in enumerate(sources):
        try:
            doc, found = parse(text, name, index)
        except SourceError as err:
            broken.append(str(err))
            continue
        documents.append(doc)
        problems.extend(found)
    if broken:
        raise ConfigError(broken)
    merged = merge(documents)
    env = os.environ if environ is None else environ
    data, found = expand(merged.data, env, lambda path: merged.quoted.get(path, False))
    problems.extend(found)
    config, checked = build(data, registry)
    problems.extend(checked.items)
    if config is None or problems:
        raise ConfigError(in_order(problems, merged.positions))
    return config
