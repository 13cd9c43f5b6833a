"""The store's migrations on PostgreSQL: the same versions as SQLite's, in PostgreSQL's dialect.

There is one list of migrations (:data:`~mustcheck_gateway.store.migrations.MIGRATIONS`). PostgreSQL
runs each statement with one change: every ``TEXT`` column is ``COLLATE "C"``, so text sorts and
compares byte by byte as in SQLite (entry ids page in the same order; the fixed-width UTC instants
compare as times whatever the database's locale). Values stay as SQLite keeps them (text instants,
JSON text), so one codec serves both backends and a store copies across as it is.

Replicas may start together: the migrating transaction holds an advisory lock, so one applies the
pending migrations and the others then find them applied.
"""

from __future__ import annotations

import re

import psycopg

from .migrations import MIGRATIONS, Migration, apply_migrations

# pg_advisory_xact_lock key ("mustmigr" as 8 bytes): held by the transaction that migrates.
MIGRATION_LOCK = int.from_bytes(b"mustmigr", "big") >> 1
_TEXT = re.compile(r"\bTEXT\b")


def postgres_statement(statement: str) -> str:
    """One migration statement in PostgreSQL's dialect."""
    return _TEXT.sub('TEXT COLLATE "C"', statement)


POSTGRES_MIGRATIONS: tuple[Migration, ...] = tuple(
    Migration(migration.version, migration.name, tuple(map(postgres_statement, migration.statements)))
    for migration in MIGRATIONS
)


def migrate(connection: psycopg.Connection[tuple[object, ...]]) -> int:
    """Apply the pending migrations in one transaction on ``connection``; return the schema version."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        return apply_migrations(connection, POSTGRES_MIGRATIONS, placeholder="%s")
