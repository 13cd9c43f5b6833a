"""One interceptor maps gateway exceptions to gRPC statuses; callers never see a stack trace."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeAlias

import grpc
import structlog

from .audit.errors import AuditUnavailable
from .errors import REASON_METADATA_KEY, RETRY_AFTER_METADATA_KEY, GatewayError, ResourceExhausted
from .store.base import StoreUnavailable

log = structlog.get_logger("mustcheck.gateway")

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


async def _abort(error: BaseException, context: Context, method: str) -> NoReturn:
    """Abort the call with the status ``error`` carries, or INTERNAL with a reference for operators."""
    if isinstance(error, GatewayError):
        trailers = [(REASON_METADATA_KEY, error.reason)]
        if isinstance(error, ResourceExhausted) and error.retry_after_s is not None:
            trailers.append((RETRY_AFTER_METADATA_KEY, str(max(1, round(error.retry_after_s * 1000)))))
        context.set_trailing_metadata(tuple(trailers))
        await context.abort(error.status, error.message)
    if isinstance(error, StoreUnavailable):
        log.warning("store_unavailable", method=method, error=str(error))
        context.set_trailing_metadata(((REASON_METADATA_KEY, "store.unavailable"),))
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the list store is unavailable; try again shortly")
    if isinstance(error, AuditUnavailable):  # no answer leaves without its durable record (R10)
        log.warning("audit_unavailable", method=method, error=str(error))
        context.set_trailing_metadata(((REASON_METADATA_KEY, "audit.unavailable"),))
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"the audit log cannot record calls now: {error}")
    reference = uuid.uuid4().hex[:12]
    log.error("unhandled_error", method=method, reference=reference, exc_info=error)
    context.set_trailing_metadata(((REASON_METADATA_KEY, "internal"),))
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (reference {reference})")


class ErrorMapping(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Turns :class:`GatewayError` into its status and reason; anything else into INTERNAL.

    A method's guarded handler is made once, on its first call, and kept (the services registered on
    a server do not change), so that a call pays for no new closure and no new handler.
    """

    def __init__(self) -> None:
        self._guarded: dict[str, Handler] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        method = handler_call_details.method
        guarded = self._guarded.get(method)
        if guarded is not None:
            return guarded
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        guarded = self._guarded[method] = _guard(handler, method)
        return guarded


def _guard(handler: Handler, method: str) -> Handler:
    """``handler`` with its exceptions mapped by :func:`_abort`."""
    if handler.unary_unary is not None or handler.stream_unary is not None:
        # One answer for one request, or for a stream of them.
        answer: Callable[[Any, Context], Awaitable[Any]] = (
            handler.unary_unary or handler.stream_unary  # type: ignore[assignment]
        )
        make = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary is not None
            else grpc.stream_unary_rpc_method_handler
        )

        async def guarded(request: Any, context: Context) -> Any:
            try:
                return await answer(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await _abort(error, context, method)

        return make(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
        streaming: Callable[[Any, Context], AsyncIterator[Any]] = handler.unary_stream  # type: ignore[assignment]

        async def guarded_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async for item in streaming(request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await _abort(error, context, method)

        return grpc.unary_stream_rpc_method_handler(
            guarded_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler
