"""Regenerate the Python modules under `agent/_proto/` from the `.proto` files here.

    .venv/bin/python proto/generate.py            # writes agent/_proto/
    .venv/bin/python proto/generate.py OUT_DIR    # writes OUT_DIR/ (the freshness test)

Runs grpcio-tools' protoc with `proto/` as the include root, writes `.pyi` stubs beside them (for mypy), then makes the imports
between generated modules absolute within `agent._proto` (protoc writes them relative to
the include root). `tests/unit/test_proto_fresh.py` checks that the committed modules are
what this produces.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PACKAGE = "agent._proto"
DEFAULT_OUT = ROOT.parent / "agent" / "_proto"


def proto_files() -> list[Path]:
    return sorted(ROOT.rglob("*.proto"))


def generate(out: Path) -> list[Path]:
    """Generate every module into `out` (a package root); the written paths."""
    from grpc_tools import protoc  # test extra

    out.mkdir(parents=True, exist_ok=True)
    files = [str(p.relative_to(ROOT)) for p in proto_files()]
    with tempfile.TemporaryDirectory() as tmp:
        # grpc_tools ships the well-known types (google/protobuf/*.proto) beside protoc.
        well_known = Path(protoc.__file__).parent / "_proto"
        args = ["protoc", f"-I{ROOT}", f"-I{well_known}", f"--python_out={tmp}", f"--pyi_out={tmp}", *files]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {files}")
        written = []
        for path in sorted(p for p in Path(tmp).rglob("*_pb2.py*")):
            rel = path.relative_to(tmp)
            text = path.read_text()
            # `from prometheus import types_pb2 as ...` → `from agent._proto.prometheus import ...`;
            # the well-known types (`google.protobuf`) come from the protobuf wheel as they are.
            text = re.sub(r"^from (?!google\.protobuf )(\w+(?:\.\w+)*) import (\w+_pb2)",
                          rf"from {PACKAGE}.\1 import \2", text, flags=re.MULTILINE)
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            for package in target.relative_to(out).parents:  # jaeger/ and jaeger/api_v2/
                init = out / package / "__init__.py"
                if package != Path(".") and not init.exists():
                    init.write_text("")
            written.append(target)
    return written


if __name__ == "__main__":
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    for p in generate(dest):
        print(p)
