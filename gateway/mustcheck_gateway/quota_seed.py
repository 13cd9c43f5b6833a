"""After a restart, person-lookup quotas continue from today's audit records, not from zero."""

from __future__ import annotations

import datetime as dt

from .audit.backends import AnyAuditLog
from .audit.record import CHECK_KINDS
from .auth.ratelimit import Quota
from .china_time import CHINA_STANDARD_TIME


def seed_person_quota(quota: Quota, log: AnyAuditLog, at: dt.datetime) -> None:
    day = at.astimezone(CHINA_STANDARD_TIME).date()
    start = dt.datetime.combine(day, dt.time(), CHINA_STANDARD_TIME)
    counts = log.count_by_caller(start, kinds=sorted(CHECK_KINDS), subject_kind="person")
    for caller_id, count in counts.items():
        quota.seed(caller_id, day, count)
