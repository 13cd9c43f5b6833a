"""One entry point for a check-service call, whichever binding it arrives on.

The gRPC server runs each call through its interceptors (error mapping, then field bounds and refusal
audit) to the servicer. :class:`CallPipeline` builds exactly that chain — the same interceptor objects
around the same servicer's handlers, as the generated code registers them — for the methods the HTTP
binding offers, so that an HTTP call passes every step a gRPC call does (authentication, grants,
bounds, masking, audit before the answer, receipts, rate limits, refusal auditing) and none is copied.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias, cast

import grpc
from google.protobuf.message import Message

from mustcheck._generated.v1 import check_pb2, check_pb2_grpc

from ..interceptors import Undecodable
from .context import HttpCallContext

SERVICE = "mustcheck.v1.CheckService"
# The methods offered over HTTP/JSON (Watch, a server stream, stays on gRPC).
HTTP_METHODS = ("Check", "BatchCheck", "ReportOutcome", "ReceiptKeys")
_SERVICE_DESCRIPTOR = check_pb2.DESCRIPTOR.services_by_name["CheckService"]

Interceptor: TypeAlias = "grpc.aio.ServerInterceptor[Any, Any]"
Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable[Any]]
Unary = Callable[[Any, Any], Awaitable[Any]]


class _HandlerRecorder:
    """Stands for the server in ``add_CheckServiceServicer_to_server``: keeps the method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        return None

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.handlers.update(handlers)


class _CallDetails(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


class CallPipeline:
    """The check service's unary methods, each behind the gRPC server's own interceptors."""

    def __init__(
        self,
        servicer: check_pb2_grpc.CheckServiceServicer,
        interceptors: Sequence[Interceptor],
    ) -> None:
        recorder = _HandlerRecorder()
        check_pb2_grpc.add_CheckServiceServicer_to_server(servicer, cast(grpc.aio.Server, recorder))
        self._raw = recorder.handlers
        self._interceptors = tuple(interceptors)
        self._handlers: dict[str, tuple[Unary, type[Message]]] = {}

    @staticmethod
    def path(method: str) -> str:
        return f"/{SERVICE}/{method}"

    async def prepare(self) -> None:
        """Resolve each offered method through the interceptor chain, once."""
        for method in HTTP_METHODS:
            raw = self._raw[method]
            handler = await self._intercepted(method, raw)
            input_type = _SERVICE_DESCRIPTOR.methods_by_name[method].input_type
            request_type: type[Message] = getattr(check_pb2, input_type.name)
            self._handlers[method] = (cast(Unary, handler.unary_unary), request_type)

    async def _intercepted(self, method: str, raw: Any) -> Any:
        async def innermost(details: grpc.HandlerCallDetails) -> Any:
            return raw

        continuation: Continuation = innermost
        for interceptor in reversed(self._interceptors):
            continuation = _wrap(interceptor, continuation)
        return await continuation(_CallDetails(self.path(method)))

    def request_type(self, method: str) -> type[Message]:
        return self._handlers[method][1]

    async def call(self, method: str, request: Message | Undecodable, context: HttpCallContext) -> Message:
        """The answer, or :class:`.context.HttpAbort` with the status the gRPC binding would give."""
        handler, _ = self._handlers[method]
        return cast(Message, await handler(request, context))


def _wrap(interceptor: Interceptor, then: Continuation) -> Continuation:
    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return await interceptor.intercept_service(then, details)

    return continuation
