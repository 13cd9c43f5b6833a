"""OpenTelemetry client spans (extra ``mustcheck[otel]``): one span per RPC, its W3C trace context sent.

With OpenTelemetry installed, every call of :class:`~mustcheck.Client` and :class:`~mustcheck.AsyncClient`
(retries included) runs in a client span named after the RPC (``mustcheck.v1.CheckService/Check``), a
child of the caller's current span, and sends ``traceparent`` (and ``tracestate``) in its metadata, so
that the gateway's span joins the caller's trace. Attributes: ``rpc.system``, ``rpc.service``,
``rpc.method``, ``rpc.grpc.status_code`` and, on a refusal, ``mustcheck.reason``; never a subject, name,
purpose or token, and exceptions are not recorded (their messages may quote input). Without
OpenTelemetry, or with its API but no SDK configured (no tracer provider set), the calls go out
unchanged and pay for no span.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import grpc

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # the extra is not installed
    trace = None  # type: ignore[assignment]

TRACER_NAME = "mustcheck"
Metadata = tuple[tuple[str, str], ...]


def method_name(method: Any) -> str:
    """``package.Service/Method`` of a gRPC stub's callable (``mustcheck`` where it cannot be read)."""
    raw = getattr(method, "_method", b"")
    path = raw.decode() if isinstance(raw, bytes) else str(raw or "")
    return path.lstrip("/") or "mustcheck"


class CallSpan:
    """What a call reports to its span: how it ended."""

    def __init__(self, span: Any) -> None:
        self._span = span

    def failed(self, code: grpc.StatusCode | None, reason: str) -> None:
        if self._span is None:
            return
        status = code or grpc.StatusCode.UNKNOWN
        self._span.set_attribute("rpc.grpc.status_code", status.value[0])
        if reason:
            self._span.set_attribute("mustcheck.reason", reason)
        self._span.set_status(Status(StatusCode.ERROR, reason or status.name))

    def succeeded(self) -> None:
        if self._span is not None:
            self._span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.OK.value[0])


_UNTRACED = CallSpan(None)


def _tracing_configured() -> bool:
    """Whether an OpenTelemetry SDK is set up: the API alone (its proxy or no-op provider) records
    nothing, so a call then skips the span's cost entirely."""
    if trace is None:
        return False
    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


class _Untraced:
    """The context of a call without tracing: the metadata as it is (cheaper than a generator)."""

    __slots__ = ("_entered",)

    def __init__(self, metadata: Metadata) -> None:
        self._entered = (_UNTRACED, metadata)

    def __enter__(self) -> tuple[CallSpan, Metadata]:
        return self._entered

    def __exit__(self, *exc: object) -> None:
        return None


def client_span(method: Any, metadata: Metadata) -> AbstractContextManager[tuple[CallSpan, Metadata]]:
    """A client span for the RPC ``method``, and ``metadata`` with its trace context added; without a
    configured OpenTelemetry SDK, the metadata unchanged and no span."""
    if not _tracing_configured():
        return _Untraced(metadata)
    return _traced(method, metadata)


@contextmanager
def _traced(method: Any, metadata: Metadata) -> Iterator[tuple[CallSpan, Metadata]]:
    path = method_name(method)
    service, _, name = path.rpartition("/")
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        path,
        kind=SpanKind.CLIENT,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield CallSpan(span), metadata + tuple(carrier.items())
