from __future__ import annotations

from agent.telemetry.health import Health, Phase, Status, split_label
from agent.telemetry.metrics import AgentMetrics


def _up(metrics: AgentMetrics, kind: str, component: str) -> float | None:
    return metrics.registry.get_sample_value(
        "flowglass_component_up", {"kind": kind, "component": component}
    )


def test_ready_needs_start_and_every_component_ok() -> None:
    health = Health()
    health.set("receiver:otlp", Status.OK)
    assert not health.ready  # the service has not said it started
    health.mark_started()
    assert health.ready
    health.set("exporter:kafka", "starting")
    assert not health.ready
    health.set("exporter:kafka", "ok")
    assert health.ready
    health.mark_stopping()
    assert not health.ready
    assert health.phase is Phase.STOPPING


def test_report_marks_failed_with_error_then_ok() -> None:
    health = Health()
    health.mark_started()
    health.report("exporter:kafka/edge", ConnectionError("broker down"))
    assert not health.ready
    snap = health.snapshot()
    assert snap["status"] == "not_ready"
    assert snap["components"]["exporter:kafka/edge"] == {
        "status": "failed", "error": "ConnectionError: broker down",
    }
    assert list(health.not_ok()) == ["exporter:kafka/edge"]
    health.report("exporter:kafka/edge", None)
    assert health.ready
    assert health.snapshot() == {
        "status": "ready", "service": "running", "components": {"exporter:kafka/edge": {"status": "ok"}},
    }


def test_error_is_dropped_when_status_is_not_failed() -> None:
    health = Health()
    health.set("receiver:otlp", Status.STOPPED, error="left over")
    assert health.get("receiver:otlp") is not None
    assert health.snapshot()["components"]["receiver:otlp"] == {"status": "stopped"}


def test_component_up_gauge_follows_status() -> None:
    metrics = AgentMetrics()
    health = Health(metrics)
    health.set("receiver:otlp", "starting")
    assert _up(metrics, "receiver", "otlp") == 0.0
    health.set("receiver:otlp", "ok")
    assert _up(metrics, "receiver", "otlp") == 1.0
    health.report("receiver:otlp", RuntimeError("listener died"))
    assert _up(metrics, "receiver", "otlp") == 0.0
    health.set("telemetry", "ok")
    assert _up(metrics, "service", "telemetry") == 1.0


def test_alive_until_stopped() -> None:
    health = Health()
    health.report("exporter:otlp", RuntimeError("down"))
    assert health.alive  # a failed component does not make the process dead
    health.mark_stopped()
    assert not health.alive


def test_split_label() -> None:
    assert split_label("exporter:kafka/edge") == ("exporter", "kafka/edge")
    assert split_label("service") == ("service", "service")
