"""Where a test's store lives: the embedded SQLite file, or a fresh PostgreSQL schema of its own.

PostgreSQL tests read the server's address from ``MUSTCHECK_TEST_POSTGRES`` (a ``postgresql://`` URL)
and are skipped, saying why, when it is unset (``.ci/run`` always sets it). Each test gets a schema
of its own, made for it and dropped after it; the store's connections reach it by ``search_path``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from mustcheck_gateway.store import DEFAULT_FILE_NAME, SqliteStore, is_postgres_url
from mustcheck_gateway.store.postgres import PostgresStore

POSTGRES_ENV = "MUSTCHECK_TEST_POSTGRES"
BACKENDS = ("sqlite", "postgresql")


def postgres_url() -> str:
    """The test server's URL, or skip the test with the reason."""
    url = os.environ.get(POSTGRES_ENV, "").strip()
    if not url:
        pytest.skip(
            f"{POSTGRES_ENV} is not set: give it a PostgreSQL URL "
            "(e.g. postgresql://postgres@127.0.0.1:5432/test) to run the PostgreSQL store tests"
        )
    if not is_postgres_url(url):
        raise ValueError(f"{POSTGRES_ENV} must be a postgresql:// URL, not {url!r}")
    return url


def in_schema(url: str, schema: str) -> str:
    """``url`` with ``schema`` first on the connections' search path."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"{query.get('options', '')} -csearch_path={schema}".strip()
    return urlunsplit(parts._replace(query=urlencode(query)))


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A new, empty schema on the test server, dropped afterwards: yields a URL that uses it."""
    url = postgres_url()
    schema = f"mustcheck_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield in_schema(url, schema)
    finally:
        drop_schema(url, schema)


def drop_schema(url: str, schema: str, *, tries: int = 20) -> None:
    """Drop ``schema`` and all in it. A connection that is closing may still be dropping its temporary
    views of the schema's tables (the audit log's ``bind_log``): a CASCADE then waits on, or deadlocks
    with, it. So each try waits a bounded time for its locks and a failed one is tried again."""
    statement = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
    for attempt in range(tries):
        try:
            with psycopg.connect(url, autocommit=True) as connection:
                connection.execute("SET lock_timeout = '2s'")
                connection.execute(statement)
            return
        except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
            if attempt == tries - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


@dataclass(frozen=True)
class StoreAt:
    """One test's store location; ``open()`` opens (another handle on) the same store."""

    backend: str
    data_dir: Path
    url: str | None = None

    def open(self) -> SqliteStore | PostgresStore:
        if self.url is not None:
            return PostgresStore(self.url)
        return SqliteStore(self.data_dir / DEFAULT_FILE_NAME)


@contextmanager
def store_at(backend: str, data_dir: Path) -> Iterator[StoreAt]:
    if backend == "sqlite":
        yield StoreAt(backend, data_dir)
        return
    with fresh_schema() as url:
        yield StoreAt(backend, data_dir, url)
