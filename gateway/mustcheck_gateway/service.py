"""The gRPC check service: authenticate, grant, validate, look up, evaluate, mask, audit, answer.

Every checked subject — allowed, denied or invalid, and each batch item — leaves one
audit record, durably written before the answer is sent (R10). A failure is audited
with its status and then raised for the interceptor to map.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import grpc
import structlog

from mustcheck._generated.v1 import check_pb2 as pb
from mustcheck._generated.v1 import check_pb2_grpc as pb_grpc
from mustcheck.identifiers import SubjectKind, ValidSubject

from .audit import Announcement, AuditEvent
from .auth.access import AccessControl
from .auth.model import ROLE_AUDITOR, Caller, Grant
from .bounds import shown_message
from .check.replay import Replays
from .checks import MAX_BATCH, CheckAnswer, CheckEngine
from .china_time import CHINA_STANDARD_TIME
from .errors import (
    FailedPrecondition,
    GatewayError,
    InvalidArgument,
    InvalidSubject,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    echo,
    reason_value,
)
from .evaluation import Evaluation
from .feedback import MAX_APPROVAL_ID, Feedback, from_receipt, validate_decision
from .masking import Masker, mask_id_shapes
from .policy.model import Matter
from .receipts import ReceiptSigner
from .responses import SUBJECT_KIND_FROM_PROTO, check_response, fill_check_response
from .store.base import StoreUnavailable

log = structlog.get_logger("mustcheck.gateway")
Context = grpc.aio.ServicerContext[Any, Any]
_PER_ITEM_ERRORS = (InvalidSubject, PermissionDenied, ResourceExhausted)
# What an auditor without a grant of its own sees in a replay: every matter, personal data masked.
# A replay shows the past: from this instant (before any list data this gateway serves) up to now, with
# a little room for the auditor's clock.
REPLAY_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
REPLAY_CLOCK_SKEW = dt.timedelta(minutes=5)
AUDITOR_VIEW = Grant(
    caller_id="",
    matters=("*",),
    subject_kinds=frozenset(SubjectKind),
    purpose_required=False,
    authorization_ref_required_for_persons=False,
)


class AuditSink(Protocol):
    def announce(self) -> Announcement: ...

    async def append(self, event: AuditEvent, *, announcement: Announcement | None = None) -> int: ...

    async def append_many(
        self, events: list[AuditEvent], *, announcement: Announcement | None = None
    ) -> list[int]: ...

    async def append_receipted(
        self,
        events: list[AuditEvent],
        receipts_for: Sequence[int],
        *,
        announcement: Announcement | None = None,
    ) -> tuple[list[int], list[str]]:
        """``append_many``, and the receipts (R11) of the allowed checks at ``receipts_for``."""
        ...


@dataclass
class _Draft:
    """What is known about one checked subject so far; becomes one audit record."""

    kind: str
    matter: str
    purpose: str
    authorization_ref: str
    subject: str
    started: float = field(default_factory=time.perf_counter)
    caller: Caller | None = None
    # Who refused credentials named (a revoked or expired token), and more detail for the record.
    presented: Unauthenticated | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The caller's texts already masked (shared by the items of one batch; None: masked when needed).
    masked: dict[str, str] | None = None

    def refused_by(self, error: GatewayError) -> _Draft:
        if isinstance(error, Unauthenticated) and self.caller is None:
            self.presented = error
        return self

    def event(
        self, *, status: str, outcome: str, answer: CheckAnswer | None = None, reason: str = ""
    ) -> AuditEvent:
        evaluation = answer.evaluation if answer else None
        detail = _detail(evaluation, reason)
        caller_id = self.caller.caller_id if self.caller else ""
        if self.presented is not None:
            caller_id = self.presented.caller_id
            if self.presented.token_id:
                detail["token_id"] = self.presented.token_id
        return AuditEvent(
            kind=self.kind,
            caller_id=caller_id,
            department=self.caller.department if self.caller else "",
            matter=self.matter,
            purpose=free_text(self.purpose, self.subject, self.masked),
            authorization_ref=free_text(self.authorization_ref, self.subject, self.masked),
            subject=self.subject or None,
            subject_kind=evaluation.subject.kind.value if evaluation else "",
            outcome=outcome,
            measure_ids=tuple(m.measure.id for m in evaluation.measures) if evaluation else (),
            data_version=answer.data_version if answer else 0,
            status=status,
            latency_us=round((time.perf_counter() - self.started) * 1_000_000),
            detail={**detail, **self.extra},
            # The gateway's own clock (the instant the answer is for), so that coverage and statistics
            # count a check when it happened.
            at=answer.checked_at if answer else None,
        )


def free_text(text: str, subject: str, masked: dict[str, str] | None = None) -> str:
    """A caller's free text as the audit log keeps it: ID-number-shaped strings masked, and the checked
    subject (stored only in protected form, R10) named rather than written out.

    ``masked``: texts already masked, kept by a batch for its items (they share purpose and reference).
    """
    needle = subject.strip()
    if needle and needle in text:
        return mask_id_shapes(text.replace(needle, "[subject]"))
    if masked is None:
        return mask_id_shapes(text)
    shown = masked.get(text)
    if shown is None:
        shown = masked[text] = mask_id_shapes(text)
    return shown


def _subject_kind(value: int) -> SubjectKind | None:
    """The requested subject kind (None: infer it); a value the contract does not define is refused."""
    kind: SubjectKind | None = SUBJECT_KIND_FROM_PROTO.get(value)  # type: ignore[call-overload]
    if kind is None and value != pb.SUBJECT_KIND_UNSPECIFIED:
        raise InvalidArgument(
            f"subject_kind {value} is not a defined subject kind", reason="subject_kind.unknown"
        )
    return kind


def _detail(evaluation: Evaluation | None, reason: str) -> dict[str, Any]:
    detail: dict[str, Any] = {"reason": reason} if reason else {}
    if evaluation is not None:
        # For statistics by memorandum (跟踪问效): the memoranda whose entries counted.
        detail["memoranda"] = sorted({m.memorandum.id for m in evaluation.memberships if m.in_force})
    return detail


def _ack(feedback: Feedback, *, duplicate: bool) -> pb.OutcomeAck:
    ack = pb.OutcomeAck(
        approval_id=feedback.approval_id, backed_by_check=feedback.backed, duplicate=duplicate
    )
    ack.reported_at.FromDatetime(feedback.reported_at.astimezone(dt.UTC))
    return ack


def _feedback_event(
    caller: Caller | None,
    request: pb.OutcomeReport,
    status: str,
    reason: str,
    refusal: GatewayError | Feedback | None = None,
) -> AuditEvent:
    feedback = refusal if isinstance(refusal, Feedback) else None
    detail: dict[str, Any] = {
        "approval_id": free_text(request.approval_id[:MAX_APPROVAL_ID], request.subject),
        "decision": request.decision,
    }
    caller_id = caller.caller_id if caller else ""
    if isinstance(refusal, Unauthenticated):
        caller_id = refusal.caller_id
        if refusal.token_id:
            detail["token_id"] = refusal.token_id
    if feedback is not None:
        detail.update(
            receipt_id=feedback.receipt_id,
            check_seq=feedback.check_seq,
            applied=list(feedback.applied),
            subject_hash=feedback.subject_hash,
        )
    if reason:
        detail["reason"] = reason
    return AuditEvent(
        kind="feedback",
        caller_id=caller_id,
        department=caller.department if caller else "",
        matter=feedback.matter if feedback else request.matter,
        subject=request.subject or None,  # only for approvals without a receipt; protected by the log
        outcome=request.decision if status == "OK" else "refused",
        measure_ids=feedback.applied if feedback else (),
        status=status,
        detail=detail,
        at=feedback.reported_at if feedback else None,
    )


def _internal_error(draft: _Draft, error: BaseException | None = None) -> AuditEvent:
    if isinstance(error, StoreUnavailable):
        return draft.event(status="UNAVAILABLE", outcome="error", reason="store.unavailable")
    return draft.event(status="INTERNAL", outcome="error", reason="internal")


def failure_outcome(error: GatewayError) -> str:
    if error.status in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
        return "invalid_input"
    if error.status is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return "limited"
    return "denied"


def _batch_kinds(request: pb.BatchCheckRequest) -> list[SubjectKind | None]:
    """Each item's stated subject kind (None: inferred); none stated, every kind is inferred."""
    if not request.subject_kinds:
        return [None] * len(request.subjects)
    if len(request.subject_kinds) != len(request.subjects):
        raise InvalidArgument(
            f"subject_kinds must have one kind per subject: {len(request.subject_kinds)} kinds for "
            f"{len(request.subjects)} subjects",
            reason="batch.subject_kinds",
        )
    return [_subject_kind(kind) for kind in request.subject_kinds]  # an undefined kind is refused


def _refusal_events(refusals: dict[int, tuple[list[AuditEvent], GatewayError]]) -> list[AuditEvent]:
    """The refused items' events, in item order (the order they were refused in)."""
    return [event for events, _ in refusals.values() for event in events]


class WatchSource(Protocol):
    def stream(self, request: pb.WatchRequest, context: Context) -> AsyncIterator[pb.WatchEvent]: ...

    @property
    def instance(self) -> str:
        """This gateway process, as its streams and answers name it (``gateway_instance``)."""
        ...

    def checked(self, caller_id: str, subject: str) -> Callable[[], None]:
        """A caller passed its grant for ``subject``: its streams may name the subject's changes.
        Returns the undo, for a check that ends without an audited answer."""
        ...

    def checked_many(self, caller_id: str, subjects: Sequence[str]) -> Callable[[], None]:
        """:meth:`checked` for the subjects of a batch, at one instant; one undo for all of them."""
        ...


def _no_observer(method: str, seconds: float) -> None:
    return None


def _nothing() -> None:
    return None


class CheckService(pb_grpc.CheckServiceServicer):
    def __init__(
        self,
        engine: CheckEngine,
        access: AccessControl,
        audit: AuditSink,
        receipts: ReceiptSigner | None,
        watch: WatchSource | None = None,
        observe_latency: Callable[[str, float], None] = _no_observer,
        replays: Replays | None = None,
    ) -> None:
        self.engine = engine
        self.replays = replays
        self.access = access
        self.audit = audit
        self.receipts = receipts
        self.watch = watch
        self.observe_latency = observe_latency
        # The day each caller's person-quota alert was raised (one alert per caller and day).
        self._quota_alerted: dict[str, dt.date] = {}

    async def Watch(self, request: pb.WatchRequest, context: Context) -> AsyncIterator[pb.WatchEvent]:
        if self.watch is None:
            raise FailedPrecondition("this gateway has no change stream", reason="watch.unavailable")
        async for event in self.watch.stream(request, context):
            yield event

    async def ReportOutcome(self, request: pb.OutcomeReport, context: Context) -> pb.OutcomeAck:
        caller: Caller | None = None
        try:
            caller = self.access.caller(context)
            feedback = self._feedback(caller, request)
            existing = self.engine.store.get_feedback(caller.caller_id, feedback.approval_id)
            if existing is not None and not existing.same_report(feedback):
                raise FailedPrecondition(
                    f"approval {echo(feedback.approval_id)} was already reported with other content",
                    reason="feedback.conflict",
                )
        except GatewayError as error:
            if not error.accounted:
                await self.audit.append(
                    _feedback_event(caller, request, error.status.name, error.reason, error)
                )
            raise
        if existing is not None:
            return _ack(existing, duplicate=True)
        await self.audit.append(_feedback_event(caller, request, "OK", "", feedback))
        self.engine.store.add_feedback(feedback)
        return _ack(feedback, duplicate=False)

    def _feedback(self, caller: Caller, request: pb.OutcomeReport) -> Feedback:
        approval_id = request.approval_id.strip()
        validate_decision(approval_id, request.decision)
        applied = tuple(dict.fromkeys(m.strip() for m in request.applied_measures if m.strip()))
        at = self.engine.clock()
        if request.receipt.strip():
            if self.receipts is None:
                raise FailedPrecondition("this gateway issues no receipts", reason="feedback.no_receipts")
            return from_receipt(
                compact=request.receipt,
                caller_id=caller.caller_id,
                department=caller.department,
                approval_id=approval_id,
                decision=request.decision,
                applied=applied,
                note=request.note,
                public_keys=self.receipts.keyring.public_keys(),
                policy=self.engine.policy,
                at=at,
            )
        # An approval made without a check: declared, and listed as unbacked by coverage.
        matter = self.engine.matter(request.matter)
        subject = self.engine.subject(request.subject, None, at)
        if applied:
            raise InvalidArgument(
                "without a receipt no measure can be reported as applied", reason="feedback.measures"
            )
        subject_hash = self.receipts.protector.keyed_hash(subject.code)[1] if self.receipts else ""
        return Feedback(
            caller_id=caller.caller_id,
            approval_id=approval_id,
            matter=matter.code,
            department=caller.department,
            subject_hash=subject_hash,
            decision=request.decision,
            applied=(),
            note=request.note,
            receipt_id="",
            check_seq=0,
            check_outcome="",
            check_measures=(),
            checked_at=None,
            reported_at=at,
        )

    async def ReceiptKeys(self, request: pb.ReceiptKeysRequest, context: Context) -> pb.ReceiptKeysResponse:
        self.access.caller(context)
        if self.receipts is None:
            raise FailedPrecondition("this gateway issues no receipts (it runs without its audit log)")
        return pb.ReceiptKeysResponse(public_keys_pem=self.receipts.public_keys_pem())

    async def Check(self, request: pb.CheckRequest, context: Context) -> pb.CheckResponse:
        # Announced, so that group commit can wait for this record and write it with others.
        with self.audit.announce() as announcement:
            return await self._check(request, context, announcement)

    async def BatchCheck(self, request: pb.BatchCheckRequest, context: Context) -> pb.BatchCheckResponse:
        with self.audit.announce() as announcement:
            return await self._batch_check(request, context, announcement)

    async def _check(
        self, request: pb.CheckRequest, context: Context, announcement: Announcement
    ) -> pb.CheckResponse:
        replay = request.as_of_version != 0 or request.HasField("as_of_time") or bool(request.replay_of)
        draft = _Draft(
            "replay" if replay else "check",
            request.matter,
            request.purpose,
            request.authorization_ref,
            request.subject,
        )
        undo_watch: Callable[[], None] = _nothing
        try:
            try:
                draft.caller = self.access.caller(context)
                if request.replay_of:
                    answer, grant = await self._replay_record(draft.caller, draft, request)
                elif replay:
                    answer, grant = self._replay(draft.caller, request, self.engine.matter(request.matter))
                else:
                    matter = self.engine.matter(request.matter)
                    at = self.engine.clock()
                    grant = self.access.grant(draft.caller, matter, request.purpose, at)
                    self.access.throttle(draft.caller, grant)
                    subject = self.engine.subject(request.subject, _subject_kind(request.subject_kind), at)
                    await self.access.subject_counted(
                        draft.caller, grant, subject, request.authorization_ref, at
                    )
                    if self.watch is not None:  # before the lookup: no change after it goes unnamed
                        undo_watch = self.watch.checked(draft.caller.caller_id, subject.code)
                    answer = self.engine.answer(subject, matter, draft.caller.department, at)
                response = check_response(answer, Masker(grant.visible_fields))
                if self.watch is not None and not replay:
                    response.gateway_instance = self.watch.instance
            except GatewayError as error:
                if not error.accounted:
                    await self.audit.append_many(
                        self._failure_events(draft.refused_by(error), error), announcement=announcement
                    )
                self._log(draft.kind, draft, error.status.name)
                raise
            except Exception as error:
                await self.audit.append(_internal_error(draft, error), announcement=announcement)
                raise
            # The receipt is signed where the record gets its seq. A replay shows the past: it is no check an
            # approval could rest on, and has none.
            _, receipts = await self.audit.append_receipted(
                [draft.event(status="OK", outcome=answer.evaluation.outcome.value, answer=answer)],
                () if replay or self.receipts is None else (0,),
                announcement=announcement,
            )
        except BaseException:
            undo_watch()  # no audited answer: the caller's streams name nothing for this check
            raise
        if receipts:
            response.receipt = receipts[0]
        self._log(draft.kind, draft, "OK")
        return response

    async def _replay_record(
        self, caller: Caller, draft: _Draft, request: pb.CheckRequest
    ) -> tuple[CheckAnswer, Grant]:
        """Replay of one audited check (auditor role): as the original caller, with the record's policy set
        (check/replay.py)."""
        self.access.require_role(caller, ROLE_AUDITOR)
        if self.replays is None:
            raise FailedPrecondition("this gateway replays no records", reason="replay.no_log")
        replayed = await self.replays.replay(request)
        draft.extra = replayed.detail
        draft.matter = replayed.answer.evaluation.matter.code
        return replayed.answer, self.access.registry.snapshot().grants.get(caller.caller_id) or AUDITOR_VIEW

    def _replay(self, caller: Caller, request: pb.CheckRequest, matter: Matter) -> tuple[CheckAnswer, Grant]:
        """Point-in-time replay (auditor role): the answer as it was at a data version and instant."""
        self.access.require_role(caller, ROLE_AUDITOR)
        at = self._replay_time(request)
        if request.as_of_version < 0:
            raise InvalidArgument(
                f"as_of_version must be a data version, or 0 for the data now; got {request.as_of_version}",
                reason="replay.as_of_version",
            )
        if request.as_of_version > (current := self.engine.store.data_version()):
            raise InvalidArgument(
                f"as_of_version {request.as_of_version} is beyond the current data version {current}",
                reason="replay.as_of_version",
            )
        version = request.as_of_version or self.engine.store.data_version_at(at)
        grant = self.access.registry.snapshot().grants.get(caller.caller_id) or AUDITOR_VIEW
        subject = self.engine.subject(request.subject, _subject_kind(request.subject_kind), at)
        return self.engine.answer(subject, matter, caller.department, at, as_of_version=version), grant

    def _replay_time(self, request: pb.CheckRequest) -> dt.datetime:
        """The instant a replay is for: as_of_time, between REPLAY_EARLIEST and now; unset: now."""
        now = self.engine.clock()
        if not request.HasField("as_of_time"):
            return now
        stamp = request.as_of_time
        latest = now + REPLAY_CLOCK_SKEW
        if (
            not 0 <= stamp.nanos < 1_000_000_000
            or not REPLAY_EARLIEST.timestamp() <= stamp.seconds <= latest.timestamp()
        ):
            raise InvalidArgument(
                f"as_of_time must be an instant between {REPLAY_EARLIEST.date()} and now: a replay shows "
                "the past",
                reason="replay.as_of_time",
            )
        return stamp.ToDatetime(tzinfo=dt.UTC)

    async def _batch_check(
        self, request: pb.BatchCheckRequest, context: Context, announcement: Announcement
    ) -> pb.BatchCheckResponse:
        refused = _Draft("batch", request.matter, request.purpose, request.authorization_ref, "")
        try:
            caller = refused.caller = self.access.caller(context, items=len(request.subjects))
            if not request.subjects:
                raise InvalidArgument(
                    "subjects is empty: a batch needs 1 to 1000 subjects", reason="batch.empty"
                )
            kinds = _batch_kinds(request)
            if len(request.subjects) > MAX_BATCH:
                raise InvalidArgument(
                    f"a batch takes at most {MAX_BATCH} subjects, got {len(request.subjects)}",
                    reason="batch.too_large",
                )
            matter = self.engine.matter(request.matter)
            at = self.engine.clock()
            grant = self.access.grant(caller, matter, request.purpose, at)
            self.access.throttle(caller, grant, len(request.subjects))
        except GatewayError as error:
            # Refused before any item was looked at: one record, whatever the batch's size (R10), with
            # the item count and a digest of the subjects.
            if not error.accounted:
                refused.extra = {
                    "items": len(request.subjects),
                    "subjects_digest": self._digest(request.subjects),
                }
                await self.audit.append(
                    self._failure_event(refused.refused_by(error), error), announcement=announcement
                )
            self._log("batch_check", refused, error.status.name)
            raise
        masked: dict[str, str] = {}  # purpose and reference masked once for the batch's items
        drafts = [
            _Draft(
                "batch_item",
                request.matter,
                request.purpose,
                request.authorization_ref,
                subject,
                started=refused.started,
                caller=caller,
                masked=masked,
            )
            for subject in request.subjects
        ]
        masker = Masker(grant.visible_fields)
        # The store's version learnt once for the whole batch (not once an item): every item is answered
        # as of at least this version, and the gateway's cache has caught up with it before any answer.
        current = self.engine.lookups.current_version()
        undo_watch: list[Callable[[], None]] = []
        # Each item validated and its access checked: its refusal, or the subject to look up.
        refusals: dict[int, tuple[list[AuditEvent], GatewayError]] = {}
        passed: list[tuple[int, _Draft, ValidSubject]] = []
        # Person lookups the store counts (PostgreSQL) are counted after the loop, off the event loop.
        blocks = self.access.quota_blocks
        uncounted: list[tuple[int, _Draft, ValidSubject]] = []
        try:
            for index, draft in enumerate(drafts):
                try:
                    subject = self.engine.subject(draft.subject, kinds[index], at)
                    if self.access.subject(
                        caller, grant, subject, request.authorization_ref, at, count=not blocks
                    ):
                        uncounted.append((index, draft, subject))
                        continue
                except Exception as error:
                    if not isinstance(error, _PER_ITEM_ERRORS):
                        # Everything checked so far, and this item, is audited before the call fails.
                        await self.audit.append_many(
                            [*_refusal_events(refusals), _internal_error(draft, error)],
                            announcement=announcement,
                        )
                        raise
                    refusals[index] = (self._failure_events(draft, error), error)
                    continue
                passed.append((index, draft, subject))
            if uncounted:
                await self._count_persons(caller, grant, at, uncounted, passed, refusals, announcement)
            if self.watch is not None and passed:  # before the lookup: no change after it goes unnamed
                undo_watch.append(
                    self.watch.checked_many(caller.caller_id, [subject.code for _, _, subject in passed])
                )
            # One read for the batch: the subjects the gateway's cache does not hold, from the store together.
            try:
                looked_up = self.engine.lookups.lookup_many(
                    [(subject.code, subject.kind is SubjectKind.PERSON) for _, _, subject in passed],
                    current=current,
                )
                answers = {
                    index: self.engine.answer(
                        subject, matter, caller.department, at, current_version=current, looked_up=lookup
                    )
                    for (index, _, subject), lookup in zip(passed, looked_up, strict=True)
                }
            except Exception as error:
                # Every item is audited before the call fails: the refusals, and each looked-up subject.
                await self.audit.append_many(
                    [
                        *_refusal_events(refusals),
                        *(_internal_error(draft, error) for _, draft, _ in passed),
                    ],
                    announcement=announcement,
                )
                raise
            response = pb.BatchCheckResponse()
            events: list[AuditEvent] = []
            answered: list[tuple[int, int]] = []  # (item, its audit event) of each allowed item
            version = 0
            drafted = {index: draft for index, draft, _ in passed}
            for index in range(len(drafts)):
                item = response.items.add(index=index)
                refusal = refusals.get(index)
                if refusal is not None:
                    refusal_events, item_error = refusal
                    events += refusal_events
                    item.error.code = item_error.status.value[0]
                    item.error.message = shown_message(item_error.message)
                    item.error.reason = item_error.reason
                    item.error.reason_name = reason_value(item_error.reason)
                    continue
                answer = answers[index]
                version = max(version, answer.data_version)
                answered.append((index, len(events)))
                events.append(
                    drafted[index].event(status="OK", outcome=answer.evaluation.outcome.value, answer=answer)
                )
                fill_check_response(item.result, answer, masker)
                if self.watch is not None:
                    item.result.gateway_instance = self.watch.instance
            _, receipts = await self.audit.append_receipted(
                events,
                [event_index for _, event_index in answered] if self.receipts is not None else (),
                announcement=announcement,
            )
        except BaseException:
            for undo in undo_watch:  # no audited answers: the caller's streams name nothing for them
                undo()
            raise
        if receipts:  # one for each allowed item, in order
            for (item_index, _), receipt in zip(answered, receipts, strict=True):
                response.items[item_index].result.receipt = receipt
        self._log("batch_check", drafts[0], "OK", subjects=len(drafts))
        response.data_version = version or self.engine.store.data_version()
        return response

    async def _count_persons(
        self,
        caller: Caller,
        grant: Grant,
        at: dt.datetime,
        uncounted: list[tuple[int, _Draft, ValidSubject]],
        passed: list[tuple[int, _Draft, ValidSubject]],
        refusals: dict[int, tuple[list[AuditEvent], GatewayError]],
        announcement: Announcement,
    ) -> None:
        """Count the batch's person lookups in the store (in item order, one hop off the event loop):
        each allowed one joins ``passed``, each over the quota ``refusals``; both stay in item order."""
        try:
            taken = await self.access.take_persons(caller, grant, at, len(uncounted))
        except Exception as error:
            # Everything checked so far is audited before the call fails, as for an item's own failure.
            await self.audit.append_many(
                [*_refusal_events(refusals), *(_internal_error(draft, error) for _, draft, _ in uncounted)],
                announcement=announcement,
            )
            raise
        for item, allowed in zip(uncounted, taken, strict=True):
            if allowed:
                passed.append(item)
            else:
                over = self.access.over_quota(caller, grant)
                refusals[item[0]] = (self._failure_events(item[1], over), over)
        passed.sort(key=lambda item: item[0])
        ordered = sorted(refusals.items())
        refusals.clear()
        refusals.update(ordered)

    def _digest(self, subjects: Sequence[str]) -> str:
        """A digest of a refused batch's subjects (joined by newlines): keyed, as the audit log hashes
        subjects, so that it names no subject yet shows whether a given list was the one sent."""
        joined = "\n".join(subjects)
        if self.receipts is None:
            return "sha256:" + hashlib.sha256(joined.encode()).hexdigest()
        key_id, digest = self.receipts.protector.keyed_hash(joined)
        return f"{self.receipts.protector.suite.public.keyed_hash_name}:{key_id}:{digest}"

    def _failure_events(self, draft: _Draft, error: GatewayError) -> list[AuditEvent]:
        events = [self._failure_event(draft, error)]
        if error.reason == "quota.persons" and draft.caller is not None:
            # Bulk enumeration of ID numbers is the abuse to stop: raise an alert for auditors — once per
            # caller and day (China Standard Time), not once per refused item of every batch.
            day = self.engine.clock().astimezone(CHINA_STANDARD_TIME).date()
            if self._quota_alerted.get(draft.caller.caller_id) != day:
                self._quota_alerted[draft.caller.caller_id] = day
                alert = draft.event(status=error.status.name, outcome="alert", reason=error.reason)
                events.append(replace(alert, kind="alert"))
        return events

    @staticmethod
    def _failure_event(draft: _Draft, error: GatewayError) -> AuditEvent:
        return draft.event(status=error.status.name, outcome=failure_outcome(error), reason=error.reason)

    def _log(self, event: str, draft: _Draft | None, status: str, **extra: Any) -> None:
        if draft is not None:
            self.observe_latency(event, time.perf_counter() - draft.started)
        log.info(
            event,
            caller=draft.caller.caller_id if draft and draft.caller else None,
            matter=mask_id_shapes(draft.matter) if draft else None,
            status=status,
            latency_ms=round((time.perf_counter() - draft.started) * 1000, 3) if draft else None,
            **extra,
        )
