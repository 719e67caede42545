"""Environment references in string values, expanded after parsing, as the Collector does.

- `${env:NAME}` and `${NAME}`: the variable's value; an unset variable expands to "".
- `${env:NAME:-default}` and `${NAME:-default}`: the default when the variable is unset (an
  empty variable stays empty, as in the Collector).
- `$$` is a literal `$`; a `$` followed by anything else is kept as written.
- When a whole unquoted value is one reference, the result is read again as a YAML scalar, so
  `port: ${env:PORT}` becomes an integer; quote it (`"${env:PORT}"`) to keep a string.
- Any other scheme (`${file:...}`, `${http:...}`) is a problem: Flowglass has only `env`.

Only values are expanded, never keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from agent.config.document import parse_scalar
from agent.config.problems import Path, Problem, segment

_VAR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):(.*)", re.DOTALL)


class _Unresolvable(ValueError):
    pass


def expand(
    data: Any,
    environ: Mapping[str, str],
    quoted: Callable[[Path], bool] = lambda path: False,
    path: Path = (),
) -> tuple[Any, list[Problem]]:
    """A copy of `data` with every string value expanded, and the problems found."""
    problems: list[Problem] = []
    return _expand(data, environ, quoted, path, problems), problems


def _expand(data: Any, environ: Mapping[str, str], quoted: Callable[[Path], bool], path: Path,
            problems: list[Problem]) -> Any:
    if isinstance(data, Mapping):
        return {k: _expand(v, environ, quoted, (*path, segment(k)), problems) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand(v, environ, quoted, (*path, i), problems) for i, v in enumerate(data)]
    if isinstance(data, str) and "$" in data:
        try:
            text, whole = expand_text(data, environ)
        except _Unresolvable as err:
            problems.append(Problem(path, str(err)))
            return data
        return parse_scalar(text) if whole and not quoted(path) else text
    return data


def expand_text(text: str, environ: Mapping[str, str]) -> tuple[str, bool]:
    """(expanded text, whether `text` was exactly one reference); raises ValueError."""
    out: list[str] = []
    i = 0
    refs = 0
    while True:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        nxt = text[j + 1 : j + 2]
        if nxt == "$":
            out.append("$")
            i = j + 2
        elif nxt == "{":
            end = text.find("}", j + 2)
            if end < 0:
                raise _Unresolvable(f"{text[j:]!r} has no closing '}}' (write $$ for a literal $)")
            out.append(_resolve(text[j + 2 : end], environ))
            refs += 1
            i = end + 1
        else:
            out.append("$")
            i = j + 1
    whole = refs == 1 and text.startswith("${") and text.find("}") == len(text) - 1
    return "".join(out), whole


def _resolve(inner: str, environ: Mapping[str, str]) -> str:
    ref = "${" + inner + "}"
    m = _VAR.fullmatch(inner)
    if m is None:
        s = _SCHEME.fullmatch(inner)
        if s is None:
            raise _Unresolvable(f"{ref} is not a reference Flowglass can expand (use ${{env:NAME}})")
        scheme, rest = s.groups()
        if scheme != "env":
            raise _Unresolvable(
                f'unknown scheme "{scheme}" in {ref}: Flowglass expands only ${{env:NAME}} '
                "and ${env:NAME:-default}"
            )
        m = _VAR.fullmatch(rest)
        if m is None:
            raise _Unresolvable(f"{ref}: {rest.partition(':-')[0]!r} is not a valid environment variable name")
    name, default = m.group(1), m.group(2)
    value = environ.get(name)
    if value is None:
        return default if default is not None else ""
    return value
