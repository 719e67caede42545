"""The public test kit: batch builders, a sink consumer, and agents started from YAML.

Used by the project's own tests and benchmarks, and meant for anyone writing a component.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal as _signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agent.errors import PermanentError
from agent.model import Batch, Signal, new_request
from agent.model.attrs import assign, to_python


def any_value(value: Any) -> AnyValue:
    """An OTLP AnyValue from a Python str, bool, int, float, bytes, list or dict."""
    v = AnyValue()
    assign(v, value)
    return v


def key_values(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]


#: The Python value of an OTLP AnyValue (inverse of `any_value`).
from_any_value = to_python


def attrs_dict(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: from_any_value(kv.value) for kv in kvs}


def random_trace_id(rng: random.Random | None = None) -> bytes:
    r = rng or random
    return r.getrandbits(128).to_bytes(16, "big")


def random_span_id(rng: random.Random | None = None) -> bytes:
    r = rng or random
    return r.getrandbits(64).to_bytes(8, "big")


def make_traces(
    spans: int = 10,
    *,
    resources: int = 1,
    traces: int | None = None,
    service: str = "model-server",
    resource_attrs: dict[str, Any] | None = None,
    span_attrs: dict[str, Any] | None = None,
    name: str = "predict",
    seed: int | None = None,
    error_every: int = 0,
    start_ns: int | None = None,
) -> Batch:
    """A traces batch with `spans` spans per resource, spread over `traces` trace ids.

    Spans carry realistic attributes, one event and one link, so round-trip tests see
    every field kind. Every `error_every`-th span has status ERROR.
    """
    rng = random.Random(seed)
    req = new_request(Signal.TRACES)
    now = start_ns if start_ns is not None else time.time_ns()
    n_traces = traces or max(1, spans // 4)
    trace_ids = [random_trace_id(rng) for _ in range(n_traces)]
    counter = 0
    for r in range(resources):
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(key_values({
            "service.name": service, "service.instance.id": f"{service}-{r}",
            "host.name": "node-1", **(resource_attrs or {}),
        }))
        ss = rs.scope_spans.add()
        ss.scope.name = "flowglass.test"
        ss.scope.version = "1.0"
        for i in range(spans):
            counter += 1
            s = ss.spans.add()
            s.trace_id = trace_ids[i % n_traces]
            s.span_id = random_span_id(rng)
            s.parent_span_id = random_span_id(rng) if i % 4 else b""
            s.name = name
            s.kind = Span.SPAN_KIND_SERVER
            s.start_time_unix_nano = now + i * 1000
            s.end_time_unix_nano = now + i * 1000 + 1_000_000 + rng.randrange(50_000_000)
            s.attributes.extend(key_values({
                "http.request.method": "POST", "url.path": "/v1/models/resnet:predict",
                "http.response.status_code": 200, "ml.model.name": "resnet",
                "ml.batch_size": 8, "ml.latency.queue_ms": 1.5, **(span_attrs or {}),
            }))
            ev = s.events.add()
            ev.time_unix_nano = now + i * 1000 + 500
            ev.name = "tokens"
            ev.attributes.extend(key_values({"count": 42}))
            link = s.links.add()
            link.trace_id = trace_ids[(i + 1) % n_traces]
            link.span_id = random_span_id(rng)
            if error_every and counter % error_every == 0:
                s.status.code = Status.STATUS_CODE_ERROR
                s.status.message = "inference failed"
            else:
                s.status.code = Status.STATUS_CODE_OK
    return Batch(Signal.TRACES, req)


def make_metrics(points: int = 10, *, resources: int = 1, service: str = "model-server") -> Batch:
    """A metrics batch with a sum, a gauge and a histogram, `points` data points in all per resource."""
    req = new_request(Signal.METRICS)
    now = time.time_ns()
    for r in range(resources):
        rm = req.resource_metrics.add()
        rm.resource.attributes.extend(key_values({"service.name": service, "service.instance.id": f"{service}-{r}"}))
        sm = rm.scope_metrics.add()
        sm.scope.name = "flowglass.test"
        kinds = ["sum", "gauge", "histogram"]
        for i in range(points):
            kind = kinds[i % 3]
            m = sm.metrics.add()
            m.name = f"requests_{kind}_{i}"
            m.unit = "1"
            if kind == "sum":
                m.sum.aggregation_temporality = 2
                m.sum.is_monotonic = True
                dp = m.sum.data_points.add()
                dp.as_int = i
            elif kind == "gauge":
                dp = m.gauge.data_points.add()
                dp.as_double = i * 0.5
            else:
                m.histogram.aggregation_temporality = 2
                dp = m.histogram.data_points.add()
                dp.count = 3
                dp.sum = 1.5
                dp.explicit_bounds.extend([0.1, 1.0])
                dp.bucket_counts.extend([1, 1, 1])
            dp.time_unix_nano = now
            dp.start_time_unix_nano = now - 10**9
            dp.attributes.extend(key_values({"model": "resnet", "i": i}))
    return Batch(Signal.METRICS, req)


def make_logs(records: int = 10, *, resources: int = 1, service: str = "model-server", body: str = "inference done") -> Batch:
    """A logs batch with `records` log records per resource."""
    req = new_request(Signal.LOGS)
    now = time.time_ns()
    for r in range(resources):
        rl = req.resource_logs.add()
        rl.resource.attributes.extend(key_values({"service.name": service, "service.instance.id": f"{service}-{r}"}))
        sl = rl.scope_logs.add()
        sl.scope.name = "flowglass.test"
        for i in range(records):
            lr: LogRecord = sl.log_records.add()
            lr.time_unix_nano = now + i
            lr.observed_time_unix_nano = now + i
            lr.severity_number = 9  # type: ignore[assignment]
            lr.severity_text = "INFO"
            lr.body.string_value = f"{body} {i}"
            lr.attributes.extend(key_values({"request.id": f"req-{r}-{i}", "latency_ms": 12.5}))
            lr.trace_id = random_trace_id()
            lr.span_id = random_span_id()
    return Batch(Signal.LOGS, req)


def make_batch(signal: Signal, items: int = 10) -> Batch:
    """A batch of the given signal with `items` items."""
    if signal is Signal.TRACES:
        return make_traces(items)
    if signal is Signal.METRICS:
        return make_metrics(items)
    return make_logs(items)


class Sink:
    """A consumer that keeps what it is given.

    `fail_with` makes the next calls raise that exception (all of them, or `fail_times`);
    `block()` / `unblock()` make `consume` wait, to test backpressure.
    """

    def __init__(self, mutates_data: bool = False) -> None:
        self.mutates_data = mutates_data
        self.batches: list[Batch] = []
        self.fail_with: BaseException | None = None
        self.fail_times: int | None = None
        self.calls = 0
        self._open = asyncio.Event()
        self._open.set()
        self._received = asyncio.Condition()

    async def consume(self, batch: Batch) -> None:
        self.calls += 1
        await self._open.wait()
        if self.fail_with is not None:
            exc = self.fail_with
            if self.fail_times is not None:
                self.fail_times -= 1
                if self.fail_times <= 0:
                    self.fail_with, self.fail_times = None, None
            raise exc
        self.batches.append(batch)
        async with self._received:
            self._received.notify_all()

    def block(self) -> None:
        self._open.clear()

    def unblock(self) -> None:
        self._open.set()

    @property
    def items(self) -> int:
        return sum(b.items for b in self.batches)

    async def wait_for_items(self, n: int, timeout: float = 10.0) -> None:
        """Wait until at least `n` items arrived; raises TimeoutError otherwise."""
        async def _wait() -> None:
            async with self._received:
                await self._received.wait_for(lambda: self.items >= n)
        await asyncio.wait_for(_wait(), timeout)

    def clear(self) -> None:
        self.batches.clear()


class PermanentSink(Sink):
    """A sink that refuses everything permanently."""

    async def consume(self, batch: Batch) -> None:
        self.calls += 1
        raise PermanentError("refused by PermanentSink")


def stop_process(proc: subprocess.Popen[Any] | None, grace: float = 20.0) -> None:
    """SIGTERM `proc` (a peer the tests started), SIGKILL it if it has not exited within
    `grace` seconds, and reap it. Nothing happens when it has already exited."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for configs that need a number up front)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def spans_of(batches: Sequence[Batch]) -> list[Span]:
    """Every span of the given traces batches, in order."""
    out: list[Span] = []
    for b in batches:
        for rs in b.message.resource_spans:
            for ss in rs.scope_spans:
                out.extend(ss.spans)
    return out


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


# ---- agents started from YAML ---------------------------------------------------------------



@contextlib.asynccontextmanager
async def running_agent(
    yaml_text: str, *, environ: Mapping[str, str] | None = None, shutdown_timeout: float = 10.0
) -> AsyncIterator[Any]:
    """An agent started in this process from a YAML string; yields the `Service`.

    Use `endpoint: 127.0.0.1:0` for receivers and `address: ""` (or a `free_port()`) for the
    telemetry server; `service.graph.receivers` then holds the started receivers with their
    bound ports.
    """
    from agent.components import default_registry
    from agent.config import load_text
    from agent.service import Service
    from agent.telemetry.metrics import AgentMetrics

    config = load_text(yaml_text, registry=default_registry(), environ=dict(environ or {}))
    service = Service(config, metrics=AgentMetrics())
    await service.start()
    try:
        yield service
    finally:
        await service.shutdown(timeout=shutdown_timeout)


class AgentProcess:
    """`python -m agent run` in a child process, from a YAML string.

    The YAML must set `service.telemetry.metrics.address` to `127.0.0.1:<port>` (use
    `free_port()`); `start()` waits until /readyz answers 200. `stop()` sends SIGTERM and
    returns the exit code. Always stopped by its own process id.
    """

    def __init__(self, yaml_text: str, telemetry_port: int, *, env: Mapping[str, str] | None = None,
                 cwd: str | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="flowglass-test-")
        self.config_path = Path(self._dir.name) / "agent.yaml"
        self.config_path.write_text(yaml_text)
        self.telemetry_port = telemetry_port
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(self._dir.name) / "agent.log"

    def start(self, timeout: float = 30.0) -> AgentProcess:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "-c", str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.telemetry_port}/readyz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"agent did not become ready in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.telemetry_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        for line in self.metrics_text().splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric_name = head.split("{", 1)[0]
            if metric_name != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def stop(self, timeout: float = 60.0, sig: int = _signal.SIGTERM) -> int:
        """Signal the agent and wait for it to exit; its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        self.kill()
        self._dir.cleanup()

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
