"""OpenTelemetry server spans for the gateway (extra ``mustcheck[otel]``, ``serve --otel``).

A caller's W3C trace context (``traceparent`` / ``tracestate``: gRPC metadata, or HTTP headers for the
HTTP binding through :func:`server_span`) becomes the parent of one server span per call, named after
the RPC (``mustcheck.v1.CheckService/Check``). Its attributes say what was called and how it ended —
``rpc.system``, ``rpc.service``, ``rpc.method``, ``rpc.grpc.status_code``, and ``mustcheck.reason`` (the
dotted reason code) on a refusal — and never who or what was checked: no subject, identifier, name,
purpose, caller or token travels in a span, and exceptions are not recorded (their messages may quote
input). Spans go wherever the process's OpenTelemetry SDK sends them (``opentelemetry-instrument``, or
``OTEL_*`` settings with a configured tracer provider); with the API alone they cost almost nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import grpc

from ..errors import REASON_METADATA_KEY
from ..interceptors import Context, GuardingInterceptor, Handler

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
except ImportError:  # the extra is not installed
    trace = None  # type: ignore[assignment]

TRACER_NAME = "mustcheck.gateway"


def available() -> bool:
    """Whether OpenTelemetry is installed (``pip install 'mustcheck[otel]'``)."""
    return trace is not None


@contextmanager
def server_span(method: str, carrier: Mapping[str, str]) -> Iterator[Span]:
    """A server span for ``method`` (``/package.Service/Method``) under the trace context in ``carrier``
    (request metadata or headers, lower-case keys). The caller ends it with :func:`finish`."""
    path = method.lstrip("/")
    service, _, name = path.rpartition("/")
    parent = propagate.extract(dict(carrier))
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        path,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def finish(span: Span, code: grpc.StatusCode, reason: str = "") -> None:
    """Record how the call ended: its status code and, on a refusal, the dotted reason code only."""
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        if reason:
            span.set_attribute("mustcheck.reason", reason)
        span.set_status(Status(StatusCode.ERROR, reason or code.name))


def _carrier(context: Context) -> dict[str, str]:
    return {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}


def _outcome(context: Context, failed: bool) -> tuple[grpc.StatusCode, str]:
    code = context.code() if failed else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
    reason = ""
    for key, value in context.trailing_metadata() or ():
        if key == REASON_METADATA_KEY and isinstance(value, str):
            reason = value
    return code, reason


class TracingInterceptor(GuardingInterceptor):
    """Puts every call in a server span (outermost interceptor: it sees the mapped status and reason)."""

    def guard(self, handler: Handler, method: str) -> Handler:
        if handler.unary_unary is not None or handler.stream_unary is not None:
            answer: Callable[[Any, Context], Awaitable[Any]] = (
                handler.unary_unary or handler.stream_unary  # type: ignore[assignment]
            )

            async def traced(request: Any, context: Context) -> Any:
                with server_span(method, _carrier(context)) as span:
                    failed = True
                    try:
                        result = await answer(request, context)
                        failed = False
                        return result
                    finally:
                        finish(span, *_outcome(context, failed))

            make = (
                grpc.unary_unary_rpc_method_handler
                if handler.unary_unary is not None
                else grpc.stream_unary_rpc_method_handler
            )
            return make(
                traced,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            streaming: Callable[[Any, Context], AsyncIterator[Any]] = handler.unary_stream  # type: ignore[assignment]

            async def traced_stream(request: Any, context: Context) -> AsyncIterator[Any]:
                with server_span(method, _carrier(context)) as span:
                    failed = True
                    try:
                        async for item in streaming(request, context):
                            yield item
                        failed = False
                    finally:
                        finish(span, *_outcome(context, failed))

            return grpc.unary_stream_rpc_method_handler(
                traced_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def tracing_interceptors(enabled: bool) -> list[grpc.aio.ServerInterceptor]:  # type: ignore[type-arg]
    """The tracing interceptor when asked for (``serve --otel``); ``ConfigError`` is the caller's to raise
    when it is asked for without OpenTelemetry installed (see :func:`available`)."""
    return [TracingInterceptor()] if enabled and available() else []
