"""``Client`` and ``AsyncClient``: twin clients over one base.

The base builds requests, rejects malformed identifiers before they leave the
process, converts responses into typed results and maps every ``grpc.RpcError`` to
the SDK's exception tree. The twins differ only in how they wait.

Every call has a deadline (``timeout``, default :data:`DEFAULT_TIMEOUT` seconds,
overridable per call); an UNAVAILABLE gateway is retried with backoff within it. Must-check
semantics: an unreachable gateway or a passed deadline raises :class:`~mustcheck.CheckUnavailable`,
never a "no record" result — unless the matter allows a stale answer and the cache holds one within
the matter's freshness tolerance (R12).

``cache_size`` > 0 turns on the answer cache (see ``_cache``): the client then follows the
gateway's ``Watch`` stream in the background (a thread for ``Client``, a task for ``AsyncClient``)
so that a list change reaches the cache within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from ._cache import AnswerCache
from ._channel import Target, TLSConfig, async_channel, auth_metadata, sync_channel
from ._convert import SUBJECT_KIND_TO_PROTO, batch_result, check_result, outcome_ack, receipt_keys
from ._errors import (
    CheckUnavailable,
    InvalidRequest,
    InvalidSubject,
    MustCheckError,
    explain_transport,
    from_rpc_error,
)
from ._generated.v1 import check_pb2 as pb
from ._generated.v1 import check_pb2_grpc as pb_grpc
from ._models import BatchResult, CheckResult, OutcomeAck
from ._retry import Attempts, RetryPolicy
from ._tracing import client_span
from .identifiers import IdentifierError, SubjectKind, normalise, validate_subject
from .receipts import Receipt

DEFAULT_TIMEOUT = 3.0
MAX_BATCH = 1000
# Waits between attempts to re-open a broken change stream.
_WATCH_BACKOFF = (0.05, 2.0)
# A batch item: the subject, or (subject, kind) to state its kind (None: inferred by the gateway).
BatchSubject = str | tuple[str, SubjectKind | None]

# The wait after the gateway refused the stream itself (no grant, too many streams): each refusal is
# audited, so the client asks again only now and then, and meanwhile checks without its cache.
_WATCH_REFUSED_BACKOFF = 30.0
_WATCH_REFUSALS = frozenset(
    {
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INVALID_ARGUMENT,
    }
)
Request = TypeVar("Request")
Response = TypeVar("Response")


def _check_timeout(timeout: float) -> None:
    """A deadline is a positive, finite number of seconds (NaN compares false with everything, and an
    infinite deadline would let a stalled gateway hold an approval forever instead of failing closed)."""
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive, finite number of seconds, got {timeout!r}")


class _BaseClient:
    def __init__(
        self,
        target: Target,
        *,
        token: str | None = None,
        tls: TLSConfig | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        validate_locally: bool = True,
        cache_size: int = 0,
        retry: RetryPolicy | None = None,
    ) -> None:
        _check_timeout(timeout)
        self.target = target
        self.tls = tls
        self.timeout = timeout
        self.validate_locally = validate_locally
        self.retry = retry or RetryPolicy()
        self.cache = AnswerCache(cache_size) if cache_size > 0 else None
        self._metadata = auth_metadata(token)

    def _deadline(self, timeout: float | None) -> float:
        if timeout is None:
            return self.timeout
        _check_timeout(timeout)
        return timeout

    def _attempts(self, timeout: float | None) -> Attempts:
        return Attempts(self.retry, self._deadline(timeout))

    # -- the cache, shared by both clients ------------------------------------------------

    @staticmethod
    def _cache_key(
        subject: str, matter: str, purpose: str, authorization_ref: str, kind: SubjectKind | None
    ) -> Hashable:
        return (normalise(subject), matter, purpose, authorization_ref, kind)

    def _remember(self, key: Hashable, subject: str, response: pb.CheckResponse) -> CheckResult:
        result = check_result(response)
        if self.cache is not None:
            self.cache.remember(key, normalise(subject), response, result)
        return result

    def _stale_or_raise(self, key: Hashable | None, error: MustCheckError) -> CheckResult:
        if key is not None and self.cache is not None and isinstance(error, CheckUnavailable):
            stale = self.cache.stale(key)
            if stale is not None:
                return stale
        raise error

    def _check_request(
        self,
        subject: str,
        matter: str,
        purpose: str,
        authorization_ref: str,
        subject_kind: SubjectKind | None,
        as_of_version: int | None = None,
        as_of_time: dt.datetime | None = None,
    ) -> pb.CheckRequest:
        if self.validate_locally:
            self._reject_malformed(subject, subject_kind)
        request = pb.CheckRequest(
            subject=subject,
            matter=matter,
            purpose=purpose,
            authorization_ref=authorization_ref,
            subject_kind=SUBJECT_KIND_TO_PROTO.get(subject_kind, pb.SUBJECT_KIND_UNSPECIFIED)
            if subject_kind
            else pb.SUBJECT_KIND_UNSPECIFIED,
            as_of_version=as_of_version or 0,
        )
        if as_of_time is not None:
            request.as_of_time.FromDatetime(as_of_time.astimezone(dt.UTC))
        return request

    @staticmethod
    def _batch_request(
        subjects: Iterable[BatchSubject], matter: str, purpose: str, authorization_ref: str
    ) -> tuple[pb.BatchCheckRequest, list[str]]:
        items = [(item, None) if isinstance(item, str) else item for item in subjects]
        if not items:
            raise InvalidRequest("batch_check needs at least one subject")
        if len(items) > MAX_BATCH:
            raise InvalidRequest(f"batch_check takes at most {MAX_BATCH} subjects, got {len(items)}")
        listed = [subject for subject, _ in items]
        # Items are validated by the gateway, which answers each with its own status.
        request = pb.BatchCheckRequest(
            subjects=listed, matter=matter, purpose=purpose, authorization_ref=authorization_ref
        )
        if any(kind is not None for _, kind in items):
            request.subject_kinds.extend(
                SUBJECT_KIND_TO_PROTO[kind] if kind is not None else pb.SUBJECT_KIND_UNSPECIFIED
                for _, kind in items
            )
        return request, listed

    @staticmethod
    def _outcome_request(
        receipt: Receipt | str | None,
        approval_id: str,
        decision: str,
        applied_measures: Iterable[str],
        note: str,
        matter: str,
        subject: str,
    ) -> pb.OutcomeReport:
        compact = receipt.compact if isinstance(receipt, Receipt) else (receipt or "")
        return pb.OutcomeReport(
            receipt=compact,
            approval_id=approval_id,
            decision=decision,
            applied_measures=list(applied_measures),
            note=note,
            matter=matter,
            subject=subject,
        )

    @staticmethod
    def _reject_malformed(subject: str, kind: SubjectKind | None) -> None:
        """Raise for identifiers no gateway could accept; a checksum-only failure is left to the
        gateway, whose legacy allow-list may admit it (R1)."""
        try:
            validate_subject(subject, kind=kind)
        except IdentifierError as error:
            if not error.checksum_only:
                # Worded as the gateway words it, with the same [rule] tag. Nothing was sent: nothing is
                # queried and nothing audited (R1).
                raise InvalidSubject(
                    f"invalid subject: {error.message} [{error.rule}]", reason=error.rule, rule=error.rule
                ) from None

    def _error(self, error: grpc.RpcError) -> MustCheckError:
        return explain_transport(
            from_rpc_error(error),
            tls=self.tls is not None,
            client_certificate=self.tls is not None and self.tls.cert is not None,
        )


class Client(_BaseClient):
    """Blocking client. Use as a context manager, or call :meth:`close`.

    >>> with Client("127.0.0.1:50051", token=token) as client:          # doctest: +SKIP
    ...     result = client.check("91110108551385082Q", "MOHURD-0001", purpose="施工许可审批")
    """

    def __init__(
        self,
        target: Target,
        *,
        token: str | None = None,
        tls: TLSConfig | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        validate_locally: bool = True,
        cache_size: int = 0,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(
            target,
            token=token,
            tls=tls,
            timeout=timeout,
            validate_locally=validate_locally,
            cache_size=cache_size,
            retry=retry,
        )
        self._channel = sync_channel(target, tls)
        self._stub = pb_grpc.CheckServiceStub(self._channel)
        self._closed = threading.Event()
        self._watch_call: Any = None
        self._watcher: threading.Thread | None = None
        if self.cache is not None:
            self._watcher = threading.Thread(target=self._watch, name="mustcheck-watch", daemon=True)
            self._watcher.start()

    def _call(self, method: Callable[..., Response], request: Any, timeout: float | None) -> Response:
        """One RPC with its deadline; UNAVAILABLE is retried with backoff while time is left."""
        attempts = self._attempts(timeout)
        with client_span(method, self._metadata) as (span, metadata):
            while True:
                try:
                    response = method(request, timeout=attempts.timeout(), metadata=metadata)
                    span.succeeded()
                    return response
                except grpc.RpcError as rpc_error:
                    error = self._error(rpc_error)
                    error.__cause__ = rpc_error
                delay = attempts.backoff(error)
                if delay is None:
                    span.failed(error.code, error.reason)
                    raise error
                time.sleep(delay)

    def _watch(self) -> None:
        """Follow the change stream until closed, re-opening it (resumed) whenever it breaks."""
        assert self.cache is not None
        delay = _WATCH_BACKOFF[0]
        while not self._closed.is_set():
            call: Any = self._stub.Watch(self.cache.watch_request(), metadata=self._metadata)
            self._watch_call = call
            if self._closed.is_set():
                call.cancel()
            refused = False
            try:
                for event in call:
                    self.cache.apply(event)
                    delay = _WATCH_BACKOFF[0]
            except grpc.RpcError as error:
                refused = error.code() in _WATCH_REFUSALS
            self.cache.stream_lost()
            self._closed.wait(_WATCH_REFUSED_BACKOFF if refused else delay)
            delay = min(delay * 2, _WATCH_BACKOFF[1])

    def check(
        self,
        subject: str,
        matter: str,
        *,
        purpose: str = "",
        authorization_ref: str = "",
        subject_kind: SubjectKind | None = None,
        timeout: float | None = None,
        as_of_version: int | None = None,
        as_of_time: dt.datetime | None = None,
        replay_of: Receipt | str | None = None,
    ) -> CheckResult:
        """Check ``subject`` for ``matter``. ``as_of_version``/``as_of_time`` show the data as it was then,
        as the auditor; ``replay_of`` (a receipt, or an audit record's reference ``<log id>-<seq>``) replays
        that check as it was answered: the original caller's department and policy set (auditor role
        only; never cached; ``matter`` may be empty)."""
        key = None
        if self.cache is not None and as_of_version is None and as_of_time is None and replay_of is None:
            key = self._cache_key(subject, matter, purpose, authorization_ref, subject_kind)
            cached = self.cache.fresh(key)
            if cached is not None:
                return cached
        request = self._check_request(
            subject, matter, purpose, authorization_ref, subject_kind, as_of_version, as_of_time
        )
        if replay_of is not None:
            request.replay_of = replay_reference(replay_of)
        try:
            response = self._call(self._stub.Check, request, timeout)
        except MustCheckError as error:
            return self._stale_or_raise(key, error)
        return self._remember(key, subject, response) if key is not None else check_result(response)

    def batch_check(
        self,
        subjects: Iterable[BatchSubject],
        matter: str,
        *,
        purpose: str = "",
        authorization_ref: str = "",
        timeout: float | None = None,
    ) -> BatchResult:
        """Check up to 1,000 subjects for ``matter``; each item is a subject or ``(subject, kind)``, the
        kind telling the gateway what to check it as (an ID number that is also a valid credit code)."""
        request, listed = self._batch_request(subjects, matter, purpose, authorization_ref)
        return batch_result(self._call(self._stub.BatchCheck, request, timeout), listed)

    def report_outcome(
        self,
        receipt: Receipt | str | None,
        approval_id: str,
        decision: str,
        applied_measures: Iterable[str] = (),
        *,
        note: str = "",
        matter: str = "",
        subject: str = "",
        timeout: float | None = None,
    ) -> OutcomeAck:
        """Report what the approval decided (approved, rejected, deferred) and which measures it applied.

        Idempotent per ``approval_id``. Without a receipt, give ``matter`` and ``subject``: the approval is
        recorded as resting on no check.
        """
        request = self._outcome_request(
            receipt, approval_id, decision, applied_measures, note, matter, subject
        )
        return outcome_ack(self._call(self._stub.ReportOutcome, request, timeout))

    def receipt_keys(self, *, timeout: float | None = None) -> dict[str, bytes]:
        """The gateway's receipt verification keys (PEM by key id), to verify receipts offline later."""
        response = self._call(self._stub.ReceiptKeys, pb.ReceiptKeysRequest(), timeout)
        return receipt_keys(response)

    def close(self) -> None:
        self._closed.set()
        if self._watch_call is not None:
            self._watch_call.cancel()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient(_BaseClient):
    """Asyncio client with the same methods as :class:`Client`; use ``async with``."""

    def __init__(
        self,
        target: Target,
        *,
        token: str | None = None,
        tls: TLSConfig | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        validate_locally: bool = True,
        cache_size: int = 0,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(
            target,
            token=token,
            tls=tls,
            timeout=timeout,
            validate_locally=validate_locally,
            cache_size=cache_size,
            retry=retry,
        )
        self._channel = async_channel(target, tls)
        self._stub = pb_grpc.CheckServiceStub(self._channel)
        self._watcher: asyncio.Task[None] | None = None

    async def _call(
        self, method: Callable[..., Awaitable[Response]], request: Any, timeout: float | None
    ) -> Response:
        """One RPC with its deadline; UNAVAILABLE is retried with backoff while time is left."""
        attempts = self._attempts(timeout)
        with client_span(method, self._metadata) as (span, metadata):
            while True:
                try:
                    response = await method(request, timeout=attempts.timeout(), metadata=metadata)
                    span.succeeded()
                    return response
                except grpc.RpcError as rpc_error:
                    error = self._error(rpc_error)
                    error.__cause__ = rpc_error
                delay = attempts.backoff(error)
                if delay is None:
                    span.failed(error.code, error.reason)
                    raise error
                await asyncio.sleep(delay)

    def _ensure_watching(self) -> None:
        if self.cache is not None and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="mustcheck-watch")

    async def _watch(self) -> None:
        """Follow the change stream until closed, re-opening it (resumed) whenever it breaks."""
        assert self.cache is not None
        delay = _WATCH_BACKOFF[0]
        while True:
            call = self._stub.Watch(self.cache.watch_request(), metadata=self._metadata)
            refused = False
            try:
                async for event in call:
                    self.cache.apply(event)
                    delay = _WATCH_BACKOFF[0]
            except grpc.RpcError as error:
                refused = error.code() in _WATCH_REFUSALS
            finally:
                call.cancel()
            self.cache.stream_lost()
            await asyncio.sleep(_WATCH_REFUSED_BACKOFF if refused else delay)
            delay = min(delay * 2, _WATCH_BACKOFF[1])

    async def check(
        self,
        subject: str,
        matter: str,
        *,
        purpose: str = "",
        authorization_ref: str = "",
        subject_kind: SubjectKind | None = None,
        timeout: float | None = None,
        as_of_version: int | None = None,
        as_of_time: dt.datetime | None = None,
        replay_of: Receipt | str | None = None,
    ) -> CheckResult:
        """Check ``subject`` for ``matter``. ``as_of_version``/``as_of_time`` show the data as it was then,
        as the auditor; ``replay_of`` (a receipt, or an audit record's reference ``<log id>-<seq>``) replays
        that check as it was answered: the original caller's department and policy set (auditor role
        only; never cached; ``matter`` may be empty)."""
        key = None
        if self.cache is not None and as_of_version is None and as_of_time is None and replay_of is None:
            self._ensure_watching()
            key = self._cache_key(subject, matter, purpose, authorization_ref, subject_kind)
            cached = self.cache.fresh(key)
            if cached is not None:
                return cached
        request = self._check_request(
            subject, matter, purpose, authorization_ref, subject_kind, as_of_version, as_of_time
        )
        if replay_of is not None:
            request.replay_of = replay_reference(replay_of)
        try:
            response = await self._call(self._stub.Check, request, timeout)
        except MustCheckError as error:
            return self._stale_or_raise(key, error)
        return self._remember(key, subject, response) if key is not None else check_result(response)

    async def batch_check(
        self,
        subjects: Iterable[BatchSubject],
        matter: str,
        *,
        purpose: str = "",
        authorization_ref: str = "",
        timeout: float | None = None,
    ) -> BatchResult:
        """Check up to 1,000 subjects for ``matter``; each item is a subject or ``(subject, kind)``, the
        kind telling the gateway what to check it as (an ID number that is also a valid credit code)."""
        request, listed = self._batch_request(subjects, matter, purpose, authorization_ref)
        return batch_result(await self._call(self._stub.BatchCheck, request, timeout), listed)

    async def report_outcome(
        self,
        receipt: Receipt | str | None,
        approval_id: str,
        decision: str,
        applied_measures: Iterable[str] = (),
        *,
        note: str = "",
        matter: str = "",
        subject: str = "",
        timeout: float | None = None,
    ) -> OutcomeAck:
        """Report what the approval decided (approved, rejected, deferred) and which measures it applied.

        Idempotent per ``approval_id``. Without a receipt, give ``matter`` and ``subject``: the approval is
        recorded as resting on no check.
        """
        request = self._outcome_request(
            receipt, approval_id, decision, applied_measures, note, matter, subject
        )
        return outcome_ack(await self._call(self._stub.ReportOutcome, request, timeout))

    async def receipt_keys(self, *, timeout: float | None = None) -> dict[str, bytes]:
        """The gateway's receipt verification keys (PEM by key id), to verify receipts offline later."""
        response = await self._call(self._stub.ReceiptKeys, pb.ReceiptKeysRequest(), timeout)
        return receipt_keys(response)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._channel.close(grace=None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def replay_reference(replay_of: Receipt | str) -> str:
    """The audit record a replay names: a proof receipt's id (``<log id>-<seq>``), the record seq of a
    receipt of the first format, or the reference as given."""
    if isinstance(replay_of, Receipt):
        return replay_of.receipt_id if replay_of.tree_head is not None else str(replay_of.audit_seq)
    return replay_of
