"""`JaegerGRPCExporter`: the api_v2 `PostSpans` exchange, on the `otlp_grpc` client.

It is the OTLP/gRPC exporter with another call: the channel options, TLS, headers,
compression, timeouts and the status classification are inherited; `_open` opens the
channel with the PostSpans method and `_send` translates a batch (from its OTLP encoding,
made on submit as for `otlp_grpc`) and makes one call per resource.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from agent.component import Settings
from agent.errors import PermanentError, RetryableError, StartError
from agent.exporters.jaeger import JaegerExporterConfig
from agent.exporters.jaeger.translate import MalformedError, Translator
from agent.exporters.otlp_grpc import _COMPRESSIONS, OTLPGRPCExporter, status_error
from agent.exporters.sending import SYSTEM_CLOCK, Clock
from agent.model import Batch

POST_SPANS = "/jaeger.api_v2.CollectorService/PostSpans"


@dataclass
class _Progress:
    """The PostSpans requests of one batch and how far sending them got."""

    requests: list[tuple[bytes, int]]  # (PostSpansRequest bytes, spans)
    done: int = 0  # requests answered, successfully or permanently
    rejected: int = 0  # spans of the requests refused permanently
    error: str = ""  # the first permanent refusal


class JaegerGRPCExporter(OTLPGRPCExporter):
    """Sends traces to a Jaeger 1 collector's `CollectorService/PostSpans`."""

    def __init__(self, settings: Settings, config: JaegerExporterConfig, *, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(settings, config, clock=clock)
        self._translator = Translator()
        self._post: Any = None
        # Batches being retried, with their requests and progress. A batch in retry is
        # always in the hands of one sending task, so this holds at most one entry per
        # task, plus entries of batches given up on, which are evicted oldest first
        # (evicting one costs at most a duplicate, never a loss).
        self._progress: OrderedDict[Batch, _Progress] = OrderedDict()
        self._progress_limit = max(64, 2 * config.sending_queue.num_consumers)

    async def _open(self) -> None:
        config = self._config
        options = config.channel_options()
        compression = _COMPRESSIONS[config.compression]
        if self._tls:
            try:
                ca, cert, key = config.tls.read()
            except OSError as exc:
                raise StartError(f"exporter {self._settings.label}: cannot read a TLS file: {exc}") from exc
            credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
            self._channel = grpc.aio.secure_channel(self._target, credentials, options, compression)
        else:
            self._channel = grpc.aio.insecure_channel(self._target, options, compression)
        # Bytes in (the translator writes the request), bytes out (the response is empty).
        self._post = self._channel.unary_unary(POST_SPANS)
        self._settings.logger.info(
            "The Jaeger exporter started (api_v2 gRPC).",
            extra={"component": self._settings.label, "endpoint": self._target, "tls": self._tls},
        )

    async def _send(self, batch: Batch) -> None:
        if self._post is None:
            raise RetryableError(f"exporter {self._settings.label} is not started")
        progress = self._progress.pop(batch, None)
        if progress is None:
            try:
                progress = _Progress(self._translator.requests(batch.serialize()))
            except MalformedError as exc:
                raise PermanentError(str(exc)) from None
        finished = False
        try:
            await self._post_all(progress)
            finished = True
        finally:
            if not finished:  # retryable failure, timeout or cancellation: resume later
                self._remember(batch, progress)
        if progress.rejected:
            raise PermanentError(
                f"the collector refused {progress.rejected} of {batch.items} spans: {progress.error}",
                rejected=progress.rejected,
            )

    async def _post_all(self, progress: _Progress) -> None:
        """Make the calls not yet answered; raise the first retryable failure."""
        while progress.done < len(progress.requests):
            body, spans = progress.requests[progress.done]
            try:
                await self._post(
                    body,
                    timeout=self._call_timeout,
                    metadata=self._metadata,
                    wait_for_ready=self._config.wait_for_ready,
                )
            except grpc.aio.AioRpcError as err:
                error = status_error(err.code(), err.details(), err.trailing_metadata())
                if not isinstance(error, PermanentError):
                    raise error from None
                progress.rejected += spans
                progress.error = progress.error or str(error)
            progress.done += 1

    def _remember(self, batch: Batch, progress: _Progress) -> None:
        self._progress[batch] = progress
        while len(self._progress) > self._progress_limit:
            self._progress.popitem(last=False)
