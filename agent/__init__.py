"""Flowglass: a telemetry agent for machine-learning services, shaped like the OpenTelemetry Collector."""

from __future__ import annotations

__version__ = "0.1.0"
