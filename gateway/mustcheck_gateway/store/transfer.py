"""Copy a whole SQLite store into an empty PostgreSQL database, then prove the copy complete.

Every table is copied as it is (both backends keep values alike: text instants, JSON text), with
``COPY`` for speed, in ONE transaction that also sets the data and auth versions: a copy that fails
or does not add up leaves the target as empty as it was. The counts of every table and both versions
are compared inside that transaction, before it commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from .base import StoreError
from .postgres import PostgresStore
from .sqlite import SqliteStore
from .urls import redacted

# Every table a store holds, parents before children (``meta`` and ``schema_migrations`` are made by
# the migrations on both sides; the versions in ``meta`` are set after the rows).
TABLES = (
    "entries",
    "entry_persons",
    "entry_history",
    "subject_changes",
    "audit_heads",
    "legacy_codes",
    "data_completeness",
    "policy_sets",
    "callers",
    "grants",
    "tokens",
    "feedback",
)
VERSIONS = ("data_version", "auth_version")


class TransferError(StoreError):
    """The copy was refused or did not add up; the target is unchanged."""


@dataclass
class TransferReport:
    rows: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)


def copy_sqlite_to_postgres(
    source: Path, target_url: str, *, progress: Callable[[str, int], None] | None = None
) -> TransferReport:
    """Copy the store in the SQLite file ``source`` into the empty database at ``target_url``."""
    if not source.is_file():
        raise TransferError(f"no SQLite store at {source}")
    SqliteStore(source).close()  # the source at the latest schema, as the target will be
    PostgresStore(target_url).close()  # the target's tables, made by the same migrations
    report = TransferReport()
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        with psycopg.connect(target_url) as target, target.transaction():
            target.execute("SELECT value FROM meta WHERE key = 'data_version' FOR UPDATE")
            _refuse_unless_empty(target, target_url)
            for table in TABLES:
                report.rows[table] = _copy_table(reader, target, table)
                if progress is not None:
                    progress(table, report.rows[table])
            for key in VERSIONS:
                (value,) = reader.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
                target.execute("UPDATE meta SET value = %s WHERE key = %s", (int(value), key))
                report.versions[key] = int(value)
            _verify(target, report)
    except psycopg.Error as error:
        raise TransferError(f"copying into {redacted(target_url)} failed, nothing kept: {error}") from None
    finally:
        reader.close()
    return report


def _refuse_unless_empty(target: psycopg.Connection[tuple[object, ...]], url: str) -> None:
    filled = [
        table
        for table in TABLES
        if _scalar(target, sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(table)))
    ]
    versions = [
        key
        for key in VERSIONS
        if _scalar(target, sql.SQL("SELECT value FROM meta WHERE key = {}").format(sql.Literal(key)))
    ]
    if filled or versions:
        raise TransferError(
            f"the target {redacted(url)} is not empty ({', '.join(filled + versions)}): "
            "migrate into a new database"
        )


def _copy_table(
    reader: sqlite3.Connection, target: psycopg.Connection[tuple[object, ...]], table: str
) -> int:
    columns = [row[1] for row in reader.execute(f"PRAGMA table_info({table})")]
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    copied = 0
    with target.cursor().copy(
        sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), names)
    ) as copy:
        for row in reader.execute(f"SELECT {', '.join(columns)} FROM {table}"):
            copy.write_row(row)
            copied += 1
    return copied


def _verify(target: psycopg.Connection[tuple[object, ...]], report: TransferReport) -> None:
    problems = []
    for table, expected in report.rows.items():
        found = _scalar(target, sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(table)))
        if found != expected:
            problems.append(f"{table}: {found} rows, source has {expected}")
    for key, expected in report.versions.items():
        found = _scalar(target, sql.SQL("SELECT value FROM meta WHERE key = {}").format(sql.Literal(key)))
        if found != expected:
            problems.append(f"{key}: {found}, source has {expected}")
    if problems:
        raise TransferError("the copy does not add up, nothing kept: " + "; ".join(problems))


def _scalar(connection: psycopg.Connection[tuple[object, ...]], query: sql.Composed) -> int:
    row = connection.execute(query).fetchone()
    return int(str(row[0])) if row and row[0] is not None else 0
