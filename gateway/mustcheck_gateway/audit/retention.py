"""Retention (R14): audit records are kept at least three years and cannot be deleted before that."""

from __future__ import annotations

import datetime as dt

from .errors import RetentionError

RETENTION_YEARS = 3


def retention_limit(now: dt.datetime) -> dt.datetime:
    """The latest allowed prune cut-off: ``now`` three calendar years back (29 Feb → 28 Feb)."""
    return _add_years(now, -RETENTION_YEARS)


def check_prune_allowed(before: dt.datetime, now: dt.datetime) -> None:
    """Raise :class:`RetentionError` unless every record older than ``before`` is past retention."""
    if before.tzinfo is None or now.tzinfo is None:
        raise ValueError("prune needs timezone-aware instants")
    limit = retention_limit(now)
    if before > limit:
        allowed_from = _add_years(before, RETENTION_YEARS)
        raise RetentionError(
            f"cannot prune audit records before {_show(before)}: records are kept {RETENTION_YEARS} years "
            f"(R14). The cut-off may be at most {_show(limit)} (now minus {RETENTION_YEARS} years); "
            f"the earliest date a prune up to {_show(before)} is allowed is {_show(allowed_from)}"
        )


def _add_years(instant: dt.datetime, years: int) -> dt.datetime:
    try:
        return instant.replace(year=instant.year + years)
    except ValueError:
        return instant.replace(year=instant.year + years, day=28)


def _show(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).isoformat(timespec="seconds")
