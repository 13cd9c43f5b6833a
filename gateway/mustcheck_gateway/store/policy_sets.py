"""Every policy set a gateway has served, kept content-addressed by its digest (both backends).

A gateway stores its policy set when it starts, if the store does not hold it yet; a replay loads the
set an audit record names (``mustcheck_gateway.policy.sets``). Rows are only ever added: there is no
statement that deletes or changes one, so a set stays while any record names it. The text is checked
against the digest both when it is kept and when it is read (``policy.sets.from_stored``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .codec import format_instant, parse_instant

CREATE_TABLE = """CREATE TABLE policy_sets (
    digest TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    first_served_at TEXT NOT NULL,
    first_served_by TEXT NOT NULL
)"""


@dataclass(frozen=True, slots=True)
class StoredPolicySet:
    digest: str
    body: str
    first_served_at: str
    first_served_by: str

    @property
    def served_since(self) -> dt.datetime:
        return parse_instant(self.first_served_at)


def insert(placeholder: str) -> str:
    """Keep a set unless the store holds it already (``?`` or ``%s``)."""
    marks = ", ".join([placeholder] * 4)
    return (
        f"INSERT INTO policy_sets (digest, body, first_served_at, first_served_by) VALUES ({marks}) "
        "ON CONFLICT (digest) DO NOTHING"
    )


def select_one(placeholder: str) -> str:
    return (
        f"SELECT digest, body, first_served_at, first_served_by FROM policy_sets WHERE digest = {placeholder}"
    )


SELECT_LISTING = (
    "SELECT digest, '', first_served_at, first_served_by FROM policy_sets ORDER BY first_served_at, digest"
)


def values(digest: str, body: str, served_by: str, at: dt.datetime) -> tuple[str, str, str, str]:
    return digest, body, format_instant(at), served_by


def from_values(row: tuple[object, ...]) -> StoredPolicySet:
    digest, body, at, by = row
    return StoredPolicySet(str(digest), str(body), str(at), str(by))
