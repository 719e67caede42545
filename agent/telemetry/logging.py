"""The agent's own logs: structured, JSON for machines and text for people (DESIGN §6).

`configure_logging(level, encoding)` installs one handler on the root logger, sets the
`agent` logger tree to `level` and leaves every library at WARNING. Calling it again
replaces the handler it installed before (it never stacks handlers). gRPC's C-core logs
go to stderr on their own and are left alone (`GRPC_VERBOSITY` governs them).

JSON lines carry `ts` (RFC 3339, UTC, milliseconds), `level`, `logger`, `msg`, every field
passed in `extra=`, and `exc` (the formatted traceback) when an exception is logged::

    {"ts":"2026-11-27T01:02:03.456Z","level":"info","logger":"agent.service","msg":"Started.","component":"otlp","port":4317}

Console lines put the extra fields after the message as `key=value`::

    2026-11-27T01:02:03.456Z INFO agent.service Started. component=otlp port=4317
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any, Literal

import msgspec

Encoding = Literal["json", "console", "auto"]

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_LEVEL_NAMES: dict[int, str] = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}

#: Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_RESERVED_KEYS = frozenset({"ts", "level", "logger", "msg", "exc", "stack"})


def _level_name(levelno: int) -> str:
    name = _LEVEL_NAMES.get(levelno)
    if name is not None:
        return name
    return logging.getLevelName(levelno).lower()


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed in `extra=`, renamed when they clash with ours."""
    out: dict[str, Any] = {}
    for key, value in record.__dict__.items():
        if key in _STANDARD_ATTRS or key.startswith("_"):
            continue
        out[f"{key}_" if key in _RESERVED_KEYS else key] = value
    return out


def _fallback(value: Any) -> Any:
    # Extras are for people; anything msgspec cannot encode is shown as its str().
    return str(value)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the extras, exc."""

    def __init__(self) -> None:
        super().__init__()
        self._encoder = msgspec.json.Encoder(enc_hook=_fallback)

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": _level_name(record.levelno),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_extras(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        try:
            return self._encoder.encode(doc).decode()
        except (msgspec.EncodeError, TypeError, ValueError, OverflowError):
            # e.g. a dict extra with non-string keys: show every extra as text instead.
            doc = {k: (v if k in ("ts", "level", "logger", "msg") else str(v)) for k, v in doc.items()}
            return self._encoder.encode(doc).decode()


def _console_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if text == "" or any(ch in text for ch in ' ="\n\t'):
        return msgspec.json.encode(text).decode()
    return text


class ConsoleFormatter(logging.Formatter):
    """`<ts> <LEVEL> <logger> <msg> key=value ...`, then the traceback on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), _level_name(record.levelno).upper(), record.name, record.getMessage()]
        parts.extend(f"{key}={_console_value(value)}" for key, value in _extras(record).items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class _AgentHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure_logging` installs; its type marks it for replacement."""


def parse_level(level: str) -> int:
    """`debug|info|warn|warning|error` (any case) → a logging level; ValueError otherwise."""
    try:
        return LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r}: expected one of debug, info, warn, warning, error"
        ) from None


def _is_tty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # a closed stream
        return False


def configure_logging(level: str = "info", encoding: Encoding = "auto", stream: IO[str] | None = None) -> None:
    """Send the agent's logs to `stream` (stderr by default) at `level`, libraries at WARNING.

    `auto` writes text when the stream is a terminal and JSON otherwise. Idempotent: a second
    call replaces the handler the first one installed.
    """
    levelno = parse_level(level)
    if encoding not in ("json", "console", "auto"):
        raise ValueError(f"unknown log encoding {encoding!r}: expected json, console or auto")
    out = stream if stream is not None else sys.stderr
    if encoding == "auto":
        encoding = "console" if _is_tty(out) else "json"
    handler = _AgentHandler(out)
    handler.setFormatter(ConsoleFormatter() if encoding == "console" else JSONFormatter())

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _AgentHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    # Libraries (aiohttp, grpc, aiokafka, asyncio) speak up only when something is wrong;
    # the agent's own records propagate to the root handler whatever the root level is.
    root.setLevel(logging.WARNING)
    agent_logger = logging.getLogger("agent")
    agent_logger.setLevel(levelno)
    agent_logger.propagate = True
