"""The audit gRPC service (auditor role): verify the chain, query, reveal (reveal role), export.

Auditors see subjects only as keyed hashes; searching takes the raw identifier and the
gateway hashes it under every key. Reveal decrypts, needs the reveal role too, and is
itself audited. Auditors' queries are audited as well.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, TypeVar

import grpc

from mustcheck._generated.v1 import audit_pb2 as pb
from mustcheck._generated.v1 import audit_pb2_grpc as pb_grpc
from mustcheck.identifiers import normalise

from .audit import AuditEvent, AuditIntegrityError, AuditRecord
from .audit.audit_log import AuditLog
from .audit.backends import AnyAuditLog, is_audit_log
from .auth.access import AccessControl
from .auth.model import ROLE_AUDITOR, ROLE_REVEAL, Caller
from .chain_heads import replica_id
from .coverage import BUCKETS, STATS_KEYS, MatterCoverage, coverage, stats
from .errors import GatewayError, InvalidArgument
from .masking import mask_id_shapes
from .policy.model import PolicySet
from .responses import timestamp
from .service import AuditSink
from .store.base import ListStore

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
MAX_REVEAL = 100
MAX_LOG_ID = 128  # a replica id is 16 hex digits; anything far longer is not one
EXPORT_CHUNK = 64 * 1024


class AuditingOff(GatewayError):
    status = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "audit.off"


def record_message(record: AuditRecord) -> pb.AuditRecord:
    return pb.AuditRecord(
        seq=record.seq,
        at=timestamp(record.at),
        kind=record.kind,
        caller_id=record.caller_id,
        department=record.department,
        matter=record.matter,
        purpose=record.purpose,
        authorization_ref=record.authorization_ref,
        subject_kind=record.subject_kind,
        subject_hash=record.subject_hash or "",
        outcome=record.outcome,
        measure_ids=list(record.measure_ids),
        data_version=record.data_version,
        status=record.status,
        latency_us=record.latency_us,
        detail_json=json.dumps(dict(record.detail), ensure_ascii=False, sort_keys=True),
        log_id=record.log_id,
    )


def filters(query: pb.AuditQuery) -> dict[str, Any]:
    """The query's filters as keyword arguments of ``AuditLog.query`` / ``export``."""

    def text(value: str) -> str | None:
        return value.strip() or None

    since, until = _period(query)
    return {
        "since": since,
        "until": until,
        "caller_id": text(query.caller_id),
        "department": text(query.department),
        "matter": text(query.matter),
        "outcome": text(query.outcome),
        "kind": text(query.kind),
        "subject": text(query.subject),
    }


class AuditService(pb_grpc.AuditServiceServicer):
    def __init__(
        self,
        log: AnyAuditLog | object,
        access: AccessControl,
        sink: AuditSink,
        policy: PolicySet,
        store: ListStore,
    ) -> None:
        self.log = log if is_audit_log(log) else None
        self.access = access
        self.sink = sink
        self.policy = policy
        self.store = store

    async def _auditor(self, context: Context, *roles: str) -> tuple[Caller, AnyAuditLog]:
        caller = self.access.caller(context)
        for role in (ROLE_AUDITOR, *roles):
            self.access.require_role(caller, role)
        if self.log is None:
            raise AuditingOff("auditing is off on this gateway")
        return caller, self.log

    @staticmethod
    async def _run(function: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, function)

    async def _note(
        self, caller: Caller, action: str, query: pb.AuditQuery | None = None, **detail: Any
    ) -> None:
        subject = normalise(query.subject) if query is not None and normalise(query.subject) else None
        shown = {
            key: str(value)
            for key, value in (filters(query) if query else {}).items()
            if value is not None and key != "subject"
        }
        await self.sink.append(
            AuditEvent(
                kind="audit",
                caller_id=caller.caller_id,
                department=caller.department,
                subject=subject,
                outcome=action,
                detail={**shown, **detail},
            )
        )

    async def Verify(self, request: pb.VerifyRequest, context: Context) -> pb.VerifyResponse:
        caller, log = await self._auditor(context)
        report = await self._run(log.verify)
        await self._note(caller, "verify", ok=report.ok)
        return pb.VerifyResponse(
            ok=report.ok,
            records=report.records_checked,
            checkpoints=report.checkpoints_checked,
            first_bad_seq=report.problem_seq or 0,
            reason=report.reason or "",
        )

    async def Query(self, request: pb.AuditQuery, context: Context) -> pb.AuditRecords:
        caller, log = await self._auditor(context)
        limit = request.limit or DEFAULT_LIMIT
        if not 0 < limit <= MAX_LIMIT:
            raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT}", reason="audit.limit")
        before_seq = request.before_seq if request.before_seq > 0 else None
        records = await self._run(partial(log.query, limit=limit, before_seq=before_seq, **filters(request)))
        await self._note(caller, "query", request)  # after the search, which must not find itself
        return pb.AuditRecords(records=[record_message(record) for record in records])

    async def Reveal(self, request: pb.RevealRequest, context: Context) -> pb.RevealResponse:
        caller, log = await self._auditor(context, ROLE_REVEAL)
        if not request.seqs or len(request.seqs) > MAX_REVEAL:
            raise InvalidArgument(f"reveal takes 1 to {MAX_REVEAL} sequence numbers", reason="audit.reveal")
        if not request.purpose.strip():
            raise InvalidArgument("a reveal needs a stated purpose", reason="audit.purpose")
        if len(request.log_id) > MAX_LOG_ID:
            raise InvalidArgument(f"log_id is at most {MAX_LOG_ID} characters", reason="audit.log_id")
        reveal: Callable[[], list[tuple[int, str | None]]]
        if isinstance(log, AuditLog):
            if request.log_id and request.log_id != replica_id(log.path.parent):
                raise InvalidArgument(
                    f"this gateway keeps only its own log, not {request.log_id!r}: ask that replica",
                    reason="audit.log_id",
                )
            reveal = partial(log.reveal, list(request.seqs), by=caller.caller_id, purpose=request.purpose)
        else:
            reveal = partial(
                log.reveal,
                list(request.seqs),
                by=caller.caller_id,
                purpose=request.purpose,
                log_id=request.log_id.strip() or None,
            )
        try:
            revealed = await self._run(reveal)
        except AuditIntegrityError as error:
            raise GatewayError(f"cannot reveal: {error}", reason="audit.integrity") from None
        return pb.RevealResponse(
            subjects=[pb.RevealedSubject(seq=seq, subject=subject or "") for seq, subject in revealed]
        )

    async def Coverage(self, request: pb.CoverageRequest, context: Context) -> pb.CoverageReport:
        caller, log = await self._auditor(context)
        since, until = _period(request)
        await self._note(caller, "coverage", department=request.department, matter=request.matter)

        def compute() -> list[MatterCoverage]:
            return coverage(
                self.policy,
                self.store.feedback_between(since, until),
                # Only restricted checks count (coverage() takes those not followed by a report).
                log.query(
                    since=since,
                    until=until,
                    outcome="restrictions",
                    matter=request.matter or None,
                    limit=10**9,
                ),
                self.store.feedback_check_refs(),
                department=request.department or None,
                matter=request.matter or None,
            )

        rows = await self._run(compute)
        return pb.CoverageReport(
            matters=[
                pb.MatterCoverage(
                    matter=row.matter,
                    department=row.department,
                    approvals_reported=row.approvals_reported,
                    approvals_backed=row.approvals_backed,
                    # Approval ids are the approval systems' free text: ID numbers in them are masked (R9).
                    approvals_without_check=[mask_id_shapes(a) for a in row.approvals_without_check],
                    mandatory_not_applied=[
                        pb.MissedMeasure(approval_id=mask_id_shapes(a), measure_id=m)
                        for a, m in row.mandatory_not_applied
                    ],
                    restricted_checks_without_feedback=len(row.restricted_check_seqs),
                    restricted_check_seqs=row.restricted_check_seqs[:1000],
                    restricted_checks=[
                        pb.RecordRef(log_id=log_id, seq=seq) for log_id, seq in row.restricted_checks[:1000]
                    ],
                    mandatory_due=row.mandatory_due,
                    mandatory_applied=row.mandatory_applied,
                )
                for row in rows
            ]
        )

    async def Stats(self, request: pb.StatsRequest, context: Context) -> pb.StatsReport:
        caller, log = await self._auditor(context)
        by, bucket = request.by or "matter", request.bucket or "day"
        if by not in STATS_KEYS:
            raise InvalidArgument(f"by must be one of {', '.join(STATS_KEYS)}", reason="stats.by")
        if bucket not in BUCKETS:
            raise InvalidArgument("bucket must be day or month", reason="stats.bucket")
        since, until = _period(request)
        await self._note(caller, "stats", by=by, bucket=bucket)
        rows = await self._run(
            lambda: stats(log.query(since=since, until=until, limit=10**9), by=by, bucket=bucket)
        )
        return pb.StatsReport(rows=[pb.StatsRow(bucket=b, key=k, checks=n) for b, k, n in rows])

    async def Export(self, request: pb.ExportRequest, context: Context) -> AsyncIterator[pb.ExportChunk]:
        caller, log = await self._auditor(context)
        export_format = request.format or "jsonl"
        if export_format not in ("jsonl", "csv"):
            raise InvalidArgument("format must be jsonl or csv", reason="audit.format")
        await self._note(caller, "export", request.filter, format=export_format)
        buffer = io.StringIO()
        await self._run(partial(log.export, buffer, export_format, **filters(request.filter)))  # type: ignore[arg-type]
        text = buffer.getvalue()
        for start in range(0, len(text), EXPORT_CHUNK):
            yield pb.ExportChunk(data=text[start : start + EXPORT_CHUNK])


def _period(message: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    """A message's optional ``since`` and ``until`` (an audit query, a coverage or stats request)."""
    return (
        message.since.ToDatetime(tzinfo=dt.UTC) if message.HasField("since") else None,
        message.until.ToDatetime(tzinfo=dt.UTC) if message.HasField("until") else None,
    )
