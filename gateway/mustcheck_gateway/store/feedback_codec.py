"""Execution feedback to and from the column values every backend stores (text instants, JSON lists)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..feedback import Feedback
from .codec import format_instant, parse_instant

FEEDBACK_COLUMNS = (
    "caller_id",
    "approval_id",
    "matter",
    "department",
    "subject_hash",
    "decision",
    "applied",
    "note",
    "receipt_id",
    "check_seq",
    "check_outcome",
    "check_measures",
    "checked_at",
    "reported_at",
    "check_log",
)


def feedback_values(feedback: Feedback) -> tuple[Any, ...]:
    """The report's values in ``FEEDBACK_COLUMNS`` order."""
    return (
        feedback.caller_id,
        feedback.approval_id,
        feedback.matter,
        feedback.department,
        feedback.subject_hash,
        feedback.decision,
        json.dumps(list(feedback.applied)),
        feedback.note,
        feedback.receipt_id,
        feedback.check_seq,
        feedback.check_outcome,
        json.dumps(list(feedback.check_measures)),
        format_instant(feedback.checked_at) if feedback.checked_at else None,
        format_instant(feedback.reported_at),
        feedback.check_log,
    )


def feedback_from_values(values: Sequence[Any]) -> Feedback:
    """Rebuild a report from ``FEEDBACK_COLUMNS`` values."""
    row: dict[str, Any] = dict(zip(FEEDBACK_COLUMNS, values, strict=True))
    row["applied"] = tuple(json.loads(row["applied"]))
    row["check_seq"] = int(row["check_seq"])
    row["check_measures"] = tuple(json.loads(row["check_measures"]))
    row["checked_at"] = parse_instant(row["checked_at"]) if row["checked_at"] else None
    row["reported_at"] = parse_instant(row["reported_at"])
    row["check_log"] = str(row["check_log"] or "")
    return Feedback(**row)
