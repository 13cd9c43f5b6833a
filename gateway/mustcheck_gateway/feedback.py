"""Execution feedback (执行反馈, 33号 §18, §23): what an approval decided, and which measures it applied.

A report names the receipt of the check the decision rests on. The gateway accepts it only if the
receipt is genuine, is the reporting caller's own, is not older than the matter's tolerance for
decisions, and the applied measures are among the receipt's. An approval made without any check may be
reported with its matter and subject instead of a receipt: coverage then lists it as unbacked.
Reports are idempotent per approval id: the same report again changes nothing; a different one is
refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from mustcheck.receipts import InvalidReceipt, verify_receipt
from mustcheck.suites import PublicKey

from .errors import FailedPrecondition, InvalidArgument, PermissionDenied
from .policy.model import Matter, PolicySet

DECISIONS = ("approved", "rejected", "deferred")
MAX_APPROVAL_ID = 128


@dataclass(frozen=True, slots=True)
class Feedback:
    caller_id: str
    approval_id: str
    matter: str
    department: str
    subject_hash: str
    decision: str
    applied: tuple[str, ...]
    note: str
    receipt_id: str  # empty: the approval rests on no check
    check_seq: int
    check_outcome: str
    check_measures: tuple[str, ...]
    checked_at: dt.datetime | None
    reported_at: dt.datetime
    # The audit log the check is in (its receipt's tree head names it): with ``check_seq`` it names the
    # record in a deployment of several replicas. "" for feedback given before logs were named, or on a
    # receipt of the previous format (matched by seq alone, as then).
    check_log: str = ""

    @property
    def backed(self) -> bool:
        return bool(self.receipt_id)

    def same_report(self, other: Feedback) -> bool:
        """The same content, whenever it was received."""
        return (self.decision, self.applied, self.note, self.receipt_id, self.matter, self.subject_hash) == (
            other.decision,
            other.applied,
            other.note,
            other.receipt_id,
            other.matter,
            other.subject_hash,
        )


def validate_decision(approval_id: str, decision: str) -> None:
    if not approval_id.strip() or len(approval_id) > MAX_APPROVAL_ID:
        raise InvalidArgument(
            f"approval_id must be 1 to {MAX_APPROVAL_ID} characters", reason="feedback.approval_id"
        )
    if decision not in DECISIONS:
        raise InvalidArgument(f"decision must be one of {', '.join(DECISIONS)}", reason="feedback.decision")


def from_receipt(
    *,
    compact: str,
    caller_id: str,
    department: str,
    approval_id: str,
    decision: str,
    applied: tuple[str, ...],
    note: str,
    public_keys: Mapping[str, PublicKey],
    policy: PolicySet,
    at: dt.datetime,
) -> Feedback:
    """A report resting on a receipt, checked as the module docstring says."""
    try:
        receipt = verify_receipt(compact, public_keys)
    except InvalidReceipt as error:
        raise InvalidArgument(f"receipt refused: {error.message}", reason="feedback.receipt") from None
    if receipt.caller != caller_id:
        raise PermissionDenied("the receipt belongs to another caller", reason="feedback.receipt_caller")
    matter: Matter | None = policy.matters.get(receipt.matter)
    if matter is None:
        raise InvalidArgument(
            f"the receipt's matter {receipt.matter} is no longer in the catalog", reason="feedback.matter"
        )
    age = (at - receipt.issued_at).total_seconds()
    if age > matter.decision_tolerance_s:
        raise FailedPrecondition(
            f"the receipt is {int(age)} s old; decisions on {matter.code} must rest on a check at most "
            f"{matter.decision_tolerance_s} s old",
            reason="feedback.stale_receipt",
        )
    unknown = sorted(set(applied) - set(receipt.measure_ids))
    if unknown:
        raise InvalidArgument(
            f"applied measures not in the receipt: {', '.join(unknown)}", reason="feedback.measures"
        )
    return Feedback(
        caller_id=caller_id,
        approval_id=approval_id,
        matter=receipt.matter,
        department=department,
        subject_hash=receipt.subject_hash,
        decision=decision,
        applied=applied,
        note=note,
        receipt_id=receipt.receipt_id,
        check_seq=receipt.audit_seq,
        check_outcome=receipt.outcome,
        check_measures=receipt.measure_ids,
        checked_at=receipt.issued_at,
        reported_at=at,
        check_log=receipt.tree_head.log_id if receipt.tree_head is not None else "",
    )
