"""Domain answers to protobuf responses. Every personal field passes through the masker (R9)."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from mustcheck._convert import (
    LIST_KIND_TO_PROTO,
    MEASURE_KIND_TO_PROTO,
    OUTCOME_TO_PROTO,
    STATUS_TO_PROTO,
    SUBJECT_KIND_TO_PROTO,
)
from mustcheck._generated.v1 import check_pb2 as pb
from mustcheck.identifiers import SubjectKind

from .checks import CheckAnswer
from .evaluation import AppliedMeasure, Evaluation, ShownMembership
from .masking import Masker
from .policy.model import FailMode
from .store.base import ListEntry

FAIL_MODE_TO_PROTO = {FailMode.CLOSED: pb.FAIL_MODE_CLOSED, FailMode.SERVE_STALE: pb.FAIL_MODE_SERVE_STALE}

SUBJECT_KIND_FROM_PROTO = {value: key for key, value in SUBJECT_KIND_TO_PROTO.items()}


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def timestamp(instant: dt.datetime) -> Timestamp:
    """As ``Timestamp.FromDatetime`` (a naive instant is UTC), without its pure-Python detour: a check
    answer carries four timestamps a membership, and this is on every answer's path."""
    since = (instant if instant.tzinfo is not None else instant.replace(tzinfo=dt.UTC)) - _EPOCH
    return Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000)


def check_response(answer: CheckAnswer, masker: Masker) -> pb.CheckResponse:
    evaluation = answer.evaluation
    subject = evaluation.subject
    person = subject.kind is SubjectKind.PERSON
    response = _check_response(answer, masker, person)
    if evaluation.data_complete_since is not None:
        response.data_complete_since.CopyFrom(timestamp(evaluation.data_complete_since))
    return response


def _check_response(answer: CheckAnswer, masker: Masker, person: bool) -> pb.CheckResponse:
    evaluation = answer.evaluation
    subject = evaluation.subject
    return pb.CheckResponse(
        subject=masker.person_id(subject.code) if person else subject.code,
        subject_kind=SUBJECT_KIND_TO_PROTO[subject.kind],
        subject_name=masker.person_name(evaluation.subject_name) if person else evaluation.subject_name,
        matter=evaluation.matter.code,
        outcome=OUTCOME_TO_PROTO[evaluation.outcome],
        memberships=[_membership(m, masker, evaluation) for m in evaluation.memberships],
        measures=[_measure(m) for m in evaluation.measures],
        green_channel=evaluation.green_channel,
        human_review_required=evaluation.human_review_required,
        review_notice=evaluation.review_notice,
        legacy_code=answer.legacy_code,
        data_version=answer.data_version,
        checked_at=timestamp(answer.checked_at),
        freshness_tolerance_s=evaluation.matter.freshness_tolerance_s,
        fail_mode=FAIL_MODE_TO_PROTO[evaluation.matter.fail_mode],
        green_channel_reason=evaluation.green_channel_reason,
    )


def persons_of(entry: ListEntry) -> tuple[list[str], list[str]]:
    """The names and ID numbers of the persons an entry names: its subject if a person, and the
    persons responsible for an organisation (R7)."""
    names = [person.name for person in entry.responsible_persons]
    ids = [person.person_id for person in entry.responsible_persons]
    if entry.subject_kind is SubjectKind.PERSON:
        names.append(entry.subject_name)
        ids.append(entry.subject_code)
    return names, ids


def _membership(membership: ShownMembership, masker: Masker, evaluation: Evaluation) -> pb.Membership:
    entry = membership.entry
    names, ids = persons_of(entry)
    if evaluation.subject.kind is SubjectKind.PERSON:  # the checked person, reached through an organisation
        names.append(evaluation.subject_name)
        ids.append(evaluation.subject.code)
    message = pb.Membership(
        entry_id=entry.entry_id,
        list=LIST_KIND_TO_PROTO[entry.list_kind],
        memorandum_id=membership.memorandum.id,
        memorandum_title=membership.memorandum.title,
        initiating_department=entry.initiating_department,
        status=STATUS_TO_PROTO[entry.status],
        severity=entry.severity,
        decision_document=masker.text(entry.decision_document, names=names, ids=ids),
        reason=masker.text(entry.reason, names=names, ids=ids),
        decision_date=timestamp(entry.decision_date),
        effective_from=timestamp(entry.effective_from),
        punish_until=timestamp(entry.punish_until),
        display_until=timestamp(membership.display_until),
        in_force=membership.in_force,
    )
    if membership.via is not None:
        message.via.organization_code = membership.via.organization_code
        message.via.organization_name = membership.via.organization_name
        message.via.role = membership.via.role.value
    return message


def _measure(applied: AppliedMeasure) -> pb.Measure:
    measure = applied.measure
    message = pb.Measure(
        id=measure.id,
        kind=MEASURE_KIND_TO_PROTO[measure.kind],
        text=measure.text,
        mandatory=measure.mandatory,
        memorandum_id=applied.memorandum_id,
        implementing_departments=list(measure.implementing_departments),
        entry_id=applied.entry_id,
    )
    if measure.legal_basis is not None:
        message.legal_basis.document = measure.legal_basis.document
        message.legal_basis.section = measure.legal_basis.section
    return message
