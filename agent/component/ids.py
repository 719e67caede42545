"""Component and pipeline ids, with the Collector's rules.

A component id is `type[/name]`: the type starts with a letter and holds letters, digits and
underscores (at most 63 characters); the name, when present, is non-empty and holds no
spaces, control characters, symbols or `/`. A pipeline id is `signal[/name]` with the same
name rule.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass

from agent.model import Signal

_TYPE_RE = re.compile(r"^[a-zA-Z][0-9a-zA-Z_]{0,62}$")
_NAME_MAX = 1024


class Kind(str, enum.Enum):
    RECEIVER = "receiver"
    PROCESSOR = "processor"
    EXPORTER = "exporter"
    CONNECTOR = "connector"
    EXTENSION = "extension"

    @property
    def section(self) -> str:
        """The top-level YAML section of this kind (`receivers`, ...)."""
        return self.value + "s"


class Stability(str, enum.Enum):
    DEVELOPMENT = "development"
    ALPHA = "alpha"
    BETA = "beta"
    STABLE = "stable"


def _check_name(name: str) -> str | None:
    if not name:
        return "the name after '/' must not be empty"
    if len(name) > _NAME_MAX:
        return f"the name is longer than {_NAME_MAX} characters"
    for ch in name:
        cat = unicodedata.category(ch)
        if ch == "/" or cat[0] in ("Z", "C", "S"):
            return f"the name must not contain {ch!r} (spaces, control characters, symbols and '/' are not allowed)"
    return None


@dataclass(frozen=True, order=True)
class ComponentID:
    type: str
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> ComponentID:
        """Parse `type[/name]`; raises ValueError with a sentence on a bad id."""
        if not isinstance(text, str):
            raise ValueError(f"a component id must be a string, got {type(text).__name__}")
        typ, sep, name = text.strip().partition("/")
        if not _TYPE_RE.match(typ):
            raise ValueError(
                f"invalid component id {text!r}: the type must start with a letter and hold "
                "only letters, digits and '_' (at most 63 characters)"
            )
        if sep:
            problem = _check_name(name)
            if problem:
                raise ValueError(f"invalid component id {text!r}: {problem}")
        return cls(typ, name)

    def __str__(self) -> str:
        return f"{self.type}/{self.name}" if self.name else self.type


@dataclass(frozen=True, order=True)
class PipelineID:
    signal: Signal
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> PipelineID:
        if not isinstance(text, str):
            raise ValueError(f"a pipeline id must be a string, got {type(text).__name__}")
        sig, sep, name = text.strip().partition("/")
        try:
            signal = Signal(sig)
        except ValueError:
            raise ValueError(
                f"invalid pipeline id {text!r}: it must start with traces, metrics or logs"
            ) from None
        if sep:
            problem = _check_name(name)
            if problem:
                raise ValueError(f"invalid pipeline id {text!r}: {problem}")
        return cls(signal, name)

    def __str__(self) -> str:
        return f"{self.signal.value}/{self.name}" if self.name else self.signal.value
