"""Component health: what `/readyz` answers and what `flowglass_component_up` shows.

Every component is tracked under a label `kind:id` (`receiver:otlp`, `exporter:kafka/edge`)
with one of the statuses below. The service marks itself started once every component's
`start()` returned; the agent is *ready* while it is started and every component is `ok`.
A component whose background task died reports itself `failed` with the error
(`Settings.report_status(label, exc)`), and `ok` again once it recovered
(`report_status(label, None)`); the agent keeps running either way.

Everything here runs on the event loop; nothing blocks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from agent.telemetry.metrics import AgentMetrics


class Status(str, enum.Enum):
    """A component's lifecycle status; the value is the word shown in `/readyz`."""

    STARTING = "starting"
    OK = "ok"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Phase(str, enum.Enum):
    """Where the service as a whole is in its lifecycle."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ComponentHealth:
    status: Status
    error: str | None = None


def split_label(name: str) -> tuple[str, str]:
    """`receiver:otlp` → (`receiver`, `otlp`); a label without a kind gets kind `service`."""
    kind, sep, component = name.partition(":")
    if not sep:
        return "service", name
    return kind, component


def describe_error(error: BaseException) -> str:
    """A short, single-line description of an error for the health snapshot."""
    text = str(error).strip().replace("\n", " ")
    name = type(error).__name__
    return f"{name}: {text}" if text else name


class Health:
    """Statuses of every component, keyed by `kind:id`, plus the service phase."""

    def __init__(self, metrics: AgentMetrics | None = None) -> None:
        self._metrics = metrics
        self._components: dict[str, ComponentHealth] = {}
        self._gauges: dict[str, Any] = {}
        self._phase = Phase.STARTING

    # -- components -----------------------------------------------------------------------

    def set(self, name: str, status: Status | str, error: BaseException | str | None = None) -> None:
        """Record `status` for component `name`; `error` explains a `failed` status."""
        status = Status(status)
        if isinstance(error, BaseException):
            message: str | None = describe_error(error)
        else:
            message = error
        if status is not Status.FAILED:
            message = None
        self._components[name] = ComponentHealth(status, message)
        self._set_gauge(name, 1.0 if status is Status.OK else 0.0)

    def report(self, name: str, error: BaseException | None) -> None:
        """`Settings.report_status`: an error marks `name` failed, None marks it ok again."""
        if error is None:
            self.set(name, Status.OK)
        else:
            self.set(name, Status.FAILED, error)

    def get(self, name: str) -> ComponentHealth | None:
        return self._components.get(name)

    def _set_gauge(self, name: str, value: float) -> None:
        if self._metrics is None:
            return
        gauge = self._gauges.get(name)
        if gauge is None:
            kind, component = split_label(name)
            gauge = self._gauges[name] = self._metrics.component_up.labels(kind=kind, component=component)
        gauge.set(value)

    # -- service --------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    def mark_started(self) -> None:
        """Every component started: the agent may become ready."""
        self._phase = Phase.RUNNING

    def mark_stopping(self) -> None:
        """Shutdown began: the agent is no longer ready (load balancers stop sending)."""
        self._phase = Phase.STOPPING

    def mark_stopped(self) -> None:
        self._phase = Phase.STOPPED

    @property
    def ready(self) -> bool:
        """True while the service runs and every component is ok."""
        return self._phase is Phase.RUNNING and all(
            c.status is Status.OK for c in self._components.values()
        )

    @property
    def alive(self) -> bool:
        """True until the service stopped.

        A failed component does not make the agent dead: restarting the process would not
        fix a peer that is down, and the rest of the agent keeps working. A loop that is
        stuck cannot answer `/healthz` at all, which is what the probe detects.
        """
        return self._phase is not Phase.STOPPED

    def not_ok(self) -> dict[str, ComponentHealth]:
        """Components whose status is anything but ok."""
        return {name: c for name, c in self._components.items() if c.status is not Status.OK}

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view: overall status, service phase, and every component."""
        components: dict[str, dict[str, str]] = {}
        for name in sorted(self._components):
            c = self._components[name]
            entry = {"status": c.status.value}
            if c.error is not None:
                entry["error"] = c.error
            components[name] = entry
        return {
            "status": "ready" if self.ready else "not_ready",
            "service": self._phase.value,
            "components": components,
        }
