"""``Client`` and ``AsyncClient``: twin clients over one base.

The base builds requests, rejects malformed identifiers before they leave the
process, converts responses into typed results and maps every ``grpc.RpcError`` to
the SDK's exception tree. The twins differ only in how they wait.

Every call has a deadline (``timeout``, default :data:`DEFAULT_TIMEOUT` seconds,
overridable per call). Must-check semantics: an unreachable gateway or a passed
deadline raises :class:`~mustcheck.CheckUnavailable`, never a "no record" result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from types import TracebackType
from typing import Self

import grpc

from ._channel import TLSConfig, async_channel, auth_metadata, sync_channel
from ._convert import SUBJECT_KIND_TO_PROTO, batch_result, check_result
from ._errors import InvalidRequest, InvalidSubject, MustCheckError, from_rpc_error
from ._generated.v1 import check_pb2 as pb
from ._generated.v1 import check_pb2_grpc as pb_grpc
from ._models import BatchResult, CheckResult, OutcomeAck
from .identifiers import IdentifierError, SubjectKind, validate_subject
from .receipts import Receipt

DEFAULT_TIMEOUT = 3.0
MAX_BATCH = 1000


class _BaseClient:
    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: TLSConfig | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        validate_locally: bool = True,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.target = target
        self.tls = tls
        self.timeout = timeout
        self.validate_locally = validate_locally
        self._metadata = auth_metadata(token)

    def _deadline(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

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
        subjects: Iterable[str], matter: str, purpose: str, authorization_ref: str
    ) -> tuple[pb.BatchCheckRequest, list[str]]:
        listed = list(subjects)
        if not listed:
            raise InvalidRequest("batch_check needs at least one subject")
        if len(listed) > MAX_BATCH:
            raise InvalidRequest(f"batch_check takes at most {MAX_BATCH} subjects, got {len(listed)}")
        # Items are validated by the gateway, which answers each with its own status.
        request = pb.BatchCheckRequest(
            subjects=listed, matter=matter, purpose=purpose, authorization_ref=authorization_ref
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
    def _ack(message: pb.OutcomeAck) -> OutcomeAck:
        return OutcomeAck(
            message.approval_id,
            message.backed_by_check,
            message.duplicate,
            message.reported_at.ToDatetime(tzinfo=dt.UTC),
        )

    @staticmethod
    def _reject_malformed(subject: str, kind: SubjectKind | None) -> None:
        """Raise for identifiers no gateway could accept; a checksum-only failure is left to the
        gateway, whose legacy allow-list may admit it (R1)."""
        try:
            validate_subject(subject, kind=kind)
        except IdentifierError as error:
            if not error.checksum_only:
                raise InvalidSubject(error.message, reason=error.rule, rule=error.rule) from None

    @staticmethod
    def _error(error: grpc.RpcError) -> MustCheckError:
        return from_rpc_error(error)


class Client(_BaseClient):
    """Blocking client. Use as a context manager, or call :meth:`close`.

    >>> with Client("127.0.0.1:50051", token=token) as client:          # doctest: +SKIP
    ...     result = client.check("91110108551385082Q", "MOHURD-0001", purpose="施工许可审批")
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: TLSConfig | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        validate_locally: bool = True,
    ) -> None:
        super().__init__(target, token=token, tls=tls, timeout=timeout, validate_locally=validate_locally)
        self._channel = sync_channel(target, tls)
        self._stub = pb_grpc.CheckServiceStub(self._channel)

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
    ) -> CheckResult:
        """Check ``subject`` for ``matter``. ``as_of_version``/``as_of_time`` replay the answer as it was
        then (auditor role only)."""
        request = self._check_request(
            subject, matter, purpose, authorization_ref, subject_kind, as_of_version, as_of_time
        )
        try:
            response = self._stub.Check(request, timeout=self._deadline(timeout), metadata=self._metadata)
        except grpc.RpcError as error:
            raise self._error(error) from error
        return check_result(response)

    def batch_check(
        self,
        subjects: Iterable[str],
        matter: str,
        *,
        purpose: str = "",
        authorization_ref: str = "",
        timeout: float | None = None,
    ) -> BatchResult:
        request, listed = self._batch_request(subjects, matter, purpose, authorization_ref)
        try:
            response = self._stub.BatchCheck(
                request, timeout=self._deadline(timeout), metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise self._error(error) from error
        return batch_result(response, listed)

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
        try:
            response = self._stub.ReportOutcome(
                request, timeout=self._deadline(timeout), metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise self._error(error) from error
        return self._ack(response)

    def receipt_keys(self, *, timeout: float | None = None) -> dict[str, bytes]:
        """The gateway's receipt verification keys (PEM by key id), to verify receipts offline later."""
        try:
            response = self._stub.ReceiptKeys(
                pb.ReceiptKeysRequest(), timeout=self._deadline(timeout), metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise self._error(error) from error
        return {key_id: pem.encode() for key_id, pem in response.public_keys_pem.items()}

    def close(self) -> None:
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
        target: str,
        *,
        token: str | None = None,
        tls: TLSConfig | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        validate_locally: bool = True,
    ) -> None:
        super().__init__(target, token=token, tls=tls, timeout=timeout, validate_locally=validate_locally)
        self._channel = async_channel(target, tls)
        self._stub = pb_grpc.CheckServiceStub(self._channel)

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
    ) -> CheckResult:
        """Check ``subject`` for ``matter``. ``as_of_version``/``as_of_time`` replay the answer as it was
        then (auditor role only)."""
        request = self._check_request(
            subject, matter, purpose, authorization_ref, subject_kind, as_of_version, as_of_time
        )
        try:
            response = await self._stub.Check(
                request, timeout=self._deadline(timeout), metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise self._error(error) from error
        return check_result(response)

    async def batch_check(
        self,
        subjects: Iterable[str],
        matter: str,
        *,
        purpose: str = "",
        authorization_ref: str = "",
        timeout: float | None = None,
    ) -> BatchResult:
        request, listed = self._batch_request(subjects, matter, purpose, authorization_ref)
        try:
            response = await self._stub.BatchCheck(
                request, timeout=self._deadline(timeout), metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise self._error(error) from error
        return batch_result(response, listed)

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
        try:
            response = await self._stub.ReportOutcome(
                request, timeout=self._deadline(timeout), metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise self._error(error) from error
        return self._ack(response)

    async def receipt_keys(self, *, timeout: float | None = None) -> dict[str, bytes]:
        """The gateway's receipt verification keys (PEM by key id), to verify receipts offline later."""
        try:
            response = await self._stub.ReceiptKeys(
                pb.ReceiptKeysRequest(), timeout=self._deadline(timeout), metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise self._error(error) from error
        return {key_id: pem.encode() for key_id, pem in response.public_keys_pem.items()}

    async def close(self) -> None:
        await self._channel.close(grace=None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
