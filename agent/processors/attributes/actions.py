"""The `attributes` actions, compiled: shared by the `attributes` and `resource` processors.

`Actions(configs)` turns a list of `ActionConfig` into one function `apply(kvs)` that edits
an OTLP attribute list in place; `prepare(client)` reads the `from_context` values of a
batch first. `hash_value`, `convert_value` and `context_value` are the Collector's rules
for `hash`, `convert` and `from_context`, usable alone.
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from agent.model import ClientInfo
from agent.model.attrs import KeyValues, as_string, assign

if TYPE_CHECKING:
    from agent.processors.attributes import ActionConfig

__all__ = ["Actions", "compile_pattern", "context_value", "convert_value", "hash_value", "value_template"]


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled; ValueError with a sentence when it is not a valid regex."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None


# -- compiled actions --------------------------------------------------------------------
#
# The action list compiles to one generated Python function `apply(kvs)` (as `dataclasses`
# and `attrs` generate methods): it takes the item's KeyValue wrappers and their keys once,
# then runs every action inline, so that lookups are list searches in C and no per-action
# call or closure lookup is paid. This fusion measured ~30% faster than one closure per
# action on the benchmark; the processor's throughput target depends on it. Configured
# keys and values reach the generated code only as names bound in its namespace, never as
# source text. Rarer cases (patterns, extract, from_attribute, composite values) call
# small helpers that take `(kvs, items, keys)` and keep the three lists in step.

_Helper = Callable[[KeyValues, list[Any], list[str]], None]
_SCALAR_FIELDS = {bool: "bool_value", int: "int_value", float: "double_value", str: "string_value"}


def value_template(value: Any) -> AnyValue:
    """The configured value as an AnyValue; ValueError when it cannot be one."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise ValueError(f"value {value} does not fit a 64-bit integer")
    template = AnyValue()
    try:
        assign(template, value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot use {value!r} as an attribute value: {exc}") from None
    return template


def context_value(client: ClientInfo, name: str) -> str | None:
    """The value `from_context: name` reads from a request's client info, or None."""
    if name == "client.address":
        return client.address or None
    header = name[len("metadata."):] if name.startswith("metadata.") else name
    values = client.get(header)
    return ";".join(values) if values else None


def _target(kvs: KeyValues, items: list[Any], keys: list[str], key: str, insert_ok: bool, update_ok: bool) -> Any:
    """The value to write for an insert/update/upsert of `key`, or None when not to write."""
    if key in keys:
        return items[keys.index(key)].value if update_ok else None
    if not insert_ok:
        return None
    kv = kvs.add()
    kv.key = key
    keys.append(key)
    items.append(kv)
    return kv.value


def _copy_helper(config: ActionConfig, default: AnyValue | None) -> _Helper:
    key, source_key = config.key, config.from_attribute
    insert_ok = config.action in ("insert", "upsert")
    update_ok = config.action in ("update", "upsert")

    def copy_attribute(kvs: KeyValues, items: list[Any], keys: list[str]) -> None:
        if source_key in keys:
            if source_key == key:
                return  # copying a value onto itself changes nothing
            source = items[keys.index(source_key)].value
            target = _target(kvs, items, keys, key, insert_ok, update_ok)
            if target is not None:
                target.CopyFrom(source)
        elif default is not None:
            target = _target(kvs, items, keys, key, insert_ok, update_ok)
            if target is not None:
                target.CopyFrom(default)

    return copy_attribute


def _pattern_helper(pattern: str, skip: str, hashing: bool) -> _Helper:
    search = compile_pattern(pattern).search

    def by_pattern(kvs: KeyValues, items: list[Any], keys: list[str]) -> None:
        if hashing:
            for i, name in enumerate(keys):
                if name != skip and search(name) is not None:
                    hash_value(items[i].value)
            return
        for i in range(len(keys) - 1, -1, -1):
            if search(keys[i]) is not None:
                del kvs[i]
                del keys[i]
                del items[i]

    return by_pattern


def _extract_helper(config: ActionConfig) -> _Helper:
    regex = compile_pattern(config.pattern)
    key = config.key
    search = regex.search
    names = sorted(regex.groupindex, key=regex.groupindex.__getitem__)  # in group order

    def extract(kvs: KeyValues, items: list[Any], keys: list[str]) -> None:
        if key not in keys:
            return
        value = items[keys.index(key)].value
        if value.WhichOneof("value") != "string_value":
            return
        m = search(value.string_value)
        if m is None:
            return
        for name, found in zip(names, m.groups(), strict=True):
            target = _target(kvs, items, keys, name, True, True)
            target.string_value = found if found is not None else ""

    return extract


class _Source:
    """Generated source plus the namespace its names refer to."""

    def __init__(self) -> None:
        self.lines = ["def apply(kvs):", "    items = list(kvs)", "    keys = list(map(_key, items))"]
        self.ns: dict[str, Any] = {"_key": operator.attrgetter("key"), "_target": _target, "_hash": hash_value, "_convert": convert_value,
                                   "_as_string": as_string, "_sha256": hashlib.sha256}

    def bind(self, name: str, value: Any) -> str:
        self.ns[name] = value
        return name

    def emit(self, *lines: str) -> None:
        self.lines.extend("    " + line for line in lines)


def _emit_write(src: _Source, k: str, write: str, insert_ok: bool, update_ok: bool, indent: str = "") -> None:
    """Lines writing `<value>{write}` to attribute `k` as insert/update/upsert allow."""
    add = ["kv = kvs.add()", f"kv.key = {k}", f"keys.append({k})", "items.append(kv)", f"kv.value{write}"]
    if insert_ok and update_ok:
        lines = [f"if {k} in keys:", f"    items[keys.index({k})].value{write}", "else:", *("    " + a for a in add)]
    elif update_ok:
        lines = [f"if {k} in keys:", f"    items[keys.index({k})].value{write}"]
    else:
        lines = [f"if {k} not in keys:", *("    " + a for a in add)]
    src.emit(*(indent + line for line in lines))


def _emit_set(src: _Source, n: int, c: ActionConfig, context: dict[str, str | None]) -> None:
    k = src.bind(f"k{n}", c.key)
    insert_ok = c.action in ("insert", "upsert")
    update_ok = c.action in ("update", "upsert")
    default = value_template(c.default_value) if c.default_value is not None else None
    if c.value is not None:
        field = _SCALAR_FIELDS.get(type(c.value))
        v = src.bind(f"v{n}", getattr(value_template(c.value), field) if field else value_template(c.value))
        _emit_write(src, k, f".{field} = {v}" if field else f".CopyFrom({v})", insert_ok, update_ok)
        return
    if c.from_attribute:
        h = src.bind(f"h{n}", _copy_helper(c, default))
        src.emit(f"{h}(kvs, items, keys)")
        return
    ctx = src.bind(f"ctx{n}", context)
    name = src.bind(f"c{n}", c.from_context)
    src.emit(f"text = {ctx}[{name}]", "if text is not None:")
    _emit_write(src, k, ".string_value = text", insert_ok, update_ok, "    ")
    if default is not None:
        d = src.bind(f"d{n}", default)
        src.emit("else:")
        _emit_write(src, k, f".CopyFrom({d})", insert_ok, update_ok, "    ")


def _emit(src: _Source, n: int, c: ActionConfig, context: dict[str, str | None]) -> None:
    if c.action in ("insert", "update", "upsert"):
        _emit_set(src, n, c, context)
        return
    k = src.bind(f"k{n}", c.key)
    if c.action in ("delete", "hash"):
        if c.key and c.action == "delete":
            src.emit(f"while {k} in keys:", f"    i = keys.index({k})", "    del kvs[i]", "    del keys[i]",
                     "    del items[i]")
        elif c.key:
            # Strings (the usual case) hashed inline; other types through `hash_value`.
            src.emit(
                f"if {k} in keys:",
                f"    val = items[keys.index({k})].value",
                "    if val.WhichOneof('value') == 'string_value':",
                "        text = val.string_value",
                "        val.string_value = _sha256(text.encode()).hexdigest() if text else ''",
                "    else:",
                "        _hash(val)",
            )
        if c.pattern:
            h = src.bind(f"h{n}", _pattern_helper(c.pattern, c.key, c.action == "hash"))
            src.emit(f"{h}(kvs, items, keys)")
    elif c.action == "extract":
        h = src.bind(f"h{n}", _extract_helper(c))
        src.emit(f"{h}(kvs, items, keys)")
    elif c.converted_type == "string":
        # The common case (numbers to text) inline; the rest through the general function.
        src.emit(
            f"if {k} in keys:",
            f"    val = items[keys.index({k})].value",
            "    kind = val.WhichOneof('value')",
            "    if kind == 'int_value':",
            "        val.string_value = str(val.int_value)",
            "    elif kind != 'string_value':",
            "        val.string_value = _as_string(val)",
        )
    else:
        to = src.bind(f"t{n}", c.converted_type)
        src.emit(f"if {k} in keys:", f"    _convert(items[keys.index({k})].value, {to})")


_PACK_INT = struct.Struct("<q").pack
_PACK_DOUBLE = struct.Struct("<d").pack
_SHA256 = hashlib.sha256


def hash_value(value: AnyValue) -> None:
    """Replace `value` with the hex SHA-256 of its bytes, as the Collector hashes.

    Strings hash their UTF-8 bytes, booleans one byte (1 or 0), integers and doubles their
    8 little-endian bytes; any other value (and the empty string) becomes "".
    """
    kind = value.WhichOneof("value")
    data: bytes
    if kind == "string_value":
        data = value.string_value.encode("utf-8")
    elif kind == "int_value":
        data = _PACK_INT(value.int_value)
    elif kind == "double_value":
        data = _PACK_DOUBLE(value.double_value)
    elif kind == "bool_value":
        data = b"\x01" if value.bool_value else b"\x00"
    else:
        data = b""
    value.string_value = _SHA256(data).hexdigest() if data else ""


_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(
    r"[+-]?(?:[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.I
)


def convert_value(value: AnyValue, to: str) -> bool:
    """Convert in place to `int`, `double` or `string` as the Collector does; False if it cannot."""
    kind = value.WhichOneof("value")
    if to == "string":
        if kind == "int_value":
            value.string_value = str(value.int_value)
        elif kind != "string_value":
            value.string_value = as_string(value)
        return True
    if to == "int":
        if kind == "int_value":
            return True
        if kind == "double_value":
            x = value.double_value
            if math.isnan(x) or math.isinf(x):
                return False
            value.int_value = max(-(2**63), min(2**63 - 1, int(x)))
            return True
        if kind == "bool_value":
            value.int_value = 1 if value.bool_value else 0
            return True
        if kind == "string_value":
            s = value.string_value
            if _INT_TEXT.fullmatch(s) and -(2**63) <= (n := int(s)) < 2**63:
                value.int_value = n
                return True
        return False
    # double
    if kind == "double_value":
        return True
    if kind == "int_value":
        value.double_value = float(value.int_value)
        return True
    if kind == "bool_value":
        value.double_value = 1.0 if value.bool_value else 0.0
        return True
    if kind == "string_value":
        s = value.string_value
        if _FLOAT_TEXT.fullmatch(s):
            value.double_value = float(s)
            return True
    return False


class Actions:
    """Compiled actions; `apply(kvs)` runs them in order on one attribute list.

    Call `prepare(client)` once per batch before applying (it reads `from_context` values).
    `source` holds the generated function's text, for debugging.
    """

    def __init__(self, configs: Sequence[ActionConfig]) -> None:
        self._context_names = sorted({c.from_context for c in configs if c.from_context})
        self._context: dict[str, str | None] = dict.fromkeys(self._context_names)
        src = _Source()
        for n, c in enumerate(configs):
            _emit(src, n, c, self._context)
        self.source = "\n".join(src.lines) + "\n"
        code = compile(self.source, f"<attributes actions {id(self):x}>", "exec")
        exec(code, src.ns)  # generated from the action list only, see above
        self.apply: Callable[[KeyValues], None] = src.ns["apply"]

    def prepare(self, client: ClientInfo) -> None:
        for name in self._context_names:
            self._context[name] = context_value(client, name)
