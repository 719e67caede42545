"""OTLP/HTTP: POST on the three signal paths, protobuf or JSON, on an `aiohttp.web` server.

Bodies are read with a bound, decompressed here (gzip, deflate) with the same bound on the
decompressed size — aiohttp's own decompression is turned off for that — and answered in
the request's encoding: the export response, or a `google.rpc.Status` on error.
"""

from __future__ import annotations

import os
import re
import ssl
import zlib
from collections.abc import Mapping

import grpc
from aiohttp import hdrs, web
from google.protobuf.message import DecodeError

from agent.component import Settings
from agent.errors import StartError
from agent.model import Batch, ClientInfo, Signal, count_items
from agent.model.otlp_json import OTLPJSONError
from agent.model.otlp_json import decode as decode_json
from agent.receivers.otlp import CORSConfig, HTTPServerConfig, split_endpoint
from agent.receivers.otlp.intake import SignalIntake
from agent.receivers.otlp.outcome import (
    DEFAULT_RETRY_AFTER,
    Outcome,
    export_response,
    export_response_json,
    retry_after_header,
    status_body,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

#: Request headers a browser may always send cross-origin (the CORS-safelisted ones).
_ALWAYS_ALLOWED_HEADERS = frozenset({"accept", "accept-language", "content-language", "content-type"})


class _Refusal(Exception):
    """A request refused before it reached the pipeline."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Decode a `Content-Encoding`, refusing output larger than `limit` bytes (zip bombs)."""
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        # "deflate" is the zlib format, but some senders use raw deflate.
        wbits = zlib.MAX_WBITS if body[:1] and (body[0] & 0x0F) == 8 else -zlib.MAX_WBITS
    else:
        raise _Refusal(
            415,
            "unsupported_media_type",
            f"Content-Encoding {encoding!r} is not supported; use gzip or deflate",
        )
    out = bytearray()
    data = body
    try:
        # Loop for gzip files of several members, as Go's reader does.
        while data:
            d = zlib.decompressobj(wbits)
            out += d.decompress(data, limit + 1 - len(out))
            if len(out) > limit:
                raise _Refusal(413, "too_large", f"the decompressed body is larger than {limit} bytes")
            if not d.eof:
                raise _Refusal(400, "decompression", f"the {encoding} body is truncated")
            data = d.unused_data if wbits > 16 else b""
    except zlib.error as exc:
        raise _Refusal(
            400, "decompression", f"the {encoding} body could not be decompressed: {exc}"
        ) from None
    return bytes(out)


def origin_matcher(patterns: list[str]) -> re.Pattern[str] | None:
    """A regex matching allowed origins; `*` stands for any run of characters."""
    if not patterns:
        return None
    parts = ["^" + ".*".join(re.escape(piece) for piece in p.lower().split("*")) + "$" for p in patterns]
    return re.compile("|".join(parts))


class _CORS:
    """Answers preflights and marks responses to allowed origins (the Collector's rs/cors)."""

    def __init__(self, config: CORSConfig) -> None:
        self.origins = origin_matcher(config.allowed_origins)
        self.any_origin = "*" in config.allowed_origins
        allowed = {h.lower() for h in config.allowed_headers}
        self.any_header = "*" in allowed
        self.allowed_headers = allowed | _ALWAYS_ALLOWED_HEADERS
        self.exposed = ", ".join(config.exposed_headers)
        self.max_age = config.max_age

    def allows(self, origin: str | None) -> bool:
        return (
            origin is not None and self.origins is not None and self.origins.match(origin.lower()) is not None
        )

    def mark(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        # The answer depends on Origin, so caches must key on it.
        response.headers.add(hdrs.VARY, hdrs.ORIGIN)
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or not self.allows(origin):
            return
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = "*" if self.any_origin else origin
        if self.exposed and request.method != hdrs.METH_OPTIONS:
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = self.exposed

    async def preflight(self, request: web.Request) -> web.Response:
        response = web.Response(status=204)
        # Only a preflight for a POST from an allowed origin with allowed headers gets the
        # Access-Control-Allow-* headers; the browser refuses the real request otherwise.
        method = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD, "")
        asked = [
            h.strip().lower() for h in request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS, "").split(",")
        ]
        asked = [h for h in asked if h]
        if not self.allows(request.headers.get(hdrs.ORIGIN)) or method.upper() != hdrs.METH_POST:
            return response
        if not self.any_header and any(h not in self.allowed_headers for h in asked):
            return response
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = hdrs.METH_POST
        if asked:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ", ".join(asked)
        if self.max_age:
            response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = str(self.max_age)
        return response


def _client_info(request: web.Request, include_metadata: bool) -> ClientInfo:
    if not include_metadata:
        return ClientInfo(request.remote)
    metadata: dict[str, tuple[str, ...]] = {}
    for key, value in request.headers.items():
        name = key.lower()
        if name.startswith(":") or name.endswith("-bin"):
            continue
        metadata[name] = (*metadata.get(name, ()), value)
    return ClientInfo(request.remote, metadata)


class _SignalHandler:
    """POST handler of one signal path."""

    def __init__(self, intake: SignalIntake, config: HTTPServerConfig) -> None:
        self._intake = intake
        self._signal = intake.signal
        self._limit = config.max_request_body_size
        self._include_metadata = config.include_metadata

    async def handle(self, request: web.Request) -> web.Response:
        intake = self._intake
        content_type = request.content_type
        if content_type not in (PROTOBUF, JSON):
            intake.refuse_request("unsupported_media_type")
            return web.Response(
                status=415, text=f"Content-Type {content_type!r} is not supported; use {PROTOBUF} or {JSON}"
            )
        is_json = content_type == JSON
        if intake.closed:
            intake.refuse_request("shutting_down")
            return self._error(
                503, "the receiver is shutting down; retry later", is_json, DEFAULT_RETRY_AFTER
            )
        try:
            batch = await self._decode(request, is_json)
        except _Refusal as refusal:
            intake.refuse_request(refusal.reason)
            return self._error(refusal.status, refusal.message, is_json)
        outcome = await intake.consume(batch)
        if outcome.is_success:
            return self._success(outcome, is_json)
        return self._error(outcome.http_status, outcome.message, is_json, outcome.retry_after)

    async def _decode(self, request: web.Request, is_json: bool) -> Batch:
        limit = self._limit
        too_large = _Refusal(413, "too_large", f"the body is larger than {limit} bytes")
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise too_large from None
        encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
        body = decompress(body, encoding, limit)
        client = _client_info(request, self._include_metadata)
        signal = self._signal
        if is_json:
            try:
                message = decode_json(signal, body)
            except OTLPJSONError as exc:
                raise _Refusal(
                    400,
                    "malformed",
                    f"the body is not a valid OTLP/JSON {signal.value} export request: {exc}",
                ) from None
            return Batch(signal, message, items=count_items(signal, message), client=client)
        try:
            return Batch.parse(signal, body, client)
        except DecodeError as exc:
            raise _Refusal(
                400, "malformed", f"the body is not a valid OTLP {signal.value} export request: {exc}"
            ) from None

    def _success(self, outcome: Outcome, is_json: bool) -> web.Response:
        if is_json:
            return web.Response(body=export_response_json(self._signal, outcome), content_type=JSON)
        return web.Response(body=export_response(self._signal, outcome), content_type=PROTOBUF)

    @staticmethod
    def _error(status: int, message: str, is_json: bool, retry_after: float | None = None) -> web.Response:
        code = _GRPC_CODE_OF_HTTP.get(status, grpc.StatusCode.UNKNOWN)
        response = web.Response(
            status=status,
            body=status_body(code, message, json=is_json),
            content_type=JSON if is_json else PROTOBUF,
        )
        if retry_after is not None:
            response.headers[hdrs.RETRY_AFTER] = retry_after_header(retry_after)
        return response


# The `google.rpc.Status.code` of an HTTP error body.
_GRPC_CODE_OF_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


class OTLPHttpServer:
    """An aiohttp server with POST routes for the signals in `intakes`."""

    def __init__(
        self,
        settings: Settings,
        config: HTTPServerConfig,
        intakes: Mapping[Signal, SignalIntake],
        *,
        grace: float,
        reuse_port: bool = False,
    ) -> None:
        self._settings = settings
        self._config = config
        self._intakes = intakes
        self._grace = grace
        self._reuse_port = reuse_port
        self._runner: web.AppRunner | None = None
        #: The bound port, once started.
        self.port: int | None = None

    def _app(self) -> web.Application:
        config = self._config
        # The body limit is enforced in the handler (with its own 413 answer); this is
        # aiohttp's guard for `request.read()`.
        app = web.Application(client_max_size=config.max_request_body_size)
        cors = _CORS(config.cors) if config.cors is not None and config.cors.allowed_origins else None
        for signal, intake in self._intakes.items():
            path = config.url_path(signal)
            app.router.add_post(path, _SignalHandler(intake, config).handle)
            if cors is not None:
                app.router.add_route(hdrs.METH_OPTIONS, path, cors.preflight)
        extra_headers = dict(config.response_headers)

        async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
            for name, value in extra_headers.items():
                response.headers[name] = value
            if cors is not None:
                cors.mark(request, response)

        if extra_headers or cors is not None:
            app.on_response_prepare.append(on_prepare)
        return app

    async def start(self) -> None:
        config = self._config
        ssl_context = None
        if config.tls is not None:
            try:
                ssl_context = config.tls.ssl_context()
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise StartError(
                    f"Receiver {self._settings.label} could not load its HTTP TLS certificate, key or client CA: {exc}."
                ) from exc
        host, port = split_endpoint(config.endpoint)
        # access_log=None: no line per request; auto_decompress=False: bodies are
        # decompressed by `decompress()` with a bound.
        runner = web.AppRunner(
            self._app(), access_log=None, auto_decompress=False, shutdown_timeout=self._grace
        )
        await runner.setup()
        site = web.TCPSite(
            runner, host or None, port, ssl_context=ssl_context, reuse_port=self._reuse_port or None
        )
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartError(
                f"Receiver {self._settings.label} could not listen for OTLP/HTTP on {config.endpoint}: {why}."
            ) from exc
        self._runner = runner
        addresses = runner.addresses
        self.port = int(addresses[0][1]) if addresses else port

    async def stop(self) -> None:
        """Close the listener, give requests in flight the `grace` set at creation, close connections."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
