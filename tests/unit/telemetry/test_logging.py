from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from agent.telemetry.logging import configure_logging, parse_level

TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back after each test."""
    root = logging.getLogger()
    agent_logger = logging.getLogger("agent")
    saved = (list(root.handlers), root.level, agent_logger.level, agent_logger.propagate)
    yield
    for handler in list(root.handlers):
        if handler not in saved[0]:
            root.removeHandler(handler)
    root.setLevel(saved[1])
    agent_logger.setLevel(saved[2])
    agent_logger.propagate = saved[3]


def _lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line]


def test_json_line_has_fields_extras_and_exception() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    log = logging.getLogger("agent.service")
    log.info("Started.", extra={"component": "otlp", "port": 4317, "peer": object()})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("Send failed.", extra={"component": "kafka"})
    first, second = (json.loads(line) for line in _lines(stream))
    assert re.fullmatch(TS, first["ts"])
    assert first["level"] == "info"
    assert first["logger"] == "agent.service"
    assert first["msg"] == "Started."
    assert first["component"] == "otlp"
    assert first["port"] == 4317
    assert first["peer"].startswith("<object object")  # not JSON-encodable: shown as text
    assert list(first)[:4] == ["ts", "level", "logger", "msg"]
    assert "exc" not in first
    assert second["level"] == "error"
    assert second["component"] == "kafka"
    assert "Traceback" in second["exc"]
    assert "ValueError: boom" in second["exc"]


def test_extras_named_like_our_fields_do_not_overwrite_them() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    logging.getLogger("agent.x").info("Hi.", extra={"level": "mine", "ts": 1})
    doc = json.loads(_lines(stream)[0])
    assert doc["level"] == "info"
    assert doc["level_"] == "mine"
    assert doc["ts_"] == 1


def test_console_format_on_a_terminal() -> None:
    stream = FakeTTY()
    configure_logging("info", "auto", stream=stream)
    logging.getLogger("agent.service").info("Started.", extra={"component": "otlp", "port": 4317})
    logging.getLogger("agent.service").warning("Slow.", extra={"error": "timed out after 5s"})
    first, second = _lines(stream)
    assert re.fullmatch(TS + r" INFO agent\.service Started\. component=otlp port=4317", first)
    assert second.endswith('WARN agent.service Slow. error="timed out after 5s"')


def test_auto_is_json_when_not_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging("info", "auto", stream=stream)
    logging.getLogger("agent.service").info("Started.")
    assert json.loads(_lines(stream)[0])["msg"] == "Started."


def test_console_shows_the_traceback() -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream=stream)
    try:
        raise KeyError("k")
    except KeyError:
        logging.getLogger("agent.x").error("Lost data.", exc_info=True)
    text = stream.getvalue()
    assert "ERROR agent.x Lost data." in text
    assert "Traceback" in text and "KeyError: 'k'" in text


def test_configure_twice_does_not_duplicate_handlers() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", stream=first)
    configure_logging("info", "json", stream=second)
    logging.getLogger("agent.service").info("Once.")
    assert _lines(first) == []
    assert len(_lines(second)) == 1
    ours = [h for h in logging.getLogger().handlers if type(h).__name__ == "_AgentHandler"]
    assert len(ours) == 1


def test_levels_apply_to_the_agent_tree_and_libraries_stay_at_warning() -> None:
    stream = io.StringIO()
    configure_logging("warn", "json", stream=stream)
    logging.getLogger("agent.service").info("hidden")
    logging.getLogger("agent.service").warning("shown")
    assert [json.loads(line)["msg"] for line in _lines(stream)] == ["shown"]

    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    logging.getLogger("agent.exporters.file").debug("detail")
    logging.getLogger("aiohttp.server").info("library chatter")
    logging.getLogger("aiohttp.server").warning("library problem")
    assert [json.loads(line)["msg"] for line in _lines(stream)] == ["detail", "library problem"]


def test_parse_level() -> None:
    assert parse_level("WARNING") == logging.WARNING
    assert parse_level("warn") == logging.WARNING
    assert parse_level("debug") == logging.DEBUG
    with pytest.raises(ValueError, match="unknown log level"):
        parse_level("verbose")
    with pytest.raises(ValueError, match="encoding"):
        configure_logging("info", "yaml", stream=io.StringIO())  # type: ignore[arg-type]
