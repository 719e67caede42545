"""Real syslog senders → an agent process (syslog → batch → file): logger, rsyslogd, Python's
SysLogHandler and a TLS client. Every line sent arrives once, with its fields."""

from __future__ import annotations

import logging
import logging.handlers
import re
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from agent.testing import AgentProcess, free_port
from tests.conftest import require_tool
from tests.integration.syslog_peers import Rsyslog, rsyslogd_path, wait_for_records

HOST = socket.gethostname()
LINES = 50


@dataclass
class Agent:
    process: AgentProcess
    out: Path
    ports: dict[str, int]
    ca_file: Path

    def metric(self, name: str, **labels: str) -> float:
        return self.process.metric(name, **labels)


CONFIG = """
receivers:
  syslog/rfc5424:
    protocol: rfc5424
    tcp: {{listen_address: "127.0.0.1:{rfc5424}"}}
    udp: {{listen_address: "127.0.0.1:{rfc5424}"}}
    attributes: {{via: rfc5424}}
  syslog/rfc3164:
    protocol: rfc3164
    location: UTC
    tcp: {{listen_address: "127.0.0.1:{rfc3164}"}}
    udp: {{listen_address: "127.0.0.1:{rfc3164}"}}
    attributes: {{via: rfc3164}}
  syslog/octet:
    protocol: rfc5424
    enable_octet_counting: true
    tcp: {{listen_address: "127.0.0.1:{octet}", add_attributes: true}}
    attributes: {{via: octet}}
  syslog/tls:
    protocol: auto
    tcp:
      listen_address: "127.0.0.1:{tls}"
      tls: {{cert_file: "{cert}", key_file: "{key}"}}
    attributes: {{via: tls}}
processors:
  batch: {{timeout: 20ms}}
exporters:
  file: {{path: "{out}", flush_interval: 50ms}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{telemetry}"}}}}
  pipelines:
    logs:
      receivers: [syslog/rfc5424, syslog/rfc3164, syslog/octet, syslog/tls]
      processors: [batch]
      exporters: [file]
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    directory = tmp_path_factory.mktemp("syslog-agent")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, ca_file = directory / "server.pem", directory / "server.key", directory / "ca.pem"
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    ports = {name: free_port() for name in ("rfc5424", "rfc3164", "octet", "tls")}
    telemetry = free_port()
    out = directory / "out.jsonl"
    config = CONFIG.format(out=out, telemetry=telemetry, cert=cert, key=key, **ports)
    with AgentProcess(config, telemetry_port=telemetry) as process:
        yield Agent(process, out, ports, ca_file)


def marker() -> str:
    return "run" + uuid.uuid4().hex[:10]


def lines(mark: str, n: int = LINES) -> list[str]:
    return [f"{mark} line {i} with some words" for i in range(n)]


def check_once(found: list[tuple[object, dict[str, object]]], expected: list[str]) -> None:
    """Every expected message arrived exactly once."""
    got = sorted(str(a.get("message")) for _, a in found)
    assert got == sorted(expected)


def logger(*args: str, stdin: str) -> None:
    binary = require_tool("logger")
    subprocess.run([binary, *args], input=stdin, text=True, check=True, timeout=60)


# ---- util-linux logger ---------------------------------------------------------------------


@pytest.mark.peer("logger")
def test_logger_tcp_rfc5424_octet_count(agent: Agent) -> None:
    mark = marker()
    logger("--tcp", "--rfc5424", "--octet-count", "-n", "127.0.0.1", "-P", str(agent.ports["octet"]),
           "-t", "trainer", "--id=4242", "-p", "local4.err", stdin="\n".join(lines(mark)))
    found = wait_for_records(agent.out, mark, LINES)
    check_once(found, lines(mark))
    for lr, a in found:
        assert a["via"] == "octet" and a["version"] == 1
        assert (a["hostname"], a["appname"], a["proc_id"]) == (HOST, "trainer", "4242")
        assert (a["facility"], a["priority"], a["facility_text"]) == (20, 163, "local4")
        assert (lr.severity_number, lr.severity_text) == (17, "err")
        assert a["structured_data"]["timeQuality"]["tzKnown"] == "1"
        assert abs(lr.time_unix_nano / 1e9 - time.time()) < 300
        assert a["net.transport"] == "IP.TCP" and a["net.peer.ip"] == "127.0.0.1"
        assert not lr.body.string_value[0].isdigit()  # the octet count is not part of the body


@pytest.mark.peer("logger")
def test_logger_tcp_rfc5424_lf_framing(agent: Agent) -> None:
    mark = marker()
    logger("--tcp", "--rfc5424", "-n", "127.0.0.1", "-P", str(agent.ports["rfc5424"]), "-t", "server",
           stdin="\n".join(lines(mark)))
    found = wait_for_records(agent.out, mark, LINES)
    check_once(found, lines(mark))
    assert {a["appname"] for _, a in found} == {"server"} and {a["via"] for _, a in found} == {"rfc5424"}


@pytest.mark.peer("logger")
def test_logger_udp_rfc5424_structured_data_and_msgid(agent: Agent) -> None:
    mark = marker()
    logger("--udp", "--rfc5424", "-n", "127.0.0.1", "-P", str(agent.ports["rfc5424"]), "-t", "infer",
           "--sd-id", "model@32473", "--sd-param", 'name="resnet50"', "--sd-param", 'note="say \\"hi\\" [x\\]"',
           "--msgid", "PREDICT", stdin="\n".join(lines(mark, 10)))
    found = wait_for_records(agent.out, mark, 10)
    check_once(found, lines(mark, 10))
    for _, a in found:
        assert a["msg_id"] == "PREDICT" and a["appname"] == "infer"
        assert a["structured_data"]["model@32473"] == {"name": "resnet50", "note": 'say "hi" [x]'}


@pytest.mark.peer("logger")
def test_logger_udp_rfc3164(agent: Agent) -> None:
    mark = marker()
    logger("--udp", "--rfc3164", "-n", "127.0.0.1", "-P", str(agent.ports["rfc3164"]), "-t", "cron",
           "-p", "cron.notice", stdin="\n".join(lines(mark, 10)))
    found = wait_for_records(agent.out, mark, 10)
    check_once(found, lines(mark, 10))
    for lr, a in found:
        assert (a["hostname"], a["appname"], a["via"]) == (HOST, "cron", "rfc3164")
        assert (a["facility"], lr.severity_text) == (9, "notice")
        assert "version" not in a
        # RFC 3164 carries seconds only, in `location` (UTC here), with the year inferred.
        assert abs(lr.time_unix_nano / 1e9 - time.time()) < 300


# ---- rsyslogd forwarding a file -------------------------------------------------------------


def rsyslog_forwarding(tmp_path: Path, action: str, tag: str) -> tuple[Rsyslog, Path]:
    binary = rsyslogd_path() or require_tool("rsyslogd")
    source = tmp_path / "app.log"
    source.touch()
    body = f"""
module(load="imfile")
input(type="imfile" File="{source}" Tag="{tag}" Severity="warning" Facility="local3")
{action}
"""
    return Rsyslog(binary, tmp_path / "rsyslog", body), source


@pytest.mark.peer("rsyslog")
@pytest.mark.parametrize(
    ("name", "action", "port"),
    [
        ("tcp octet-counted, SyslogProtocol23Format",
         'action(type="omfwd" Target="127.0.0.1" Port="{port}" Protocol="tcp" TCP_Framing="octet-counted" '
         'Template="RSYSLOG_SyslogProtocol23Format")', "octet"),
        ("udp, SyslogProtocol23Format",
         'action(type="omfwd" Target="127.0.0.1" Port="{port}" Protocol="udp" '
         'Template="RSYSLOG_SyslogProtocol23Format")', "rfc5424"),
        ("tcp, ForwardFormat",
         'action(type="omfwd" Target="127.0.0.1" Port="{port}" Protocol="tcp" Template="RSYSLOG_ForwardFormat")',
         "rfc3164"),
    ],
)
def test_rsyslog_forwards_a_file(agent: Agent, tmp_path: Path, name: str, action: str, port: str) -> None:
    mark = marker()
    rsyslog, source = rsyslog_forwarding(tmp_path, action.format(port=agent.ports[port]), "modelsrv:")
    with rsyslog:
        with open(source, "a") as f:
            for line in lines(mark):
                f.write(line + "\n")
        found = wait_for_records(agent.out, mark, LINES, diagnose=rsyslog.output)
    check_once(found, lines(mark))
    for lr, a in found:
        assert a["via"] == port
        assert (a["hostname"], a["appname"]) == (HOST, "modelsrv")
        assert (a["facility_text"], lr.severity_text, lr.severity_number) == ("local3", "warning", 13)
        assert abs(lr.time_unix_nano / 1e9 - time.time()) < 300
        if port != "rfc3164":
            assert a["version"] == 1
            assert lr.body.string_value.endswith("words")  # the LF rsyslog counts in is trimmed
        else:
            # RSYSLOG_ForwardFormat: RFC 3164 with an RFC 3339 timestamp.
            assert "version" not in a
            assert re.match(r"<\d+>\d{4}-\d\d-\d\dT", lr.body.string_value)


# ---- Python's logging.handlers.SysLogHandler -----------------------------------------------


@pytest.mark.parametrize("socktype", [socket.SOCK_DGRAM, socket.SOCK_STREAM], ids=["udp", "tcp"])
def test_python_syslog_handler(agent: Agent, socktype: socket.SocketKind) -> None:
    mark = marker()
    handler = logging.handlers.SysLogHandler(address=("127.0.0.1", agent.ports["rfc3164"]), socktype=socktype,
                                             facility=logging.handlers.SysLogHandler.LOG_LOCAL7)
    handler.ident = "pyapp: "
    log = logging.getLogger(f"flowglass.test.{mark}")
    log.propagate = False
    log.addHandler(handler)
    try:
        for i, line in enumerate(lines(mark, 20)):
            (log.warning if i % 2 else log.error)(line)
    finally:
        log.removeHandler(handler)
        handler.close()
    found = wait_for_records(agent.out, mark, 20)
    check_once(found, lines(mark, 20))
    for lr, a in found:
        assert a["appname"] == "pyapp" and a["facility_text"] == "local7" and "hostname" not in a
        index = int(str(a["message"]).split()[2])
        assert lr.severity_text == ("warning" if index % 2 else "err")
        assert lr.time_unix_nano == 0  # SysLogHandler sends no timestamp
        assert not lr.body.string_value.endswith("\x00")


# ---- TLS --------------------------------------------------------------------------------------


def test_tls_with_certificates_made_here(agent: Agent) -> None:
    mark = marker()
    context = ssl.create_default_context(cafile=str(agent.ca_file))
    frames = [f"<30>1 2024-05-06T07:08:09.123Z edge-{i} secure - - - {line}".encode()
              for i, line in enumerate(lines(mark))]
    with socket.create_connection(("127.0.0.1", agent.ports["tls"])) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"".join(b"%d %b" % (len(f), f) for f in frames))
    found = wait_for_records(agent.out, mark, LINES)
    check_once(found, lines(mark))
    assert {a["via"] for _, a in found} == {"tls"}
    assert {lr.time_unix_nano for lr, _ in found} == {1714979289_123_000_000}
