"""YAML sources → plain data, with where each key was written; deep merge of several sources.

Scalars resolve with YAML 1.2's core schema, as the Collector's YAML library does: only
`true`/`false` are booleans (`on`, `yes`, `no` stay strings), `0755` is the decimal 755,
`0o755` and `0x1F` are octal and hex, dates stay strings. Merge keys (`<<: *anchor`) work.
A key written twice in one mapping is a problem (PyYAML would silently keep the last).

Merging (the Collector's rule): mappings merge recursively, anything else in a later source
replaces what an earlier one had.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from agent.config.problems import Path, Position, Problem, describe, segment

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars instead of YAML 1.1's."""

    yaml_implicit_resolvers: dict[Any, Any] = {}


_Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)\Z"), list("tTfF"))
_Loader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z"
    ),
    list("-+.0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)\Z"), ["~", "n", "N", ""]
)
_Loader.add_implicit_resolver(_MERGE_TAG, re.compile(r"^<<\Z"), ["<"])


def _construct_int(loader: yaml.SafeLoader, node: ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    try:
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)
    except ValueError:
        raise ConstructorError(None, None, f"{text!r} is not an integer", node.start_mark) from None


def _construct_float(loader: yaml.SafeLoader, node: ScalarNode) -> float:
    text = str(loader.construct_scalar(node))
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    if lowered == ".nan":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ConstructorError(None, None, f"{text!r} is not a number", node.start_mark) from None


_Loader.add_constructor(_INT_TAG, _construct_int)
_Loader.add_constructor(_FLOAT_TAG, _construct_float)


def parse_scalar(text: str) -> Any:
    """`text` as a YAML scalar when it is a boolean or a number, else `text` unchanged."""
    loader = _Loader("")
    try:
        tag = loader.resolve(ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
        if tag in (_INT_TAG, _FLOAT_TAG, _BOOL_TAG):
            return loader.construct_object(ScalarNode(tag, text))
    except ConstructorError:
        pass
    finally:
        loader.dispose()
    return text


@dataclass
class Document:
    """One source (or several merged): its data and where each path was first written."""

    data: dict[Any, Any] = field(default_factory=dict)
    positions: dict[Path, Position] = field(default_factory=dict)
    #: Paths of string scalars written quoted or as blocks; their `${...}` stays a string.
    quoted: dict[Path, bool] = field(default_factory=dict)


class SourceError(Exception):
    """A source that cannot be parsed at all; the message starts with `name:line:column`."""


def parse(text: str, name: str, index: int) -> tuple[Document, list[Problem]]:
    """Parse one YAML source; raises SourceError when it is not YAML or not a mapping."""
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as err:
            raise SourceError(_marked(name, err)) from None
        except yaml.YAMLError as err:
            raise SourceError(f"{name}: invalid YAML: {err}") from None
        doc = Document()
        if node is None:
            return doc, []
        walker = _Walker(loader, name, index, doc)
        if not isinstance(node, MappingNode):
            value = walker.value(node, ())
            line = node.start_mark.line + 1
            raise SourceError(
                f"{name}:{line}: the top level must be a mapping of sections (receivers, "
                f"exporters, service, ...), got {describe(value)}"
            )
        doc.data = walker.value(node, ())
        return doc, walker.problems
    finally:
        loader.dispose()


def _marked(name: str, err: yaml.MarkedYAMLError) -> str:
    mark = err.problem_mark or err.context_mark
    where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
    what = err.problem or "invalid YAML"
    if err.context:
        what = f"{what} ({err.context})"
    return f"{where}: invalid YAML: {what}"


class _Walker:
    """Builds plain data from composed nodes, recording positions and duplicate keys."""

    def __init__(self, loader: _Loader, name: str, index: int, doc: Document) -> None:
        self.loader = loader
        self.name = name
        self.index = index
        self.doc = doc
        self.problems: list[Problem] = []
        self._active: set[int] = set()

    def _at(self, path: Path, node: Node) -> None:
        self.doc.positions[path] = (self.index, node.start_mark.line + 1, node.start_mark.column + 1)

    def value(self, node: Node, path: Path) -> Any:
        if id(node) in self._active:
            self.problems.append(Problem(path, "an alias refers to a mapping or list that contains it"))
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                return self._sequence(node, path)
            return self._scalar(node, path)
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: Node, path: Path) -> Any:
        try:
            value = self.loader.construct_object(node)
        except ConstructorError as err:
            self.problems.append(Problem(path, f"cannot read this value: {err.problem}"))
            # Keep the text, so that the value is not reported again as the wrong type.
            return node.value if isinstance(node, ScalarNode) else None
        if isinstance(value, str) and isinstance(node, ScalarNode):
            self.doc.quoted[path] = node.style is not None
        return value

    def _key(self, node: ScalarNode, path: Path) -> Any:
        try:
            return self.loader.construct_object(node)
        except ConstructorError as err:
            self.problems.append(Problem(path, f"cannot read a key: {err.problem}"))
            return node.value

    def _sequence(self, node: SequenceNode, path: Path) -> list[Any]:
        if node.tag != _SEQ_TAG:
            self.problems.append(Problem(path, f"the YAML tag {node.tag} is not supported here"))
        out = []
        for i, item in enumerate(node.value):
            self._at((*path, i), item)
            out.append(self.value(item, (*path, i)))
        return out

    def _mapping(self, node: MappingNode, path: Path) -> dict[Any, Any]:
        if node.tag != _MAP_TAG:
            self.problems.append(Problem(path, f"the YAML tag {node.tag} is not supported here"))
        own = {id(k): k for k, _ in node.value if k.tag != _MERGE_TAG}
        try:
            self.loader.flatten_mapping(node)
        except ConstructorError as err:
            self.problems.append(Problem(path, f"cannot merge with '<<': {err.problem}"))
            return {}
        out: dict[Any, Any] = {}
        written: dict[Any, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                line = key_node.start_mark.line + 1
                self.problems.append(Problem(path, f"a key on line {line} is a mapping or a list; keys must be plain values"))
                continue
            key = self._key(key_node, path)
            sub = (*path, segment(key))
            first = written.get(key)
            if first is not None and id(first) in own and id(key_node) in own:
                self.problems.append(
                    Problem(
                        sub,
                        f"written twice in {self.name} (lines {first.start_mark.line + 1} and "
                        f"{key_node.start_mark.line + 1}); the last one would win",
                    )
                )
            written[key] = key_node
            self._at(sub, key_node)
            out[key] = self.value(value_node, sub)
        return out


def merge(documents: list[Document]) -> Document:
    """Deep-merge documents in order; a path's position is where it first appeared."""
    merged = Document()
    for doc in documents:
        merged.data = _merge(merged.data, doc.data)
        for path, pos in doc.positions.items():
            merged.positions.setdefault(path, pos)
        merged.quoted.update(doc.quoted)
    return merged


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        out = dict(base)
        for key, value in override.items():
            out[key] = _merge(out[key], value) if key in out else value
        return out
    return override
