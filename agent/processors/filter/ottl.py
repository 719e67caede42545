"""A parser and evaluator for the subset of OTTL conditions that filters are written in.

Supported (anything else is a `ValueError` naming the unsupported part, at validation):

- paths: `attributes["k"]`, `resource.attributes["k"]`, `scope.name`, `scope.version`,
  `name`, `kind`, `status.code`, `status.message`, `duration` (end − start, ns),
  `start_time_unix_nano`, `end_time_unix_nano`, `time_unix_nano`, `severity_number`,
  `severity_text`, `body`, `unit`, `description`, and in `metrics.datapoint` `metric.name`,
  in `traces.spanevent` `span.name` / `span.attributes["k"]`;
- literals: strings, integers, floats, `true`, `false`, `nil`; enum names
  (`SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`, `SEVERITY_NUMBER_WARN`, ...);
- `==`, `!=`, `<`, `<=`, `>`, `>=`; `and`, `or`, `not`, parentheses;
- `IsMatch(value, "regex")` (the regex is searched, unanchored, as in Go).

A condition is compiled for one context. In the legacy per-context lists
(`traces.span`, ...) paths are relative to the context (`name`, `attributes["k"]`) and may
reach up with `resource.`, `scope.` (and `span.` from a span event, `metric.` from a data
point). In the `*_conditions` lists every path starts with its context (`span.name`,
`resource.attributes["k"]`, `log.body`) and the condition runs in the lowest context its
paths name, as the Collector infers it.

Comparisons follow OTTL: `nil` equals only `nil`; integers and doubles compare as numbers;
strings compare with each other; values of different types are not equal and are neither
less nor greater; booleans only compare for (in)equality.

A compiled condition is called with `(resource, scope, parent, item)`: the item of its
context, the span of a span event or the metric of a data point as `parent`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agent.model.attrs import format_double, get, to_python

__all__ = ["CONTEXTS", "Condition", "EvalError", "compile_condition", "infer_context"]

#: A compiled condition: (resource, scope, parent, item) → bool; may raise EvalError.
Condition = Callable[[Any, Any, Any, Any], bool]
_Getter = Callable[[Any, Any, Any, Any], Any]


class EvalError(Exception):
    """A condition could not be evaluated on an item (`error_mode` decides what follows)."""


#: Contexts, with the contexts each may reach with a prefix, and its parent slot (if any).
CONTEXTS: dict[str, tuple[str, ...]] = {
    "resource": ("resource",),
    "scope": ("resource", "scope"),
    "span": ("resource", "scope", "span"),
    "spanevent": ("resource", "scope", "span", "spanevent"),
    "metric": ("resource", "scope", "metric"),
    "datapoint": ("resource", "scope", "metric", "datapoint"),
    "log": ("resource", "scope", "log"),
}
_PREFIX_ALIASES = {"instrumentation_scope": "scope"}

_ENUMS: dict[str, int] = {}
for _name, _value in Span.SpanKind.items():
    _ENUMS[_name] = _value
for _name, _value in Status.StatusCode.items():
    _ENUMS[_name] = _value
for _name, _value in SeverityNumber.items():
    _ENUMS[_name] = _value

# -- tokens ------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<punct>[()\[\],.])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"unexpected character {text[pos]!r} at position {pos}")
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            out.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    out.append(_Tok("end", "", pos))
    return out


def _unquote(s: str) -> str:
    body = s[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise ValueError(f"unsupported escape \\{nxt} in string {s}")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# -- syntax tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Path:
    names: tuple[str, ...]
    key: str | None
    text: str


@dataclass(frozen=True)
class _Lit:
    value: Any


@dataclass(frozen=True)
class _Enum:
    name: str


@dataclass(frozen=True)
class _Call:
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class _Cmp:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True)
class _Bool:
    op: str  # "and", "or", "not"
    parts: tuple[Any, ...]


_KEYWORDS = {"and", "or", "not", "true", "false", "nil"}
_FUNCTIONS = {"IsMatch"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise ValueError(f"expected {text!r} at position {tok.pos}, found {tok.text or 'the end'!r}")

    def parse(self) -> Any:
        node = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            raise ValueError(f"unexpected {tok.text!r} at position {tok.pos}")
        return node

    def or_expr(self) -> Any:
        parts = [self.and_expr()]
        while self.peek().text == "or":
            self.take()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else _Bool("or", tuple(parts))

    def and_expr(self) -> Any:
        parts = [self.not_expr()]
        while self.peek().text == "and":
            self.take()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else _Bool("and", tuple(parts))

    def not_expr(self) -> Any:
        if self.peek().text == "not":
            self.take()
            return _Bool("not", (self.not_expr(),))
        return self.term()

    def term(self) -> Any:
        tok = self.peek()
        if tok.text == "(":
            self.take()
            node = self.or_expr()
            self.expect(")")
            return node
        left = self.value()
        if self.peek().kind == "op":
            op = self.take().text
            right = self.value()
            return _Cmp(op, left, right)
        if isinstance(left, _Call) or (isinstance(left, _Lit) and isinstance(left.value, bool)):
            return left
        raise ValueError(
            f"{self.text[tok.pos:self.peek().pos].strip()!r} is not a condition: compare it with "
            "==, !=, <, <=, > or >=, or use IsMatch"
        )

    def value(self) -> Any:
        tok = self.take()
        if tok.kind == "string":
            return _Lit(_unquote(tok.text))
        if tok.kind == "number":
            text = tok.text
            if re.fullmatch(r"-?\d+", text):
                return _Lit(int(text))
            return _Lit(float(text))
        if tok.kind == "ident":
            if tok.text == "true":
                return _Lit(True)
            if tok.text == "false":
                return _Lit(False)
            if tok.text == "nil":
                return _Lit(None)
            if tok.text in _KEYWORDS:
                raise ValueError(f"unexpected {tok.text!r} at position {tok.pos}")
            if self.peek().text == "(":
                return self.call(tok)
            if tok.text.isupper() or (tok.text[0].isupper() and "_" in tok.text):
                return _Enum(tok.text)
            return self.path(tok)
        raise ValueError(f"expected a value at position {tok.pos}, found {tok.text or 'the end'!r}")

    def call(self, name: _Tok) -> _Call:
        if name.text not in _FUNCTIONS:
            raise ValueError(f"unsupported function {name.text!r} (Flowglass supports IsMatch)")
        self.expect("(")
        args: list[Any] = []
        if self.peek().text != ")":
            args.append(self.value())
            while self.peek().text == ",":
                self.take()
                args.append(self.value())
        self.expect(")")
        return _Call(name.text, tuple(args))

    def path(self, first: _Tok) -> _Path:
        names = [first.text]
        while self.peek().text == ".":
            self.take()
            tok = self.take()
            if tok.kind != "ident":
                raise ValueError(f"expected a name after '.' at position {tok.pos}")
            names.append(tok.text)
        key: str | None = None
        end = self.peek().pos
        if self.peek().text == "[":
            self.take()
            tok = self.take()
            if tok.kind != "string":
                raise ValueError(f"only string keys are supported in [...] (position {tok.pos})")
            key = _unquote(tok.text)
            self.expect("]")
            end = self.peek().pos
            if self.peek().text == "[":
                raise ValueError(f"nested keys are not supported: {self.text[first.pos:].split()[0]}")
        return _Path(tuple(names), key, self.text[first.pos:end].strip())


# -- compiling ---------------------------------------------------------------------------


def _prefix(path: _Path) -> str | None:
    head = _PREFIX_ALIASES.get(path.names[0], path.names[0])
    return head if head in CONTEXTS else None


def _paths(node: Any) -> list[_Path]:
    if isinstance(node, _Path):
        return [node]
    if isinstance(node, _Cmp):
        return _paths(node.left) + _paths(node.right)
    if isinstance(node, _Bool):
        return [p for part in node.parts for p in _paths(part)]
    if isinstance(node, _Call):
        return [p for arg in node.args for p in _paths(arg)]
    return []


def infer_context(text: str, allowed: Sequence[str]) -> str:
    """The context a `*_conditions` entry runs in: the lowest one its paths name."""
    tree = _Parser(text).parse()
    named: list[str] = []
    for path in _paths(tree):
        ctx = _prefix(path)
        if ctx is None:
            raise ValueError(
                f"path {path.text!r} needs a context prefix ({', '.join(f'{c}.' for c in allowed)})"
            )
        if ctx not in allowed:
            raise ValueError(f"context {ctx!r} cannot be used here; use {', '.join(allowed)}")
        named.append(ctx)
    if not named:
        raise ValueError("the condition names no path, so its context cannot be inferred")
    lowest = max(named, key=allowed.index)
    for ctx in named:
        if ctx not in CONTEXTS[lowest]:
            raise ValueError(f"paths of contexts {ctx!r} and {lowest!r} cannot be used in one condition")
    return lowest


def compile_condition(text: str, context: str, *, prefixed: bool = False) -> Condition:
    """Compile `text` for `context`; ValueError (naming the unsupported part) when it cannot."""
    try:
        tree = _Parser(text).parse()
        return _Compiler(context, prefixed).boolean(tree)
    except ValueError as exc:
        raise ValueError(f"condition {text!r}: {exc}") from None


def _attr(kvs: Any, key: str) -> Any:
    value = get(kvs, key)
    return None if value is None else to_python(value)


def _body(record: Any) -> Any:
    return to_python(record.body) if record.HasField("body") else None


# Field getters per context: name → function of the context's message.
_FIELDS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "resource": {},
    "scope": {"name": lambda s: s.name, "version": lambda s: s.version},
    "span": {
        "name": lambda s: s.name,
        "kind": lambda s: int(s.kind),
        "status.code": lambda s: int(s.status.code),
        "status.message": lambda s: s.status.message,
        "duration": lambda s: s.end_time_unix_nano - s.start_time_unix_nano,
        "start_time_unix_nano": lambda s: s.start_time_unix_nano,
        "end_time_unix_nano": lambda s: s.end_time_unix_nano,
    },
    "spanevent": {"name": lambda e: e.name, "time_unix_nano": lambda e: e.time_unix_nano},
    "metric": {"name": lambda m: m.name, "unit": lambda m: m.unit, "description": lambda m: m.description},
    "datapoint": {
        "time_unix_nano": lambda p: p.time_unix_nano,
        "start_time_unix_nano": lambda p: p.start_time_unix_nano,
    },
    "log": {
        "body": _body,
        "severity_number": lambda r: int(r.severity_number),
        "severity_text": lambda r: r.severity_text,
        "time_unix_nano": lambda r: r.time_unix_nano,
        "observed_time_unix_nano": lambda r: r.observed_time_unix_nano,
    },
}


class _Compiler:
    def __init__(self, context: str, prefixed: bool) -> None:
        if context not in CONTEXTS:
            raise ValueError(f"unknown context {context!r}")
        self.context = context
        self.prefixed = prefixed

    def _slot(self, ctx: str) -> Callable[[Any, Any, Any, Any], Any]:
        """Where the message of `ctx` is among (resource, scope, parent, item)."""
        if ctx == self.context:
            return lambda r, s, p, i: i
        if ctx == "resource":
            return lambda r, s, p, i: r
        if ctx == "scope":
            return lambda r, s, p, i: s
        return lambda r, s, p, i: p  # span of a span event, metric of a data point

    def path(self, path: _Path) -> _Getter:
        names = list(path.names)
        ctx = _prefix(path)
        if ctx is not None and (len(names) > 1 or path.key is not None) and ctx in CONTEXTS[self.context]:
            names = names[1:]
        elif self.prefixed:
            raise ValueError(f"path {path.text!r} needs a context prefix such as {self.context}.")
        else:
            ctx = self.context
        slot = self._slot(ctx)
        field = ".".join(names)
        if path.key is not None:
            if field != "attributes":
                raise ValueError(f"unsupported path {path.text!r}: only attributes[...] takes a key")
            key = path.key
            return lambda r, s, p, i: _attr(slot(r, s, p, i).attributes, key)
        getter = _FIELDS[ctx].get(field)
        if getter is None:
            if field == "attributes":
                raise ValueError(f"unsupported path {path.text!r}: write attributes[\"key\"]")
            raise ValueError(f"unsupported path {path.text!r} in the {ctx} context")
        g = getter
        return lambda r, s, p, i: g(slot(r, s, p, i))

    def value(self, node: Any) -> _Getter:
        if isinstance(node, _Lit):
            v = node.value
            return lambda r, s, p, i: v
        if isinstance(node, _Enum):
            if node.name not in _ENUMS:
                raise ValueError(f"unknown enum {node.name!r}")
            n = _ENUMS[node.name]
            return lambda r, s, p, i: n
        if isinstance(node, _Path):
            return self.path(node)
        if isinstance(node, _Call):
            cond = self.call(node)
            return cond
        raise ValueError("unsupported expression")

    def call(self, node: _Call) -> Condition:
        # Only IsMatch reaches here (the parser refuses other names).
        if len(node.args) != 2:
            raise ValueError("IsMatch takes two arguments: a value and a regex string")
        target, pattern = node.args
        if not (isinstance(pattern, _Lit) and isinstance(pattern.value, str)):
            raise ValueError("the second argument of IsMatch must be a string literal")
        try:
            search = re.compile(pattern.value).search
        except re.error as exc:
            raise ValueError(f"IsMatch pattern {pattern.value!r} is not a valid regex: {exc}") from None
        get_target = self.value(target)

        def is_match(r: Any, s: Any, p: Any, i: Any) -> bool:
            v = get_target(r, s, p, i)
            if v is None:
                return False
            if isinstance(v, str):
                return search(v) is not None
            if isinstance(v, bool):
                return search("true" if v else "false") is not None
            if isinstance(v, int):
                return search(str(v)) is not None
            if isinstance(v, float):
                return search(format_double(v)) is not None
            raise EvalError(f"IsMatch cannot match a {type(v).__name__} value")

        return is_match

    def boolean(self, node: Any) -> Condition:
        if isinstance(node, _Bool):
            parts = [self.boolean(p) for p in node.parts]
            if node.op == "not":
                inner = parts[0]
                return lambda r, s, p, i: not inner(r, s, p, i)
            if node.op == "and":
                return lambda r, s, p, i: all(c(r, s, p, i) for c in parts)
            return lambda r, s, p, i: any(c(r, s, p, i) for c in parts)
        if isinstance(node, _Cmp):
            left, right = self.value(node.left), self.value(node.right)
            compare = _COMPARE[node.op]
            return lambda r, s, p, i: compare(left(r, s, p, i), right(r, s, p, i))
        if isinstance(node, _Call):
            return self.call(node)
        if isinstance(node, _Lit) and isinstance(node.value, bool):
            v = node.value
            return lambda r, s, p, i: v
        raise ValueError("not a condition")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _eq(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if _number(a) and _number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if _number(a) and _number(b):
            return op(a, b)
        if isinstance(a, str) and isinstance(b, str):
            return op(a, b)
        return False

    return compare


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": _eq,
    "!=": lambda a, b: not _eq(a, b),
    "<": _ordered(lambda a, b: a < b),
    "<=": _ordered(lambda a, b: a <= b),
    ">": _ordered(lambda a, b: a > b),
    ">=": _ordered(lambda a, b: a >= b),
}
