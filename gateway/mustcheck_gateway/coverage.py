"""应查必查 and 奖惩到位, counted: coverage of must-check matters, and statistics of checks (跟踪问效).

Coverage, per must-check matter, over the approvals reported in a period: how many were reported; how
many rest on a check of the same subject and matter (a genuine receipt, checked before the decision);
which did not; which mandatory measures applied to an approved subject yet were not reported as
applied; and which checks that found restrictions were never followed by any feedback.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .audit import AuditRecord
from .audit.record import CHECK_KINDS
from .china_time import CHINA_STANDARD_TIME
from .feedback import Feedback
from .policy.model import PolicySet

STATS_KEYS = ("department", "matter", "memorandum", "measure", "outcome")
BUCKETS = ("day", "month")


@dataclass
class MatterCoverage:
    matter: str
    department: str
    approvals_reported: int = 0
    approvals_backed: int = 0
    approvals_without_check: list[str] = field(default_factory=list)
    mandatory_not_applied: list[tuple[str, str]] = field(default_factory=list)
    mandatory_due: int = 0
    mandatory_applied: int = 0
    restricted_check_seqs: list[int] = field(default_factory=list)
    restricted_checks: list[tuple[str, int]] = field(default_factory=list)  # (log id, seq)


def coverage(
    policy: PolicySet,
    feedback: Iterable[Feedback],
    checks: Iterable[AuditRecord],
    followed: set[tuple[str, int]],
    *,
    department: str | None = None,
    matter: str | None = None,
) -> list[MatterCoverage]:
    rows = {
        code: MatterCoverage(code, m.department)
        for code, m in sorted(policy.matters.items())
        if m.must_check and (department is None or m.department == department) and (matter in (None, code))
    }
    for report in feedback:
        row = rows.get(report.matter)
        if row is None:
            continue
        row.approvals_reported += 1
        if report.backed and report.checked_at is not None and report.checked_at <= report.reported_at:
            row.approvals_backed += 1
        else:
            row.approvals_without_check.append(report.approval_id)
        if report.decision == "approved":
            for measure_id in report.check_measures:
                measure = policy.measures.get(measure_id)
                if measure is None or not measure.mandatory:
                    continue
                row.mandatory_due += 1
                if measure_id in report.applied:
                    row.mandatory_applied += 1
                else:
                    row.mandatory_not_applied.append((report.approval_id, measure_id))
    unnamed = {seq for log_id, seq in followed if not log_id}  # feedback naming no log: by seq
    any_log = {seq for _, seq in followed}
    for record in checks:
        row = rows.get(record.matter)
        if (
            row is not None
            and record.kind in CHECK_KINDS
            and record.status == "OK"
            and record.outcome == "restrictions"
            and not _followed(record, followed, unnamed, any_log)
        ):
            row.restricted_check_seqs.append(record.seq)
            row.restricted_checks.append((record.log_id, record.seq))
    return list(rows.values())


def _followed(
    record: AuditRecord, followed: set[tuple[str, int]], unnamed: set[int], any_log: set[int]
) -> bool:
    """Whether feedback rests on ``record``: named by (log id, seq); feedback that names no log (given
    before logs were named) matches by seq, as does a record of the embedded log (which has no log id)."""
    if record.seq in unnamed:
        return True
    if not record.log_id:
        return record.seq in any_log
    return (record.log_id, record.seq) in followed


def stats(records: Iterable[AuditRecord], *, by: str, bucket: str) -> list[tuple[str, str, int]]:
    """(bucket, key, checks) for successful checks, ``by`` one of :data:`STATS_KEYS`."""
    counts: Counter[tuple[str, str]] = Counter()
    for record in records:
        if record.kind not in CHECK_KINDS or record.status != "OK":
            continue
        local = record.at.astimezone(CHINA_STANDARD_TIME)
        period = local.strftime("%Y-%m-%d" if bucket == "day" else "%Y-%m")
        for key in _keys(record, by):
            counts[(period, key)] += 1
    return [(period, key, count) for (period, key), count in sorted(counts.items())]


def _keys(record: AuditRecord, by: str) -> list[str]:
    if by == "measure":
        return list(record.measure_ids) or ["(none)"]
    if by == "memorandum":
        memoranda = record.detail.get("memoranda") or []
        return [str(m) for m in memoranda] or ["(none)"]
    return [str(getattr(record, by)) or "(none)"]
