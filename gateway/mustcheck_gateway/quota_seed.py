"""After a restart, person-lookup quotas continue from today's audit records, not from zero."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from .audit import AuditLog
from .auth.ratelimit import CHINA_STANDARD_TIME, PersonQuota

_CHECK_KINDS = frozenset({"check", "batch_item"})


def seed_person_quota(quota: PersonQuota, log: AuditLog, at: dt.datetime) -> None:
    day = at.astimezone(CHINA_STANDARD_TIME).date()
    start = dt.datetime.combine(day, dt.time(), CHINA_STANDARD_TIME)
    counts = Counter(
        record.caller_id
        for record in log.query(since=start, limit=10**9)
        if record.kind in _CHECK_KINDS and record.subject_kind == "person" and record.status == "OK"
    )
    for caller_id, count in counts.items():
        quota.seed(caller_id, day, count)
