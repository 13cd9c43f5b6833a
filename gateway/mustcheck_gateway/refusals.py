"""No refusal without a trace: field bounds before every handler, and an audit record for every refused
administration, lists, audit or key call.

:class:`RefusalAudit` is a server interceptor inside the error mapping. For every request of the
gateway's own services it checks the field bounds (:mod:`.bounds`) before the handler runs; a request
over a bound is refused with INVALID_ARGUMENT and audited (with the caller its credentials name). For
the services whose handlers do not audit their own refusals (admin, lists, audit, and ``ReceiptKeys``)
it audits every :class:`GatewayError` the handler raises, with the caller and token id that were
presented, the method and the reason. Refusals that a throttled peer's aggregate accounts for
(:mod:`.auth.peers`) are not audited one by one.

:class:`RefusalFlusher` writes the throttle's alerts and aggregated records as they fall due, and the
rest when the gateway stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
import structlog

from .audit import AuditEvent
from .auth.access import AccessControl
from .auth.model import Caller
from .auth.peers import PeerThrottle
from .bounds import check_bounds, clip
from .errors import GatewayError, Unauthenticated, presented
from .interceptors import GuardingInterceptor, Handler
from .masking import mask_id_shapes
from .service import AuditSink, failure_outcome
from .tasks import cancelled

log = structlog.get_logger("mustcheck.gateway")

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

PACKAGE = "/mustcheck.v1."
# Audit record kind of a refused call, by service (and by method where it differs).
KINDS = {
    "AdminService": "admin",
    "ListsService": "admin",
    "AuditService": "audit",
    "CheckService/Check": "check",
    "CheckService/BatchCheck": "batch",
    "CheckService/ReportOutcome": "feedback",
    "CheckService/Watch": "watch",
    "CheckService/ReceiptKeys": "keys",
}
# Whose handlers audit no refusal of their own: every refusal of theirs is audited here.
AUDITED_HERE = ("AdminService/", "ListsService/", "AuditService/", "CheckService/ReceiptKeys")
MESSAGE_KEPT = 300


def kind_of(name: str) -> str:
    """The record kind for ``Service/Method``."""
    return KINDS.get(name) or KINDS.get(name.split("/", 1)[0], "request")


class RefusalAudit(GuardingInterceptor):
    def __init__(self, access: AccessControl, sink: AuditSink) -> None:
        super().__init__()
        self.access = access
        self.sink = sink

    def guard(self, handler: Handler, method: str) -> Handler:
        if not method.startswith(PACKAGE):
            return handler
        return self._guard(handler, method[len(PACKAGE) :])

    # -- the records --------------------------------------------------------------------------

    async def refused(self, name: str, error: GatewayError, caller: Caller | None) -> None:
        """Audit ``error`` (unless a throttled peer's aggregate counts it)."""
        if error.accounted:
            return
        caller_id, detail = presented(caller.caller_id if caller else "", error)
        await self.sink.append(
            AuditEvent(
                kind=kind_of(name),
                caller_id=caller_id,
                department=caller.department if caller else "",
                outcome=failure_outcome(error),
                status=error.status.name,
                detail={
                    "method": name,
                    "reason": error.reason,
                    "message": clip(mask_id_shapes(error.message), MESSAGE_KEPT),
                    **detail,
                },
            )
        )

    def _presented(self, context: Context) -> Caller | None:
        """The caller a refused call's credentials name, without counting a failure twice."""
        try:
            return self.access.authenticator.authenticate(context)
        except GatewayError:
            return None

    async def _bounded(self, name: str, message: Any, context: Context) -> None:
        """Refuse ``message`` if a field is over its bound; the refusal is audited with its caller."""
        try:
            check_bounds(message)
        except GatewayError as error:
            try:
                caller = self.access.caller(context)
            except GatewayError as refusal:  # who cannot authenticate hears that first
                await self.refused(name, refusal, None)
                raise refusal from None
            await self.refused(name, error, caller)
            raise

    async def _handler_refused(self, name: str, context: Context, error: GatewayError) -> None:
        if name.startswith(AUDITED_HERE):
            caller = None if isinstance(error, Unauthenticated) else self._presented(context)
            await self.refused(name, error, caller)

    # -- the wrappers -------------------------------------------------------------------------

    def _guard(self, handler: Handler, name: str) -> Handler:
        options = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            unary: Callable[[Any, Context], Awaitable[Any]] = handler.unary_unary  # type: ignore[assignment]

            async def guarded(request: Any, context: Context) -> Any:
                await self._bounded(name, request, context)
                try:
                    return await unary(request, context)
                except GatewayError as error:
                    await self._handler_refused(name, context, error)
                    raise

            return grpc.unary_unary_rpc_method_handler(guarded, **options)
        if handler.stream_unary is not None:
            streamed: Callable[[Any, Context], Awaitable[Any]] = handler.stream_unary  # type: ignore[assignment]

            async def guarded_stream_in(requests: AsyncIterator[Any], context: Context) -> Any:
                try:
                    return await streamed(self._checked(name, requests, context), context)
                except GatewayError as error:
                    await self._handler_refused(name, context, error)
                    raise

            return grpc.stream_unary_rpc_method_handler(guarded_stream_in, **options)
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            streaming: Callable[[Any, Context], AsyncIterator[Any]] = handler.unary_stream  # type: ignore[assignment]

            async def guarded_stream_out(request: Any, context: Context) -> AsyncIterator[Any]:
                await self._bounded(name, request, context)
                try:
                    async for item in streaming(request, context):
                        yield item
                except GatewayError as error:
                    await self._handler_refused(name, context, error)
                    raise

            return grpc.unary_stream_rpc_method_handler(guarded_stream_out, **options)
        return handler

    @staticmethod
    async def _checked(name: str, requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        """A request stream whose messages are checked as they arrive (an over-long one ends the call;
        the handler's refusal is audited)."""
        async for message in requests:
            check_bounds(message)
            yield message


class RefusalFlusher:
    """Writes the peer throttle's alerts at once and its aggregated records as their windows close."""

    def __init__(self, throttle: PeerThrottle, sink: AuditSink, *, interval_s: float = 1.0) -> None:
        self.throttle = throttle
        self.sink = sink
        self.interval_s = interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writing: asyncio.Future[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()

        def wake() -> None:
            loop.call_soon_threadsafe(self._wake.set)

        self.throttle.on_alert = wake
        self._task = asyncio.create_task(self._run(), name="mustcheck-refusals")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            await self.flush()

    async def flush(self, *, everything: bool = False) -> None:
        events = self.throttle.due(everything=everything)
        if not events:
            return
        # Shielded: cancelling the flusher (the gateway stopping) must neither lose these records nor
        # write them twice; stop() waits for a write in flight.
        self._writing = asyncio.ensure_future(self._write(events))
        await asyncio.shield(self._writing)

    async def _write(self, events: list[AuditEvent]) -> None:
        try:
            await self.sink.append_many(events)
        except Exception as error:  # the audit log is away: keep them for the next attempt
            self.throttle.requeue(events)
            log.warning("refusal_records_not_written", records=len(events), error=str(error))

    async def stop(self) -> None:
        """Stop, writing every record still due (open windows included)."""
        await cancelled(self._task)
        self._task = None
        if self._writing is not None:
            await self._writing  # a write the cancel interrupted the wait for (it never raises)
        await self.flush(everything=True)
