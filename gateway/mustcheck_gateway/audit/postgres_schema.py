"""The audit log on PostgreSQL: one set of tables holds the log of every gateway replica.

Every row names its log (``log_id``, the replica id). Records are range-partitioned by month on their
time (``at_time``, UTC months), so that retention (R14) drops whole partitions; a month's partition is
made when its first record comes (:func:`ensure_partitions`). Tree nodes, tree heads, checkpoints and
prune anchors sit in plain tables beside them, written in the same transaction as the records they
cover.

A connection *bound* to one log (:func:`bind_log`) sees that log under the embedded backend's table
names (``audit_records``, ``audit_tree_nodes``, …) as temporary views, so the code that reads, proves
and verifies an embedded log reads a PostgreSQL log unchanged (:class:`LogConnection` takes its ``?``
placeholders).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from .record import RECORD_COLUMNS

Connection = psycopg.Connection[tuple[Any, ...]]

# pg_advisory_xact_lock key ("mcaudmig"): held by the transaction that migrates the audit tables.
MIGRATION_LOCK = int.from_bytes(b"mcaudmig", "big") >> 1
# ... and ("mcaudprt") by the transaction that adds a month's partition.
PARTITION_LOCK = int.from_bytes(b"mcaudprt", "big") >> 1

_TEXT = 'TEXT COLLATE "C"'
_RECORD_TYPES = {
    "seq": "BIGINT NOT NULL",
    "data_version": "BIGINT NOT NULL",
    "latency_us": "BIGINT NOT NULL",
    "subject_hash": _TEXT,
    "hmac_key_id": _TEXT,
    "subject_enc": _TEXT,
    "enc_key_id": _TEXT,
}
_RECORD_DEFINITION = ",\n".join(
    f"{name} {_RECORD_TYPES.get(name, _TEXT + ' NOT NULL')}" for name in RECORD_COLUMNS
)

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            f"""CREATE TABLE audit_logs (
                log_id {_TEXT} PRIMARY KEY,
                created_at {_TEXT} NOT NULL
            )""",
            f"""CREATE TABLE audit_log_records (
                log_id {_TEXT} NOT NULL,
                at_time TIMESTAMPTZ NOT NULL,
                {_RECORD_DEFINITION},
                PRIMARY KEY (log_id, seq, at_time)
            ) PARTITION BY RANGE (at_time)""",
            "CREATE INDEX audit_log_records_at ON audit_log_records (at)",
            "CREATE INDEX audit_log_records_subject ON audit_log_records (subject_hash)",
            f"""CREATE TABLE audit_log_checkpoints (
                log_id {_TEXT} NOT NULL,
                kind {_TEXT} NOT NULL,
                seq BIGINT NOT NULL,
                record_hash {_TEXT} NOT NULL,
                at {_TEXT} NOT NULL,
                key_id {_TEXT} NOT NULL,
                signature {_TEXT} NOT NULL,
                PRIMARY KEY (log_id, kind, seq)
            )""",
            f"""CREATE TABLE audit_log_prune_anchors (
                log_id {_TEXT} NOT NULL,
                seq BIGINT NOT NULL,
                record_hash {_TEXT} NOT NULL,
                cut_off {_TEXT} NOT NULL,
                pruned_at {_TEXT} NOT NULL,
                records_deleted BIGINT NOT NULL,
                PRIMARY KEY (log_id, seq)
            )""",
            f"""CREATE TABLE audit_log_tree_nodes (
                log_id {_TEXT} NOT NULL,
                level INTEGER NOT NULL,
                idx BIGINT NOT NULL,
                hash BYTEA NOT NULL,
                PRIMARY KEY (log_id, level, idx)
            )""",
            f"""CREATE TABLE audit_log_tree_heads (
                log_id {_TEXT} NOT NULL,
                size BIGINT NOT NULL,
                at {_TEXT} NOT NULL,
                head {_TEXT} NOT NULL,
                PRIMARY KEY (log_id, size, at)
            )""",
        ),
    ),
)

# The embedded backend's table name → the shared table it is a view of, for a bound connection.
VIEWS = {
    "audit_records": ("audit_log_records", RECORD_COLUMNS),
    "audit_checkpoints": (
        "audit_log_checkpoints",
        ("kind", "seq", "record_hash", "at", "key_id", "signature"),
    ),
    "audit_prune_anchors": (
        "audit_log_prune_anchors",
        ("seq", "record_hash", "cut_off", "pruned_at", "records_deleted"),
    ),
    "audit_tree_nodes": ("audit_log_tree_nodes", ("level", "idx", "hash")),
    "audit_tree_heads": ("audit_log_tree_heads", ("size", "at", "head")),
}
LOG_SETTING = "mustcheck.audit_log"


def migrate(connection: Connection) -> None:
    """Create or update the audit tables (idempotent; replicas starting together take turns)."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        connection.execute(
            "CREATE TABLE IF NOT EXISTS audit_log_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)"
        )
        applied = {int(row[0]) for row in connection.execute("SELECT version FROM audit_log_migrations")}
        for version, statements in MIGRATIONS:
            if version in applied:
                continue
            for statement in statements:
                connection.execute(statement)
            connection.execute(
                "INSERT INTO audit_log_migrations (version, applied_at) VALUES (%s, %s)",
                (version, dt.datetime.now(dt.UTC).isoformat()),
            )


def month_of(instant: dt.datetime) -> dt.date:
    utc = instant.astimezone(dt.UTC)
    return dt.date(utc.year, utc.month, 1)


def _next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


def partition_name(month: dt.date) -> str:
    return f"audit_log_records_y{month.year:04d}m{month.month:02d}"


def ensure_partitions(connection: Connection, months: Iterable[dt.date]) -> None:
    """Make the partition of each month that has none yet (one short transaction of its own)."""
    wanted = sorted(set(months))
    if not wanted:
        return
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        for month in wanted:
            following = _next_month(month)
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {partition_name(month)} PARTITION OF audit_log_records "
                f"FOR VALUES FROM ('{month.isoformat()} 00:00:00+00') "
                f"TO ('{following.isoformat()} 00:00:00+00')"
            )


def partitions(connection: Connection) -> list[tuple[str, dt.date]]:
    """The record partitions (name, month), oldest first."""
    rows = connection.execute(
        "SELECT child.relname FROM pg_inherits "
        "JOIN pg_class parent ON parent.oid = pg_inherits.inhparent "
        "JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
        "WHERE parent.oid = 'audit_log_records'::regclass"
    ).fetchall()
    found = []
    for (name,) in rows:
        text = str(name)
        try:
            found.append((text, dt.date(int(text[-7:-3]), int(text[-2:]), 1)))
        except ValueError:
            continue
    return sorted(found, key=lambda item: item[1])


def month_end(month: dt.date) -> dt.datetime:
    """The first instant after ``month`` (UTC)."""
    following = _next_month(month)
    return dt.datetime(following.year, following.month, 1, tzinfo=dt.UTC)


def bind_log(connection: Connection, log_id: str) -> None:
    """Make ``connection`` see ``log_id``'s log under the embedded backend's table names."""
    connection.execute("SELECT set_config(%s, %s, false)", (LOG_SETTING, log_id))
    for view, (table, columns) in VIEWS.items():
        connection.execute(
            f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {', '.join(columns)} FROM {table} "
            f"WHERE log_id = current_setting('{LOG_SETTING}')"
        )


class LogConnection:
    """A PostgreSQL connection that takes the embedded backend's ``?`` placeholders (reads only)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def execute(self, statement: str, parameters: Sequence[Any] = ()) -> Any:
        return self.connection.execute(statement.replace("?", "%s"), tuple(parameters))

    def close(self) -> None:
        self.connection.close()


def record_values(log_id: str, row: Sequence[Any]) -> tuple[Any, ...]:
    """The values of ``audit_log_records`` for a record row in :data:`RECORD_COLUMNS` order."""
    return (log_id, dt.datetime.fromisoformat(str(row[1])), *row)


RECORD_INSERT = (
    f"INSERT INTO audit_log_records (log_id, at_time, {', '.join(RECORD_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * (len(RECORD_COLUMNS) + 2))})"
)
