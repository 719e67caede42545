"""The generated modules under agent/_proto/ are exactly what proto/generate.py makes now."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("proto_generate", ROOT / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_modules_are_fresh(tmp_path: Path) -> None:
    written = _generator().generate(tmp_path)
    assert written, "no .proto file under proto/"
    for path in written:
        rel = path.relative_to(tmp_path)
        committed = ROOT / "agent" / "_proto" / rel
        assert committed.exists(), f"{rel} is not committed: run .venv/bin/python proto/generate.py"
        assert committed.read_text() == path.read_text(), (
            f"agent/_proto/{rel} is stale: run .venv/bin/python proto/generate.py"
        )


def test_no_committed_module_without_a_proto(tmp_path: Path) -> None:
    fresh = {p.relative_to(tmp_path) for p in _generator().generate(tmp_path)}
    committed = {p.relative_to(ROOT / "agent" / "_proto") for p in (ROOT / "agent" / "_proto").rglob("*_pb2.py*")}
    assert committed == fresh


def test_write_request_round_trips() -> None:
    from agent._proto.prometheus import remote_pb2

    req = remote_pb2.WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="up")
    ts.samples.add(value=1.0, timestamp=1234)
    h = ts.histograms.add(count_int=3, schema=2)
    h.positive_spans.add(offset=-1, length=2)
    h.positive_deltas.extend([1, 1])
    back = remote_pb2.WriteRequest.FromString(req.SerializeToString())
    assert back == req
    assert back.timeseries[0].histograms[0].positive_spans[0].offset == -1
