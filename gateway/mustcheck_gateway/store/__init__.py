"""The store: list entries behind one interface (SQLite embedded by default, PostgreSQL to share)."""

from __future__ import annotations

from pathlib import Path

from .base import (
    AuditHead,
    EntryNotFound,
    EntryStatus,
    HistoryRecord,
    ImportOutcome,
    ListEntry,
    ListStore,
    Lookup,
    PersonRole,
    ResponsiblePerson,
    StoreError,
)
from .codec import entry_key
from .sqlite import SqliteStore
from .urls import is_postgres_url, redacted

DEFAULT_FILE_NAME = "mustcheck.sqlite3"
POSTGRES_EXTRA = "postgresql"

__all__ = [
    "DEFAULT_FILE_NAME",
    "AuditHead",
    "EntryNotFound",
    "EntryStatus",
    "HistoryRecord",
    "ImportOutcome",
    "ListEntry",
    "ListStore",
    "Lookup",
    "PersonRole",
    "ResponsiblePerson",
    "SqliteStore",
    "StoreError",
    "entry_key",
    "is_postgres_url",
    "open_store",
    "redacted",
]


def open_store(data_dir: Path, *, url: str | None = None, file_name: str = DEFAULT_FILE_NAME) -> ListStore:
    """Open (creating and migrating on first use) the store: the PostgreSQL database at ``url``, or
    without one the embedded store in ``data_dir``."""
    if url is None:
        return SqliteStore(data_dir / file_name)
    if not is_postgres_url(url):
        raise StoreError(f"unknown store {redacted(url)!r}: give a postgresql:// URL")
    try:
        from .postgres import PostgresStore  # psycopg is an optional dependency
    except ImportError as error:
        raise StoreError(
            f"the PostgreSQL store needs psycopg ({error}): install mustcheck[{POSTGRES_EXTRA}]"
        ) from None
    return PostgresStore(url)
