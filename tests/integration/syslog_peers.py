"""Real syslog senders for the integration tests and the benchmark: rsyslogd and logger.

`Rsyslog` runs Debian's rsyslogd in the foreground with its own config file, work
directory and pid file under a temporary directory (`rsyslogd -n -f CONF -i PIDFILE`): no
system syslog is touched. It is stopped by its process id.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.model import Signal
from agent.testing import attrs_dict, stop_process
from tests.integration.helpers import read_otlp_jsonl

RSYSLOGD_CANDIDATES = ("rsyslogd", "/usr/sbin/rsyslogd")


def rsyslogd_path() -> str | None:
    """rsyslogd's path (it lives in /usr/sbin, which is not on every user's PATH)."""
    for candidate in RSYSLOGD_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


class Rsyslog:
    """rsyslogd with `body` as its config (after a `global()` line for its work directory)."""

    def __init__(self, binary: str, directory: Path, body: str) -> None:
        self.binary = binary
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.work = self.dir / "work"
        self.work.mkdir(exist_ok=True)
        self.conf = self.dir / "rsyslog.conf"
        self.pidfile = self.dir / "rsyslogd.pid"
        self.log = self.dir / "rsyslogd.log"
        self.conf.write_text(f'global(workDirectory="{self.work}" maxMessageSize="64k")\n{body}\n')
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Rsyslog:
        check = subprocess.run([self.binary, "-N1", "-f", str(self.conf)], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"rsyslogd rejected its config:\n{check.stdout}{check.stderr}")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([self.binary, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
                                         stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "LANG": "C"})
        return self

    def stop(self) -> None:
        stop_process(self.proc)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def __enter__(self) -> Rsyslog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def log_records(path: Path) -> list[Any]:
    """Every log record a `file` exporter (format json) wrote, in order."""
    return [lr for signal, message in read_otlp_jsonl(path) if signal is Signal.LOGS
            for rl in message.resource_logs for sl in rl.scope_logs for lr in sl.log_records]  # type: ignore[union-attr]


def records_with(path: Path, marker: str) -> list[tuple[Any, dict[str, Any]]]:
    """(record, attributes) of every record whose body holds `marker`."""
    out = []
    for lr in log_records(path):
        if marker in lr.body.string_value:
            out.append((lr, attrs_dict(lr.attributes)))
    return out


def wait_for_records(path: Path, marker: str, count: int, timeout: float = 30.0,
                     diagnose: Callable[[], str] = lambda: "") -> list[tuple[Any, dict[str, Any]]]:
    """Wait until `count` records holding `marker` were written; fail with what was seen."""
    deadline = time.monotonic() + timeout
    found: list[tuple[Any, dict[str, Any]]] = []
    while time.monotonic() < deadline:
        found = records_with(path, marker)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{len(found)} of {count} records with {marker!r} arrived\n{diagnose()}")
