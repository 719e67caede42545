"""A YAML section → its Config Struct, with msgspec's error turned into a problem with a path.

msgspec reports the first error it meets, as ``Expected `int`, got `str` - at `$.a[0].b` ``;
that becomes ``<section path>.a[0].b: expected int, got str``. An unknown field becomes
`unknown option` (with a close match when there is one), or, when the Config class lists it
in `__upstream_options__`, a sentence saying the Collector's option is not supported. A
`ValueError` from `__post_init__` or a value parser keeps its sentence. msgspec does not say
which mapping key held a bad value (`[...]`); it is found by converting one key at a time.

`__upstream_options__` is a frozenset of dotted option paths (mapping keys and list indexes
left out) on a Config Struct, relative to that Struct; a nested Struct may carry its own.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import msgspec
import msgspec.inspect as mi

from agent.config.problems import Path, Problem, segment
from agent.config.types import dec_hook

_AT = re.compile(r"(.*) - at `(\$[^`]*)`", re.DOTALL)
_AT_KEY = re.compile(r"(.*) - at `key` in `(\$[^`]*)`", re.DOTALL)
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_UNKNOWN = re.compile(r"Object contains unknown field `(.*)`", re.DOTALL)
_MISSING = re.compile(r"Object missing required field `(.*)`", re.DOTALL)
_ENUM = re.compile(r"Invalid enum value (.*)", re.DOTALL)
_EXPECTED = re.compile(r"Expected `.*", re.DOTALL)


@dataclass
class _Seg:
    kind: str  # "field", "index" or "key"
    value: Any = None
    resolved: bool = True


def convert(options: Any, config_type: type[Any], path: Path) -> tuple[Any, Problem | None]:
    """(the Struct, None) or (None, the problem); `None` options mean all defaults."""
    raw = {} if options is None else options
    try:
        return msgspec.convert(raw, config_type, dec_hook=dec_hook), None
    except msgspec.ValidationError as err:
        return None, translate(str(err), raw, config_type, path)


def translate(text: str, raw: Any, config_type: type[Any], base: Path) -> Problem:
    """msgspec's message for converting `raw` into `config_type` → a problem under `base`."""
    key_problem = _AT_KEY.fullmatch(text)
    if key_problem:
        segs = _parse_path(key_problem.group(2))
        _resolve_keys(segs, raw, config_type, text)
        return Problem((*base, *_render(segs)), f"a key is not valid: {_sentence(key_problem.group(1))}")
    m = _AT.fullmatch(text)
    message, segs = (m.group(1), _parse_path(m.group(2))) if m else (text, [])
    _resolve_keys(segs, raw, config_type, text)
    types = _types_along(config_type, segs)
    unknown = _UNKNOWN.fullmatch(message)
    if unknown:
        name = unknown.group(1)
        segs.append(_Seg("field", name))
        if _is_upstream(config_type, types, segs):
            return Problem((*base, *_render(segs)), f'the Collector\'s option "{name}" is not supported by Flowglass')
        return Problem((*base, *_render(segs)), "unknown option" + _suggestion(name, types[-1]))
    missing = _MISSING.fullmatch(message)
    if missing:
        segs.append(_Seg("field", missing.group(1)))
        return Problem((*base, *_render(segs)), "this option is required")
    enum = _ENUM.fullmatch(message)
    if enum:
        return Problem((*base, *_render(segs)), f"invalid value {enum.group(1)}{_choices(types[-1])}")
    return Problem((*base, *_render(segs)), _sentence(message))


def _sentence(message: str) -> str:
    if _EXPECTED.match(message):
        return "e" + message[1:].replace("`", "")
    return message


def _parse_path(text: str) -> list[_Seg]:
    out = []
    for m in _PATH_PART.finditer(text[1:]):
        if m.group(1) is not None:
            out.append(_Seg("field", m.group(1)))
        elif m.group(2) == "...":
            out.append(_Seg("key", None, resolved=False))
        else:
            out.append(_Seg("index", int(m.group(2))))
    return out


def _render(segs: list[_Seg]) -> Path:
    out: list[str | int] = []
    for s in segs:
        if s.kind == "index":
            out.append(int(s.value))
        elif s.resolved:
            out.append(segment(s.value))
        else:
            out.append("...")
    return tuple(out)


# ---- which mapping key held the bad value --------------------------------------------------


def _resolve_keys(segs: list[_Seg], raw: Any, config_type: type[Any], text: str) -> None:
    """Fill in `[...]` keys: the first key whose value alone reproduces the same error."""
    for i, s in enumerate(segs):
        if s.resolved:
            continue
        container = _get(raw, segs[:i])
        if not isinstance(container, dict):
            return
        for key, value in container.items():
            trial = _replace(raw, segs[:i], {key: value})
            try:
                msgspec.convert(trial, config_type, dec_hook=dec_hook)
            except msgspec.ValidationError as err:
                if str(err) == text:
                    s.value, s.resolved = key, True
                    break
        if not s.resolved:
            return


def _step(data: Any, s: _Seg) -> Any:
    if s.kind == "index":
        return data[s.value] if isinstance(data, list) and s.value < len(data) else None
    return data.get(s.value) if isinstance(data, dict) else None


def _get(data: Any, segs: list[_Seg]) -> Any:
    for s in segs:
        data = _step(data, s)
    return data


def _replace(data: Any, segs: list[_Seg], new: Any) -> Any:
    if not segs:
        return new
    head, rest = segs[0], segs[1:]
    if isinstance(data, list):
        copy_list = list(data)
        copy_list[head.value] = _replace(data[head.value], rest, new)
        return copy_list
    copy_dict = dict(data)
    copy_dict[head.value] = _replace(data[head.value], rest, new)
    return copy_dict


# ---- what the Config type says at a path ---------------------------------------------------


def _types_along(config_type: type[Any], segs: list[_Seg]) -> list[mi.Type | None]:
    """The type at each depth of `segs` (index 0: the Config itself); None once unknown."""
    try:
        current: mi.Type | None = mi.type_info(config_type)
    except Exception:  # an exotic annotation: no hints, the message still stands
        return [None] * (len(segs) + 1)
    out = [current]
    for s in segs:
        current = _type_step(current, s) if current is not None else None
        out.append(current)
    return out


def _unwrap(t: mi.Type) -> mi.Type:
    while isinstance(t, mi.Metadata):
        t = t.type
    return t


def _type_step(t: mi.Type, s: _Seg) -> mi.Type | None:
    t = _unwrap(t)
    if isinstance(t, mi.UnionType):
        for member in t.types:
            found = _type_step(member, s)
            if found is not None:
                return found
        return None
    if s.kind == "field" and isinstance(t, mi.StructType):
        for f in t.fields:
            if f.encode_name == s.value:
                return f.type
    if s.kind == "index":
        if isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
            return t.item_type
        if isinstance(t, mi.TupleType) and s.value < len(t.item_types):
            item: mi.Type = t.item_types[s.value]
            return item
    if s.kind == "key" and isinstance(t, mi.DictType):
        return t.value_type
    return None


def _struct(t: mi.Type | None) -> mi.StructType | None:
    if t is None:
        return None
    t = _unwrap(t)
    if isinstance(t, mi.StructType):
        return t
    if isinstance(t, mi.UnionType):
        for member in t.types:
            found = _struct(member)
            if found is not None:
                return found
    return None


def _is_upstream(config_type: type[Any], types: list[mi.Type | None], segs: list[_Seg]) -> bool:
    """Whether the Config, or a Struct on the way, lists this option as the Collector's."""
    candidates: list[tuple[Any, list[_Seg]]] = [(config_type, segs)]
    for depth, t in enumerate(types[1:], start=1):
        st = _struct(t)
        if st is not None:
            candidates.append((st.cls, segs[depth:]))
    for cls, rest in candidates:
        dotted = ".".join(str(s.value) for s in rest if s.kind == "field")
        if dotted in getattr(cls, "__upstream_options__", ()):
            return True
    return False


def _suggestion(name: str, t: mi.Type | None) -> str:
    st = _struct(t)
    if st is None:
        return ""
    options = [f.encode_name for f in st.fields]
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.75)
    if close:
        return f'; did you mean "{close[0]}"?'
    return f" (options here: {', '.join(options)})" if options else ""


def _choices(t: mi.Type | None) -> str:
    if t is None:
        return ""
    t = _unwrap(t)
    members = t.types if isinstance(t, mi.UnionType) else (t,)
    values: list[Any] = []
    for m in members:
        m = _unwrap(m)
        if isinstance(m, mi.LiteralType):
            values.extend(m.values)
        elif isinstance(m, mi.EnumType):
            values.extend(e.value for e in m.cls)
    if not values:
        return ""
    return " (expected one of: " + ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values) + ")"
