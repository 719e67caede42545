"""`prometheus`: serve the pipeline's metrics at `/metrics` for a Prometheus to scrape.

Metrics are translated with the same rules as `prometheusremotewrite`
(`agent.model.prometheus`) and the latest value of each series is kept until it has not
been updated for `metric_expiration`. Delta sums and histograms are added up into
cumulative values (bounded by `max_series` below). Exponential histograms are served as
classic `_bucket{le}` series (the text formats have no native histograms).

```yaml
exporters:
  prometheus:
    endpoint: 0.0.0.0:8889
    namespace: ml
    const_labels: {cluster: eu-1}
    metric_expiration: 5m
    enable_open_metrics: true     # OpenMetrics when the scraper asks for it
```

The HTTP server is a small HTTP/1.1 server on asyncio streams (like the agent's telemetry
server): `GET /metrics` only, requests bounded (8 KiB of head, 10 s to send it), every
response closes its connection. At most `MAX_SERIES` series are held; points of new
series past that are dropped and counted
(`flowglass_exporter_prometheus_dropped_points{reason="max_series"}`).
"""

from __future__ import annotations

import math
import time
from typing import ClassVar

import msgspec

from agent.component import ExporterFactory, Settings, Stability
from agent.config.types import Duration
from agent.errors import PermanentError, StartError
from agent.model import Batch, Signal
from agent.model.prometheus import TranslationOptions, Translator
from agent.model.prometheus_cumulative import Cumulator
from agent.model.prometheus_names import format_float
from agent.model.prometheus_series import Family, Labels, MetricType, NativeHistogram, is_stale
from agent.telemetry.httpd import HTTPServer, Response
from agent.telemetry.server import parse_address

MAX_SERIES = 1_000_000
_TEXT = "text/plain; version=0.0.4; charset=utf-8"
_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_TYPE_WORDS = {
    MetricType.COUNTER: "counter", MetricType.GAUGE: "gauge", MetricType.HISTOGRAM: "histogram",
    MetricType.SUMMARY: "summary", MetricType.INFO: "info",
}


class EnabledConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    enabled: bool = False


class PrometheusExporterConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The Collector's `prometheus` exporter options."""

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({
        "tls", "without_scope_info", "translation_strategy", "include_metadata", "cors",
        "auth", "max_request_body_size", "response_headers",
    })

    endpoint: str = ""
    namespace: str = ""
    const_labels: dict[str, str] = msgspec.field(default_factory=dict)
    send_timestamps: bool = False
    metric_expiration: Duration = Duration(300.0)
    resource_to_telemetry_conversion: EnabledConfig = msgspec.field(default_factory=EnabledConfig)
    enable_open_metrics: bool = False
    add_metric_suffixes: bool = True

    def __post_init__(self) -> None:
        if not self.endpoint:
            raise ValueError("endpoint is required: the host:port to serve /metrics on, like 0.0.0.0:8889")
        try:
            parse_address(self.endpoint)
        except ValueError as exc:
            raise ValueError(f"endpoint: {exc}") from None
        if self.metric_expiration <= 0:
            raise ValueError("metric_expiration must be greater than 0")
        for name in self.const_labels:
            if not name or name.startswith("__"):
                raise ValueError(f"const_labels: {name!r} is not a usable label name")


def _escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_text(labels: Labels, extra: str = "") -> tuple[str, str]:
    """(metric name, `{...}` label text) of a label tuple."""
    name = ""
    parts = []
    for key, value in labels:
        if key == "__name__":
            name = value
        else:
            parts.append(f'{key}="{_escape_value(value)}"')
    if extra:
        parts.append(extra)
    return name, ("{" + ",".join(parts) + "}") if parts else ""


def classic_buckets(hist: NativeHistogram) -> list[tuple[float, int]]:
    """A native histogram as cumulative (upper bound, count) buckets, ending with +Inf."""
    base = 2.0 ** (2.0 ** -hist.schema)
    running = sum(sum(counts) for _, counts in hist.negative) + hist.zero_count
    out: list[tuple[float, int]] = []
    if running:
        out.append((hist.zero_threshold, running))
    for start, counts in hist.positive:
        for i, c in enumerate(counts):
            running += c
            out.append((base ** (start + i), running))
    out.append((math.inf, hist.count))
    return out


class PrometheusExporter:
    """Keeps the latest value of each series and serves them in the text or OpenMetrics format."""

    mutates_data = False

    def __init__(self, settings: Settings, config: PrometheusExporterConfig) -> None:
        self._settings = settings
        self._config = config
        self._label = settings.label
        self._translator = Translator(
            TranslationOptions(
                namespace=config.namespace,
                add_metric_suffixes=config.add_metric_suffixes,
                resource_to_telemetry_conversion=config.resource_to_telemetry_conversion.enabled,
                target_info=True,
                external_labels=config.const_labels,
            ),
            Cumulator(MAX_SERIES, int(config.metric_expiration * 1_000_000_000)),
        )
        #: labels → (family, value, timestamp ms, monotonic time of the last update)
        self._series: dict[Labels, tuple[Family, float, int, float]] = {}
        m = settings.metrics
        self._dropped = m.prometheus_dropped_points
        self._sent = m.exporter_sent.labels(self._label, Signal.METRICS.value)
        m.prometheus_streams.labels(self._label).set_function(lambda: len(self._series))
        self._http: HTTPServer | None = None
        self.port: int | None = None

    async def start(self) -> None:
        if self._http is not None:
            return
        host, port = parse_address(self._config.endpoint)
        http = HTTPServer(self._respond)
        try:
            await http.start(host, port, reuse_port=self._settings.shared_ports)
        except OSError as exc:
            raise StartError(
                f"exporter {self._label} cannot listen on {self._config.endpoint}: {exc.strerror or exc}"
            ) from exc
        self._http = http
        self.port = http.port
        self._settings.logger.info("The Prometheus exporter serves /metrics.",
                                   extra={"component": self._label, "port": self.port})

    async def shutdown(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def consume(self, batch: Batch) -> None:
        if batch.signal is not Signal.METRICS:
            raise PermanentError(f"the prometheus exporter takes metrics, not {batch.signal.value}")
        now = time.monotonic()
        translation = self._translator.translate(batch.message, time.time_ns())
        dropped = dict(translation.dropped)
        for family, labels, value, ts in translation.samples:
            self._put(labels, (family, value, ts, now), dropped)
        for family, labels, hist in translation.histograms:
            name = dict(labels)["__name__"]
            rest = tuple(kv for kv in labels if kv[0] != "__name__")
            for bound, count in classic_buckets(hist):
                key = tuple(sorted((*rest, ("__name__", f"{name}_bucket"), ("le", format_float(bound)))))
                self._put(key, (family, float(count), hist.timestamp_ms, now), dropped)
            self._put(tuple(sorted((*rest, ("__name__", f"{name}_sum")))),
                      (family, hist.sum, hist.timestamp_ms, now), dropped)
            self._put(tuple(sorted((*rest, ("__name__", f"{name}_count")))),
                      (family, float(hist.count), hist.timestamp_ms, now), dropped)
        for reason, n in dropped.items():
            self._dropped.labels(self._label, reason).inc(n)
        self._sent.inc(batch.items)

    def _put(self, key: Labels, entry: tuple[Family, float, int, float], dropped: dict[str, int]) -> None:
        if is_stale(entry[1]):
            self._series.pop(key, None)  # a staleness marker: the series is gone
            return
        if key not in self._series and len(self._series) >= MAX_SERIES:
            dropped["max_series"] = dropped.get("max_series", 0) + 1
            return
        self._series[key] = entry

    def expire(self, now: float | None = None) -> int:
        """Forget series not updated within `metric_expiration`; how many were forgotten."""
        cutoff = (time.monotonic() if now is None else now) - self._config.metric_expiration
        old = [k for k, v in self._series.items() if v[3] < cutoff]
        for k in old:
            del self._series[k]
        return len(old)

    def render(self, open_metrics: bool = False) -> bytes:
        """Every series in the Prometheus text format (or OpenMetrics)."""
        self.expire()
        families: dict[str, tuple[Family, list[tuple[Labels, float, int]]]] = {}
        for labels, (family, value, ts, _) in self._series.items():
            entry = families.get(family.name)
            if entry is None:
                entry = families[family.name] = (family, [])
            entry[1].append((labels, value, ts))
        lines: list[str] = []
        stamps = self._config.send_timestamps
        for name in sorted(families):
            family, samples = families[name]
            type_word = _TYPE_WORDS.get(family.type, "unknown")
            head = name
            if open_metrics and family.type == MetricType.COUNTER and name.endswith("_total"):
                head = name[: -len("_total")]
            if open_metrics and name.endswith("target_info"):
                head, type_word = name[: -len("_info")], "info"
            if family.help:
                lines.append(f"# HELP {head} {_escape_help(family.help)}")
            lines.append(f"# TYPE {head} {type_word}")
            for labels, value, ts in sorted(samples, key=_first):
                metric, text = _label_text(labels)
                line = f"{metric}{text} {format_float(value)}"
                if stamps:
                    line += f" {ts / 1000:.3f}" if open_metrics else f" {ts}"
                lines.append(line)
        if open_metrics:
            lines.append("# EOF")
        return ("\n".join(lines) + "\n").encode() if lines else b""

    def _respond(self, method: str, path: str, headers: dict[str, str]) -> Response:
        if path != "/metrics":
            return 404, "text/plain", b"not found: try /metrics\n"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET is allowed\n"
        accept = headers.get("accept", "")
        open_metrics = self._config.enable_open_metrics and "application/openmetrics-text" in accept
        return 200, (_OPENMETRICS if open_metrics else _TEXT), self.render(open_metrics)


def _first(entry: tuple[Labels, float, int]) -> Labels:
    return entry[0]


FACTORY = ExporterFactory(
    type="prometheus",
    config_type=PrometheusExporterConfig,
    description="Serves the pipeline's metrics at /metrics for a Prometheus to scrape.",
    signals={Signal.METRICS: Stability.BETA},
    create=PrometheusExporter,
    listen_addresses=lambda config: [("http", config.endpoint)],
)
