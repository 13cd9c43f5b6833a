"""Versioned schema migrations, in SQL that SQLite and PostgreSQL both accept.

Each migration is applied once, in order, in its own transaction, and recorded in
``schema_migrations``. Never edit a released migration: add the next one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from . import completeness, policy_sets


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


BOOKKEEPING = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "list entries, responsible persons, history and the data version",
        (
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
            "INSERT INTO meta (key, value) VALUES ('data_version', 0)",
            """CREATE TABLE entries (
                entry_id TEXT PRIMARY KEY,
                source TEXT NOT NULL,
                subject_code TEXT NOT NULL,
                subject_name TEXT NOT NULL,
                subject_kind TEXT NOT NULL,
                memorandum_id TEXT NOT NULL,
                list_kind TEXT NOT NULL,
                initiating_department TEXT NOT NULL,
                decision_document TEXT NOT NULL,
                reason TEXT NOT NULL,
                severity TEXT NOT NULL,
                decision_date TEXT NOT NULL,
                effective_from TEXT NOT NULL,
                punish_until TEXT NOT NULL,
                display_until TEXT NOT NULL,
                status TEXT NOT NULL,
                status_changed_at TEXT,
                data_version BIGINT NOT NULL
            )""",
            "CREATE INDEX entries_subject ON entries (subject_code)",
            """CREATE TABLE entry_persons (
                entry_id TEXT NOT NULL REFERENCES entries (entry_id),
                person_id TEXT NOT NULL,
                name TEXT NOT NULL,
                role TEXT NOT NULL,
                PRIMARY KEY (entry_id, person_id, role)
            )""",
            "CREATE INDEX entry_persons_person ON entry_persons (person_id)",
            """CREATE TABLE entry_history (
                entry_id TEXT NOT NULL,
                data_version BIGINT NOT NULL,
                action TEXT NOT NULL,
                actor TEXT NOT NULL,
                changed_at TEXT NOT NULL,
                snapshot TEXT NOT NULL,
                PRIMARY KEY (entry_id, data_version)
            )""",
        ),
    ),
    Migration(
        2,
        "callers, grants and bearer tokens",
        (
            "INSERT INTO meta (key, value) VALUES ('auth_version', 0)",
            """CREATE TABLE callers (
                caller_id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                department TEXT NOT NULL,
                roles TEXT NOT NULL,
                tls_identity TEXT,
                disabled INTEGER NOT NULL,
                created_at TEXT NOT NULL
            )""",
            "CREATE UNIQUE INDEX callers_tls_identity ON callers (tls_identity)",
            """CREATE TABLE grants (
                caller_id TEXT PRIMARY KEY REFERENCES callers (caller_id),
                spec TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            """CREATE TABLE tokens (
                token_id TEXT PRIMARY KEY,
                caller_id TEXT NOT NULL REFERENCES callers (caller_id),
                token_hash TEXT NOT NULL UNIQUE,
                label TEXT NOT NULL,
                created_at TEXT NOT NULL,
                expires_at TEXT NOT NULL,
                revoked_at TEXT
            )""",
        ),
    ),
    Migration(
        3,
        "the legacy code allow-list kept by administrators (R1)",
        (
            """CREATE TABLE legacy_codes (
                code TEXT PRIMARY KEY,
                reason TEXT NOT NULL,
                added_by TEXT NOT NULL,
                added_at TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        4,
        "execution feedback: what approvals decided and applied",
        (
            """CREATE TABLE feedback (
                caller_id TEXT NOT NULL,
                approval_id TEXT NOT NULL,
                matter TEXT NOT NULL,
                department TEXT NOT NULL,
                subject_hash TEXT NOT NULL,
                decision TEXT NOT NULL,
                applied TEXT NOT NULL,
                note TEXT NOT NULL,
                receipt_id TEXT NOT NULL,
                check_seq BIGINT NOT NULL,
                check_outcome TEXT NOT NULL,
                check_measures TEXT NOT NULL,
                checked_at TEXT,
                reported_at TEXT NOT NULL,
                PRIMARY KEY (caller_id, approval_id)
            )""",
            "CREATE INDEX feedback_reported ON feedback (reported_at)",
        ),
    ),
    Migration(
        5,
        "the subjects each data version touched, for the change stream and caches",
        (
            """CREATE TABLE subject_changes (
                data_version BIGINT NOT NULL,
                subject_code TEXT NOT NULL,
                PRIMARY KEY (data_version, subject_code)
            )""",
            # Versions written before this table existed are not itemised: resuming from one drops
            # everything cached.
            "INSERT INTO subject_changes (data_version, subject_code) "
            "SELECT value, '*' FROM meta WHERE key = 'data_version' AND value > 0",
        ),
    ),
    Migration(
        6,
        "the latest signed checkpoint of each gateway's audit chain, so auditors know every chain",
        (
            """CREATE TABLE audit_heads (
                replica TEXT PRIMARY KEY,
                seq BIGINT NOT NULL,
                record_hash TEXT NOT NULL,
                key_id TEXT NOT NULL,
                signature TEXT NOT NULL,
                signed_at TEXT NOT NULL,
                published_at TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        7,
        "since when the list data is complete, so that the green channel is granted only on evidence (R6)",
        (completeness.CREATE_TABLE,),
    ),
    Migration(
        8,
        "each gateway's latest signed tree head of its audit log (a Merkle tree), kept only when extended",
        ("ALTER TABLE audit_heads ADD COLUMN tree_head TEXT NOT NULL DEFAULT ''",),
    ),
    Migration(
        9,
        "every policy set a gateway has served, by digest, so that a replay answers with the one in force",
        (policy_sets.CREATE_TABLE,),
    ),
    Migration(
        10,
        "feedback names the audit log of the check it rests on: a record is (log id, seq) in a deployment",
        ("ALTER TABLE feedback ADD COLUMN check_log TEXT NOT NULL DEFAULT ''",),
    ),
    Migration(
        11,
        "person lookups by caller and day (China Standard Time): a daily quota is counted where every "
        "gateway of a deployment counts (used on PostgreSQL; an embedded store's gateway counts in memory)",
        (
            """CREATE TABLE person_lookups (
                caller_id TEXT NOT NULL,
                day TEXT NOT NULL,
                used BIGINT NOT NULL,
                PRIMARY KEY (caller_id, day)
            )""",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


class Executes(Protocol):
    """A DB-API connection inside a transaction (SQLite's and PostgreSQL's both fit)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...


def apply_migrations(connection: Executes, migrations: Sequence[Migration], *, placeholder: str = "?") -> int:
    """Apply the migrations not yet recorded, in order, within the caller's transaction; return the
    schema version."""
    connection.execute(BOOKKEEPING)
    applied = {row[0] for row in connection.execute("SELECT version FROM schema_migrations").fetchall()}
    marks = ", ".join([placeholder] * 3)
    for migration in migrations:
        if migration.version in applied:
            continue
        for statement in migration.statements:
            connection.execute(statement)
        connection.execute(
            f"INSERT INTO schema_migrations (version, name, applied_at) VALUES ({marks})",
            (migration.version, migration.name, dt.datetime.now(dt.UTC).isoformat()),
        )
    return max(applied | {m.version for m in migrations})
