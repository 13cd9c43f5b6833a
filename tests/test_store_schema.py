"""The PostgreSQL schema is SQLite's, version for version, and replicas may migrate it together."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from mustcheck_gateway.store import DEFAULT_FILE_NAME, SqliteStore
from mustcheck_gateway.store.migrations import LATEST_VERSION, MIGRATIONS
from mustcheck_gateway.store.postgres import PostgresStore
from mustcheck_gateway.store.postgres_migrations import POSTGRES_MIGRATIONS

from backends import fresh_schema
from threads import together


def test_postgresql_applies_the_same_migrations() -> None:
    assert [(m.version, m.name) for m in POSTGRES_MIGRATIONS] == [(m.version, m.name) for m in MIGRATIONS]
    assert all('TEXT COLLATE "C"' in s for m in POSTGRES_MIGRATIONS for s in m.statements if "TEXT" in s)


def _sqlite_columns(path: Path) -> dict[str, list[tuple[str, bool]]]:
    with sqlite3.connect(path) as connection:
        # Every table the migrations made (not a list kept here, which a new migration would outgrow).
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master "
                "WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {
            table: [
                (name, bool(notnull or pk))
                for _, name, _, notnull, _, pk in connection.execute(f"PRAGMA table_info({table})")
            ]
            for table in tables
        }


def _postgres_columns(url: str) -> dict[str, list[tuple[str, bool]]]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT table_name, column_name, is_nullable = 'NO' FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        ).fetchall()
    columns: dict[str, list[tuple[str, bool]]] = {}
    for table, column, required in rows:
        columns.setdefault(table, []).append((column, required))
    return columns


def test_both_backends_have_the_same_tables_and_columns(tmp_path: Path) -> None:
    with fresh_schema() as url:
        PostgresStore(url).close()
        SqliteStore(tmp_path / DEFAULT_FILE_NAME).close()
        assert _postgres_columns(url) == _sqlite_columns(tmp_path / DEFAULT_FILE_NAME)


def test_gateways_starting_together_migrate_once() -> None:
    with fresh_schema() as url:
        versions: list[int] = []

        def start() -> None:
            store = PostgresStore(url)
            versions.append(store.schema_version())
            store.close()

        together(start, start, start)
        assert versions == [LATEST_VERSION] * 3
        with psycopg.connect(url) as connection:
            applied = connection.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        assert [version for (version,) in applied] == [m.version for m in MIGRATIONS]
