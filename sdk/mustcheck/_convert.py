"""Protobuf messages to the SDK's typed results: the one place that knows both."""

from __future__ import annotations

import datetime as dt

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ._errors import error_for
from ._generated.v1 import check_pb2 as pb
from ._generated.v1 import reasons_pb2
from ._models import (
    BatchItem,
    BatchResult,
    CheckResult,
    EntryStatus,
    LegalBasis,
    Link,
    ListKind,
    Measure,
    MeasureKind,
    Membership,
    Outcome,
    OutcomeAck,
)
from .identifiers import SubjectKind
from .receipts import parse_receipt

# The one mapping between protobuf enum numbers and the SDK's enums. The gateway uses the
# *_TO_PROTO directions, so both ends of the wire agree by construction.
_SUBJECT_KIND = {
    pb.SUBJECT_KIND_ORGANIZATION: SubjectKind.ORGANIZATION,
    pb.SUBJECT_KIND_PERSON: SubjectKind.PERSON,
}
_OUTCOME = {
    pb.OUTCOME_NO_RECORD: Outcome.NO_RECORD,
    pb.OUTCOME_INCENTIVES: Outcome.INCENTIVES,
    pb.OUTCOME_RESTRICTIONS: Outcome.RESTRICTIONS,
    pb.OUTCOME_UNDER_OBJECTION: Outcome.UNDER_OBJECTION,
    pb.OUTCOME_LISTED_NO_MEASURES: Outcome.LISTED_NO_MEASURES,
}
_LIST = {pb.LIST_KIND_RED: ListKind.RED, pb.LIST_KIND_BLACK: ListKind.BLACK}
_STATUS = {
    pb.ENTRY_STATUS_ACTIVE: EntryStatus.ACTIVE,
    pb.ENTRY_STATUS_UNDER_OBJECTION: EntryStatus.UNDER_OBJECTION,
    pb.ENTRY_STATUS_REPAIRED: EntryStatus.REPAIRED,
    pb.ENTRY_STATUS_REVOKED: EntryStatus.REVOKED,
}
_MEASURE = {
    pb.MEASURE_KIND_INCENTIVE: MeasureKind.INCENTIVE,
    pb.MEASURE_KIND_PUNISHMENT: MeasureKind.PUNISHMENT,
}
SUBJECT_KIND_TO_PROTO = {value: key for key, value in _SUBJECT_KIND.items()}
OUTCOME_TO_PROTO = {value: key for key, value in _OUTCOME.items()}
LIST_KIND_TO_PROTO = {value: key for key, value in _LIST.items()}
STATUS_TO_PROTO = {value: key for key, value in _STATUS.items()}
MEASURE_KIND_TO_PROTO = {value: key for key, value in _MEASURE.items()}


def _instant(stamp: Timestamp) -> dt.datetime:
    return stamp.ToDatetime(tzinfo=dt.UTC)


def check_result(message: pb.CheckResponse) -> CheckResult:
    return CheckResult(
        subject=message.subject,
        subject_kind=_SUBJECT_KIND[message.subject_kind],
        subject_name=message.subject_name,
        matter=message.matter,
        outcome=_OUTCOME[message.outcome],
        memberships=tuple(_membership(m) for m in message.memberships),
        measures=tuple(_measure(m) for m in message.measures),
        green_channel=message.green_channel,
        human_review_required=message.human_review_required,
        review_notice=message.review_notice,
        legacy_code=message.legacy_code,
        data_version=message.data_version,
        checked_at=_instant(message.checked_at),
        receipt=parse_receipt(message.receipt) if message.receipt else None,
        green_channel_reason=message.green_channel_reason,
        data_complete_since=_instant(message.data_complete_since)
        if message.HasField("data_complete_since")
        else None,
    )


def _membership(message: pb.Membership) -> Membership:
    via = None
    if message.HasField("via"):
        via = Link(message.via.organization_code, message.via.organization_name, message.via.role)
    return Membership(
        entry_id=message.entry_id,
        list=_LIST[message.list],
        memorandum_id=message.memorandum_id,
        memorandum_title=message.memorandum_title,
        initiating_department=message.initiating_department,
        status=_STATUS[message.status],
        severity=message.severity,
        decision_document=message.decision_document,
        reason=message.reason,
        decision_date=_instant(message.decision_date),
        effective_from=_instant(message.effective_from),
        punish_until=_instant(message.punish_until),
        display_until=_instant(message.display_until),
        in_force=message.in_force,
        via=via,
    )


def _measure(message: pb.Measure) -> Measure:
    basis = None
    if message.HasField("legal_basis"):
        basis = LegalBasis(message.legal_basis.document, message.legal_basis.section)
    return Measure(
        id=message.id,
        kind=_MEASURE[message.kind],
        text=message.text,
        mandatory=message.mandatory,
        legal_basis=basis,
        memorandum_id=message.memorandum_id,
        implementing_departments=tuple(message.implementing_departments),
        entry_id=message.entry_id,
    )


def batch_result(message: pb.BatchCheckResponse, subjects: list[str]) -> BatchResult:
    items = []
    for item in message.items:
        subject = subjects[item.index] if 0 <= item.index < len(subjects) else ""
        if item.HasField("result"):
            items.append(BatchItem(item.index, subject, check_result(item.result), None))
        else:
            code = _status_code(item.error.code)
            error = item.error
            # An older gateway sends no reason_name (0): then it is derived from the dotted code.
            known = error.reason_name in reasons_pb2.Reason.values()
            name = reasons_pb2.Reason.Name(error.reason_name) if error.reason_name and known else ""
            items.append(
                BatchItem(item.index, subject, None, error_for(code, error.message, error.reason, name))
            )
    return BatchResult(tuple(items), message.data_version)


def _status_code(value: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


def outcome_ack(message: pb.OutcomeAck) -> OutcomeAck:
    return OutcomeAck(
        message.approval_id, message.backed_by_check, message.duplicate, _instant(message.reported_at)
    )


def receipt_keys(message: pb.ReceiptKeysResponse) -> dict[str, bytes]:
    """PEM by key id, as :func:`~mustcheck.verify_receipt` takes them."""
    return {key_id: pem.encode() for key_id, pem in message.public_keys_pem.items()}
