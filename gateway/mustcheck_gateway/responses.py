"""Domain answers to protobuf responses. Every personal field passes through the masker (R9)."""

from __future__ import annotations

import datetime as dt
from typing import Any

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


def set_time(field: Timestamp, instant: dt.datetime) -> None:
    """``field`` (a message's timestamp field, marked present) set to ``instant`` in place, as
    :func:`timestamp` would make it: no message is built to be copied in."""
    since = (instant if instant.tzinfo is not None else instant.replace(tzinfo=dt.UTC)) - _EPOCH
    field.seconds = since.days * 86_400 + since.seconds
    field.nanos = since.microseconds * 1000


def check_response(answer: CheckAnswer, masker: Masker) -> pb.CheckResponse:
    """The answer as its message. Built in place (repeated fields through ``add``, timestamps set in their
    fields): a message passed to a constructor is copied, and an answer carries several a membership."""
    response = pb.CheckResponse()
    fill_check_response(response, answer, masker)
    return response


def fill_check_response(response: pb.CheckResponse, answer: CheckAnswer, masker: Masker) -> None:
    """:func:`check_response` written into ``response`` (an empty message, e.g. a batch item's result, so
    that the answer is not copied into its batch response)."""
    evaluation = answer.evaluation
    subject = evaluation.subject
    person = subject.kind is SubjectKind.PERSON
    matter = evaluation.matter
    response.subject = masker.person_id(subject.code) if person else subject.code
    response.subject_kind = SUBJECT_KIND_TO_PROTO[subject.kind]
    response.subject_name = masker.person_name(evaluation.subject_name) if person else evaluation.subject_name
    response.matter = matter.code
    response.outcome = OUTCOME_TO_PROTO[evaluation.outcome]
    response.green_channel = evaluation.green_channel
    response.human_review_required = evaluation.human_review_required
    response.review_notice = evaluation.review_notice
    response.legacy_code = answer.legacy_code
    response.data_version = answer.data_version
    response.freshness_tolerance_s = matter.freshness_tolerance_s
    response.fail_mode = FAIL_MODE_TO_PROTO[matter.fail_mode]
    response.green_channel_reason = evaluation.green_channel_reason
    set_time(response.checked_at, answer.checked_at)
    memberships = response.memberships
    for membership in evaluation.memberships:
        _add_membership(memberships, membership, masker, evaluation)
    measures = response.measures
    for applied in evaluation.measures:
        _add_measure(measures, applied)
    if evaluation.data_complete_since is not None:
        set_time(response.data_complete_since, evaluation.data_complete_since)


def persons_of(entry: ListEntry) -> tuple[list[str], list[str]]:
    """The names and ID numbers of the persons an entry names: its subject if a person, and the
    persons responsible for an organisation (R7)."""
    names = [person.name for person in entry.responsible_persons]
    ids = [person.person_id for person in entry.responsible_persons]
    if entry.subject_kind is SubjectKind.PERSON:
        names.append(entry.subject_name)
        ids.append(entry.subject_code)
    return names, ids


def _add_membership(
    memberships: Any, membership: ShownMembership, masker: Masker, evaluation: Evaluation
) -> None:
    entry = membership.entry
    names, ids = persons_of(entry)
    if evaluation.subject.kind is SubjectKind.PERSON:  # the checked person, reached through an organisation
        names.append(evaluation.subject_name)
        ids.append(evaluation.subject.code)
    message = memberships.add(
        entry_id=entry.entry_id,
        list=LIST_KIND_TO_PROTO[entry.list_kind],
        memorandum_id=membership.memorandum.id,
        memorandum_title=membership.memorandum.title,
        initiating_department=entry.initiating_department,
        status=STATUS_TO_PROTO[entry.status],
        severity=entry.severity,
        decision_document=masker.text(entry.decision_document, names=names, ids=ids),
        reason=masker.text(entry.reason, names=names, ids=ids),
        in_force=membership.in_force,
    )
    set_time(message.decision_date, entry.decision_date)
    set_time(message.effective_from, entry.effective_from)
    set_time(message.punish_until, entry.punish_until)
    set_time(message.display_until, membership.display_until)
    if membership.via is not None:
        message.via.organization_code = membership.via.organization_code
        message.via.organization_name = membership.via.organization_name
        message.via.role = membership.via.role.value


def _add_measure(measures: Any, applied: AppliedMeasure) -> None:
    measure = applied.measure
    message = measures.add(
        id=measure.id,
        kind=MEASURE_KIND_TO_PROTO[measure.kind],
        text=measure.text,
        mandatory=measure.mandatory,
        memorandum_id=applied.memorandum_id,
        implementing_departments=measure.implementing_departments,
        entry_id=applied.entry_id,
    )
    if measure.legal_basis is not None:
        message.legal_basis.document = measure.legal_basis.document
        message.legal_basis.section = measure.legal_basis.section
