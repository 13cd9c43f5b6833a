"""The store: list entries behind one interface (SQLite embedded by default)."""

from __future__ import annotations

from pathlib import Path

from .base import (
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

DEFAULT_FILE_NAME = "mustcheck.sqlite3"

__all__ = [
    "DEFAULT_FILE_NAME",
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
    "open_store",
]


def open_store(data_dir: Path, *, file_name: str = DEFAULT_FILE_NAME) -> SqliteStore:
    """Open (creating and migrating on first use) the embedded store in ``data_dir``."""
    return SqliteStore(data_dir / file_name)
