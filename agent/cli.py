"""The `flowglass` command: `run`, `validate`, `components`, `--version`.

Errors a user can act on (a config problem, a port in use, a certificate that does not load)
are printed as sentences, never as tracebacks. Exit codes: 0 ok, 1 could not start or failed
at run time, 2 configuration problems or bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import resources

import agent
from agent.component import ConnectorFactory, Kind
from agent.components import default_registry
from agent.errors import ConfigError, StartError

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def default_config_text() -> str:
    """The embedded default configuration (`config/default.yaml`)."""
    return resources.files("agent").joinpath("default.yaml").read_text(encoding="utf-8")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flowglass",
        description="Flowglass: a telemetry agent for ML services, configured like the OpenTelemetry Collector.",
    )
    p.add_argument("--version", action="version", version=f"flowglass {agent.__version__}")
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the agent (default: the embedded default config)")
    run.add_argument("-c", "--config", action="append", default=[], metavar="FILE",
                     help="a YAML config file; repeat to deep-merge several")
    val = sub.add_parser("validate", help="check a config and print every problem")
    val.add_argument("-c", "--config", action="append", default=[], metavar="FILE", required=True)
    sub.add_parser("components", help="list every component type with its signals and stability")
    return p


def _load(paths: Sequence[str]):  # type: ignore[no-untyped-def]
    from agent.config import load, load_text

    registry = default_registry()
    if paths:
        return load(list(paths), registry, environ=os.environ)
    return load_text(default_config_text(), registry=registry, environ=os.environ)


def _print_problems(err: ConfigError) -> None:
    n = len(err.problems)
    print(f"flowglass: the configuration has {n} problem{'s' if n != 1 else ''}:", file=sys.stderr)
    for problem in err.problems:
        print(f"  - {problem}", file=sys.stderr)


def cmd_validate(paths: Sequence[str]) -> int:
    try:
        _load(paths)
    except ConfigError as err:
        _print_problems(err)
        return EXIT_CONFIG
    print("flowglass: the configuration is valid.")
    return EXIT_OK


def cmd_components() -> int:
    registry = default_registry()
    rows: list[tuple[str, str, str, str]] = []
    for f in registry:
        if isinstance(f, ConnectorFactory):
            sig = ", ".join(f"{a.value}→{b.value}: {s.value}" for (a, b), s in f.signals.items())
        else:
            sig = ", ".join(f"{s.value}: {st.value}" for s, st in f.signals.items())
        name = f.type + (f" (alias {', '.join(f.aliases)})" if f.aliases else "")
        rows.append((f.kind.value, name, sig, f.description))
    order = [k.value for k in Kind]
    rows.sort(key=lambda r: (order.index(r[0]), r[1]))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'KIND':<{w0}}  {'TYPE':<{w1}}  SIGNALS (stability)")
    for kind, name, sig, _ in rows:
        print(f"{kind:<{w0}}  {name:<{w1}}  {sig}")
    return EXIT_OK


def cmd_run(paths: Sequence[str]) -> int:
    from agent.service import Service, run_loop
    from agent.telemetry.logging import configure_logging

    try:
        config = _load(paths)
    except ConfigError as err:
        _print_problems(err)
        return EXIT_CONFIG
    from agent.workers import Supervisor, worker_index

    logs = config.service.telemetry.logs
    configure_logging(logs.level, logs.encoding)
    index = worker_index()
    if config.service.workers > 1 and index is None:
        return Supervisor(paths, config.service.workers, config.service.shutdown_timeout).run()

    async def main() -> int:
        service = Service(config, worker_index=index)
        return await service.run()

    try:
        return run_loop(main)
    except StartError as err:
        print(f"flowglass: could not start: {err}", file=sys.stderr)
        return EXIT_FAILED
    except ConfigError as err:
        _print_problems(err)
        return EXIT_CONFIG
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "validate":
        code = cmd_validate(args.config)
    elif args.command == "components":
        code = cmd_components()
    else:
        code = cmd_run(getattr(args, "config", []))
    sys.exit(code)
