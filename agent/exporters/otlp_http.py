"""`otlp_http` (alias `otlphttp`): send traces, metrics and logs to an OTLP/HTTP server.

Each batch is one POST to `<endpoint>/v1/traces` (`/v1/metrics`, `/v1/logs`), or to the
signal's own URL when `traces_endpoint` (`metrics_endpoint`, `logs_endpoint`) is set. The
body is the batch's protobuf encoding as it is (`encoding: proto`, the default) or OTLP/JSON
(`encoding: json`).

```yaml
exporters:
  otlphttp:
    endpoint: https://collector.observability:4318
    tls: {ca_file: /etc/flowglass/ca.pem}
    headers: {authorization: "Bearer ${env:TOKEN}"}
    compression: gzip          # gzip (default), deflate, none
    encoding: proto            # or json
```

Guarantees (OTLP/HTTP specification): a 2xx answer is success, and a `partial_success` in
its body counts the rejected items as failed (`reason="partial"`); 429, 502, 503 and 504
are retried after the server's `Retry-After` (seconds or an HTTP date) when it sent one;
connection errors and timeouts are retried; every other status is permanent, and the
error carries the message of the `google.rpc.Status` in the body.

Connection pool mapping onto aiohttp: `max_conns_per_host` bounds connections per host,
`idle_conn_timeout` is how long an idle connection is kept, `disable_keep_alives` closes
each connection after its request. aiohttp keeps no more idle connections than were in use
at once, which the sending queue bounds by `num_consumers`, so `max_idle_conns` and
`max_idle_conns_per_host` are accepted and need no setting of their own;
`write_buffer_size` is accepted too (aiohttp writes each body in one call).
Bodies are compressed with gzip level 1: on OTLP it is several times faster than the
default level for a few percent more bytes; large bodies are compressed in a thread.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import time
import zlib
from datetime import UTC
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import msgspec
from google.protobuf.message import DecodeError
from google.rpc import status_pb2  # type: ignore[import-untyped]

if TYPE_CHECKING:  # aiohttp is imported on start, so agents that do not use it stay smaller.
    import aiohttp

import agent
from agent.component import ExporterFactory, Settings, Stability
from agent.config.tls import TLSClientConfig
from agent.config.types import ByteSize, Duration
from agent.errors import PermanentError, RetryableError
from agent.exporters.http import check_url, open_session
from agent.exporters.otlp_grpc import decode_partial_success, raise_for_partial_success
from agent.exporters.sending import (
    SENDING_UPSTREAM_OPTIONS,
    SYSTEM_CLOCK,
    Clock,
    QueuedExporter,
    RetryConfig,
    SendingQueueConfig,
)
from agent.model import Batch, Signal, otlp_json

PATHS = {Signal.TRACES: "v1/traces", Signal.METRICS: "v1/metrics", Signal.LOGS: "v1/logs"}

_RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
_CONTENT_TYPES = {"proto": "application/x-protobuf", "json": "application/json"}
_OWN_HEADERS = frozenset({"content-type", "content-encoding", "content-length"})
_GZIP_LEVEL = 1
#: Bodies at least this large are compressed in a thread (zlib releases the GIL).
_THREAD_COMPRESS_BYTES = 256 * 1024
#: At most this much of a response body is read (responses are small status messages).
_MAX_RESPONSE_BYTES = 1024 * 1024
#: partial_success keys in an OTLP/JSON response, per signal (lowerCamelCase, then proto names).
_JSON_REJECTED = {
    Signal.TRACES: ("rejectedSpans", "rejected_spans"),
    Signal.METRICS: ("rejectedDataPoints", "rejected_data_points"),
    Signal.LOGS: ("rejectedLogRecords", "rejected_log_records"),
}


class OTLPHTTPExporterConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The Collector's `otlphttp` exporter options (`confighttp` client plus `exporterhelper`)."""

    __upstream_options__: ClassVar[frozenset[str]] = frozenset({
        "auth",
        "middlewares",
        "cookies",
        "compression_params",
        "http2_read_idle_timeout",
        "http2_ping_timeout",
        "force_attempt_http2",
        "profiles_endpoint",
        "tls.reload_interval",
        "tls.include_system_ca_certs_pool",
        "tls.cipher_suites",
        "tls.curve_preferences",
    }) | SENDING_UPSTREAM_OPTIONS

    endpoint: str = ""
    traces_endpoint: str = ""
    metrics_endpoint: str = ""
    logs_endpoint: str = ""
    tls: TLSClientConfig = msgspec.field(default_factory=TLSClientConfig)
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    compression: str = "gzip"
    encoding: Literal["proto", "json"] = "proto"
    proxy_url: str = ""
    timeout: Duration = Duration(30.0)
    read_buffer_size: ByteSize = ByteSize(0)
    write_buffer_size: ByteSize = ByteSize(512 * 1024)
    max_idle_conns: int = 100
    max_idle_conns_per_host: int = 0
    max_conns_per_host: int = 0
    idle_conn_timeout: Duration = Duration(90.0)
    disable_keep_alives: bool = False
    sending_queue: SendingQueueConfig = msgspec.field(default_factory=SendingQueueConfig)
    retry_on_failure: RetryConfig = msgspec.field(default_factory=RetryConfig)

    def __post_init__(self) -> None:
        if not (self.endpoint or self.traces_endpoint or self.metrics_endpoint or self.logs_endpoint):
            raise ValueError("set endpoint (a base URL), or traces_endpoint, metrics_endpoint or logs_endpoint")
        for name in ("endpoint", "traces_endpoint", "metrics_endpoint", "logs_endpoint", "proxy_url"):
            value = getattr(self, name)
            if value:
                check_url(name, value)
        if self.compression not in ("gzip", "deflate", "none", ""):
            raise ValueError(
                f"compression {self.compression!r} is not supported by the HTTP exporter; "
                "use gzip, deflate or none"
            )
        for key in self.headers:
            if key.lower() in _OWN_HEADERS:
                raise ValueError(f"headers: {key} is set by the exporter from encoding and compression")
        for name in ("max_idle_conns", "max_idle_conns_per_host", "max_conns_per_host"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    def url(self, signal: Signal) -> str | None:
        """Where batches of `signal` go, or None when nothing is configured for it."""
        own = {
            Signal.TRACES: self.traces_endpoint,
            Signal.METRICS: self.metrics_endpoint,
            Signal.LOGS: self.logs_endpoint,
        }[signal]
        if own:
            return own
        if self.endpoint:
            return f"{self.endpoint.rstrip('/')}/{PATHS[signal]}"
        return None


class OTLPHTTPExporter(QueuedExporter):
    """Posts every signal to its OTLP/HTTP URL through one aiohttp session."""

    def __init__(self, settings: Settings, config: OTLPHTTPExporterConfig, *, clock: Clock = SYSTEM_CLOCK) -> None:
        """`clock` is for tests: backoff waits go through it."""
        super().__init__(
            settings,
            sending_queue=config.sending_queue,
            retry_on_failure=config.retry_on_failure,
            timeout=config.timeout,
            clock=clock,
        )
        # JSON is encoded at send time; protobuf bytes are cached before queueing.
        self.encode_on_submit = config.encoding == "proto"
        self._config = config
        self._urls = {signal: config.url(signal) for signal in Signal}
        self._headers = {
            "User-Agent": f"flowglass/{agent.__version__}",
            **config.headers,
            "Content-Type": _CONTENT_TYPES[config.encoding],
        }
        if config.compression in ("gzip", "deflate"):
            self._headers["Content-Encoding"] = config.compression
        self._proxy = config.proxy_url or None
        self._session: aiohttp.ClientSession | None = None

    async def _open(self) -> None:
        cfg = self._config
        pool: dict[str, Any] = (
            {"force_close": True} if cfg.disable_keep_alives else {"keepalive_timeout": float(cfg.idle_conn_timeout)}
        )
        # The sender bounds each attempt with `timeout`; the session adds no limit of its own.
        self._session = open_session(self._settings.label, cfg.tls, self._urls.values(),
                                     read_bufsize=int(cfg.read_buffer_size),
                                     limit_per_host=cfg.max_conns_per_host, **pool)
        self._settings.logger.info(
            "The OTLP/HTTP exporter started.",
            extra={"component": self._settings.label,
                   "urls": {s.value: u for s, u in self._urls.items() if u}},
        )

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _send(self, batch: Batch) -> None:
        url = self._urls[batch.signal]
        if url is None:
            raise PermanentError(
                f"no URL for {batch.signal.value}: set endpoint or {batch.signal.value}_endpoint"
            )
        if self._session is None:
            raise RetryableError(f"exporter {self._settings.label} is not started")
        body = await self._body(batch)
        import aiohttp

        try:
            async with self._session.post(url, data=body, headers=self._headers, proxy=self._proxy) as resp:
                status = resp.status
                content_type = resp.headers.get("Content-Type", "")
                retry_after = resp.headers.get("Retry-After")
                payload = await _read_limited(resp, _MAX_RESPONSE_BYTES)
        except aiohttp.ClientError as exc:
            raise RetryableError(f"cannot send to {url}: {exc or type(exc).__name__}") from exc
        if 200 <= status < 300:
            rejected, message = _partial_success(batch.signal, content_type, payload)
            raise_for_partial_success(self._settings, batch, rejected, message)
            return
        reason = f"the server answered HTTP {status}: {_error_message(content_type, payload)}"
        if status in _RETRYABLE_STATUSES:
            raise RetryableError(reason, retry_after=parse_retry_after(retry_after))
        raise PermanentError(reason)

    async def _body(self, batch: Batch) -> bytes:
        data = batch.serialize() if self._config.encoding == "proto" else otlp_json.encode(batch.message)
        compression = self._config.compression
        if compression not in ("gzip", "deflate"):
            return data
        if len(data) >= _THREAD_COMPRESS_BYTES:
            return await asyncio.to_thread(compress, data, compression)
        return compress(data, compression)


def compress(data: bytes, compression: str) -> bytes:
    """`data` in HTTP `Content-Encoding` `gzip` or `deflate` (the zlib format)."""
    if compression == "gzip":
        return gzip.compress(data, compresslevel=_GZIP_LEVEL, mtime=0)
    return zlib.compress(data, _GZIP_LEVEL)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delay-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        total += len(chunk)
        if total >= limit:
            break
    return b"".join(chunks)[:limit]


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def _partial_success(signal: Signal, content_type: str, payload: bytes) -> tuple[int, str]:
    if not payload:
        return 0, ""
    if not _is_json(content_type):
        return decode_partial_success(signal, payload)
    try:
        doc = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return 0, ""
    partial = doc.get("partialSuccess", doc.get("partial_success")) if isinstance(doc, dict) else None
    if not isinstance(partial, dict):
        return 0, ""
    camel, snake = _JSON_REJECTED[signal]
    try:
        # OTLP/JSON writes int64 values as strings.
        rejected = int(partial.get(camel, partial.get(snake, 0)) or 0)
    except (TypeError, ValueError):
        rejected = 0
    message = partial.get("errorMessage", partial.get("error_message", ""))
    return rejected, str(message or "")


def _error_message(content_type: str, payload: bytes) -> str:
    """The `google.rpc.Status` message of an error body, else the start of the body as text."""
    if not payload:
        return "empty body"
    if _is_json(content_type):
        try:
            doc = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("message"), str) and doc["message"]:
            return str(doc["message"])
    elif "protobuf" in content_type:
        try:
            status = status_pb2.Status.FromString(payload)
        except DecodeError:
            status = None
        if status is not None and status.message:
            return str(status.message)
    return payload[:200].decode("utf-8", "replace").strip() or "empty body"


FACTORY = ExporterFactory(
    type="otlp_http",
    aliases=("otlphttp",),
    config_type=OTLPHTTPExporterConfig,
    description="Sends traces, metrics and logs to an OTLP/HTTP server (protobuf or JSON).",
    signals={Signal.TRACES: Stability.BETA, Signal.METRICS: Stability.BETA, Signal.LOGS: Stability.BETA},
    create=OTLPHTTPExporter,
)
