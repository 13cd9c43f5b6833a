"""One interceptor maps gateway exceptions to gRPC statuses; callers never see a stack trace."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc
import structlog

from .errors import REASON_METADATA_KEY, GatewayError

log = structlog.get_logger("mustcheck.gateway")

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]


class ErrorMapping(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Turns :class:`GatewayError` into its status and reason; anything else into INTERNAL."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner: Callable[[Any, Any], Awaitable[Any]] = handler.unary_unary
        method = handler_call_details.method

        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await inner(request, context)
            except grpc.aio.AbortError:
                raise
            except GatewayError as error:
                context.set_trailing_metadata(((REASON_METADATA_KEY, error.reason),))
                await context.abort(error.status, error.message)
            except Exception:
                reference = uuid.uuid4().hex[:12]
                log.exception("unhandled_error", method=method, reference=reference)
                context.set_trailing_metadata(((REASON_METADATA_KEY, "internal"),))
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error (reference {reference})")

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
