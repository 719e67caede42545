"""A Jaeger 1 collector for tests: `CollectorService/PostSpans` built from the generated `proto/` code.

Requests are decoded with `agent._proto.jaeger.api_v2.collector_pb2`, so a request the real
collector could not parse fails here too. `script` holds what to answer, in order (then OK).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
import grpc.aio

from agent._proto.jaeger.api_v2 import collector_pb2, model_pb2

Action = Callable[[grpc.aio.ServicerContext], Awaitable[None]]


@dataclass
class Call:
    batch: model_pb2.Batch
    metadata: dict[str, str]
    accepted: bool


@dataclass
class Collector:
    port: int = 0
    calls: list[Call] = field(default_factory=list)
    script: list[Action | None] = field(default_factory=list)
    server: grpc.aio.Server | None = None

    @property
    def batches(self) -> list[model_pb2.Batch]:
        """The batches answered OK, in order."""
        return [c.batch for c in self.calls if c.accepted]

    @property
    def spans(self) -> list[model_pb2.Span]:
        return [s for b in self.batches for s in b.spans]

    async def _post_spans(
        self, request: collector_pb2.PostSpansRequest, context: grpc.aio.ServicerContext
    ) -> collector_pb2.PostSpansResponse:
        md = {m.key: m.value for m in context.invocation_metadata() or ()}
        action = self.script.pop(0) if self.script else None
        self.calls.append(Call(request.batch, md, action is None))
        if action is not None:
            await action(context)
        return collector_pb2.PostSpansResponse()

    async def start(self, credentials: grpc.ServerCredentials | None = None) -> Collector:
        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(
            self._post_spans,
            request_deserializer=collector_pb2.PostSpansRequest.FromString,
            response_serializer=collector_pb2.PostSpansResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler("jaeger.api_v2.CollectorService", {"PostSpans": handler}),
        ))
        address = "127.0.0.1:0"
        self.port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        await server.start()
        self.server = server
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)


def fail(code: grpc.StatusCode, details: str) -> Action:
    async def action(context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, details)
    return action
