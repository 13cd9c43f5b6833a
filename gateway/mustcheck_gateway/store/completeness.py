"""Since when the store holds complete list data (R6), for both backends.

"No bad record for three consecutive years" is only true where the store holds every list entry of
those three years. Administrators record the date from which the data is complete (``lists
data-complete-since``), and an import of a complete snapshot records it too. Each setting is a row
kept for good, stamped with the data version it made: a replay as of a version reads the setting then
in force. A fresh store has no row, and so attests nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from .base import Completeness
from .codec import format_instant, parse_instant

CREATE_TABLE = """CREATE TABLE data_completeness (
                data_version BIGINT PRIMARY KEY,
                complete_since TEXT NOT NULL,
                set_by TEXT NOT NULL,
                set_at TEXT NOT NULL,
                how TEXT NOT NULL
            )"""


def select_latest(placeholder: str) -> str:
    """The setting in force at a data version (the one parameter)."""
    return (
        "SELECT complete_since, set_by, set_at, how, data_version FROM data_completeness "
        f"WHERE data_version <= {placeholder} ORDER BY data_version DESC LIMIT 1"
    )


def insert(placeholder: str) -> str:
    marks = ", ".join([placeholder] * 5)
    return (
        f"INSERT INTO data_completeness (data_version, complete_since, set_by, set_at, how) VALUES ({marks})"
    )


def values(version: int, since: dt.datetime, actor: str, at: dt.datetime, how: str) -> tuple[Any, ...]:
    return (version, format_instant(since), actor, format_instant(at), how)


def from_row(row: Sequence[Any] | None) -> Completeness | None:
    if row is None:
        return None
    since, actor, at, how, version = row
    return Completeness(parse_instant(str(since)), str(actor), parse_instant(str(at)), str(how), int(version))
