"""One interceptor maps gateway exceptions to gRPC statuses; callers never see a stack trace.

It also decodes requests leniently: bytes that are no well-formed message (malformed protobuf, invalid
UTF-8 in a string field) reach the handler as a marker, which is answered INVALID_ARGUMENT with a plain
message — never gRPC's UNKNOWN naming a parser's exception class.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeAlias

import grpc
import structlog

from .audit.errors import AuditUnavailable
from .bounds import shown_message
from .errors import (
    RETRY_AFTER_METADATA_KEY,
    GatewayError,
    InvalidArgument,
    ResourceExhausted,
    reason_trailers,
)
from .store.base import StoreUnavailable

log = structlog.get_logger("mustcheck.gateway")

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
# Told of each request that could not be decoded (the method, the call) before it is refused: the audit.
MalformedObserver: TypeAlias = Callable[[str, Context, GatewayError], Awaitable[None]]


class Undecodable:
    """Stands for a request whose bytes could not be decoded, with the refusal to answer it (another
    binding passes its own: the HTTP binding's malformed JSON, wrong content type, oversized body)."""

    __slots__ = ("refusal",)

    def __init__(self, refusal: GatewayError | None = None) -> None:
        self.refusal = refusal


_UNDECODABLE = Undecodable()


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer``, answering :data:`_UNDECODABLE` instead of raising on bytes it cannot decode."""
    if deserializer is None:
        return None
    decode = deserializer

    def lenient(data: bytes) -> Any:
        try:
            return decode(data)
        except Exception:
            return _UNDECODABLE

    return lenient


async def _decoded(request: Any, method: str, context: Context, observe: MalformedObserver | None) -> Any:
    if isinstance(request, Undecodable):
        refusal = request.refusal or InvalidArgument(
            "the request could not be decoded: it is not a well-formed protobuf message of this method "
            "(or a string field is not valid UTF-8)",
            reason="request.malformed",
        )
        log.warning("malformed_request", method=method, reason=refusal.reason)
        if observe is not None:
            await observe(method, context, refusal)
        # Audited once, by the observer: a streaming handler that meets it mid-stream records no second one.
        refusal.accounted = observe is not None
        raise refusal
    return request


async def _decoded_stream(
    requests: AsyncIterator[Any], method: str, context: Context, observe: MalformedObserver | None
) -> AsyncIterator[Any]:
    async for request in requests:
        yield await _decoded(request, method, context, observe)


async def _abort(error: BaseException, context: Context, method: str) -> NoReturn:
    """Abort the call with the status ``error`` carries, or INTERNAL with a reference for operators."""
    if isinstance(error, GatewayError):
        trailers = [*reason_trailers(error.reason)]
        if isinstance(error, ResourceExhausted) and error.retry_after_s is not None:
            trailers.append((RETRY_AFTER_METADATA_KEY, str(max(1, round(error.retry_after_s * 1000)))))
        context.set_trailing_metadata(tuple(trailers))
        await context.abort(error.status, shown_message(error.message))
    if isinstance(error, StoreUnavailable):
        log.warning("store_unavailable", method=method, error=str(error))
        context.set_trailing_metadata(reason_trailers("store.unavailable"))
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the list store is unavailable; try again shortly")
    if isinstance(error, AuditUnavailable):  # no answer leaves without its durable record (R10)
        log.warning("audit_unavailable", method=method, error=str(error))
        context.set_trailing_metadata(reason_trailers("audit.unavailable"))
        # Why (a full disk, a restarting writer) is for operators' logs; the caller learns what to do.
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            "the audit log cannot record calls now, so none is answered: try another gateway or later",
        )
    reference = uuid.uuid4().hex[:12]
    log.error("unhandled_error", method=method, reference=reference, exc_info=error)
    context.set_trailing_metadata(reason_trailers("internal"))
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (reference {reference})")


class GuardingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps each method's handler in :meth:`guard`, once, on the method's first call, and keeps it (the
    services registered on a server do not change), so that a call pays for no new closure and no new
    handler."""

    def __init__(self) -> None:
        self._guarded: dict[str, Handler] = {}

    def guard(self, handler: Handler, method: str) -> Handler:
        raise NotImplementedError

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
        guarded = self._guarded[method] = self.guard(handler, method)
        return guarded


class ErrorMapping(GuardingInterceptor):
    """Turns :class:`GatewayError` into its status and reason; anything else into INTERNAL."""

    def __init__(self, on_malformed: MalformedObserver | None = None) -> None:
        super().__init__()
        self._on_malformed = on_malformed

    def guard(self, handler: Handler, method: str) -> Handler:
        return _guard(handler, method, self._on_malformed)


def _guard(handler: Handler, method: str, observe: MalformedObserver | None = None) -> Handler:
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

        streamed = handler.stream_unary is not None

        async def guarded(request: Any, context: Context) -> Any:
            try:
                decoded = (
                    _decoded_stream(request, method, context, observe)
                    if streamed
                    else await _decoded(request, method, context, observe)
                )
                return await answer(decoded, context)
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await _abort(error, context, method)

        return make(
            guarded,
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
        streaming: Callable[[Any, Context], AsyncIterator[Any]] = handler.unary_stream  # type: ignore[assignment]

        async def guarded_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async for item in streaming(await _decoded(request, method, context, observe), context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await _abort(error, context, method)

        return grpc.unary_stream_rpc_method_handler(
            guarded_stream,
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    return handler
