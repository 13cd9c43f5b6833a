"""Online backup of a data directory: a copy, taken while the gateway runs, that restores to a working
gateway whose audit log verifies.

Copying a running gateway's files one after another does not give such a copy: a SQLite file can be
caught mid-transaction; the journal is written and emptied in place while it is read; a head copied
after the records could cover records the copy lacks (and the restored gateway would rightly refuse
to start, seeing a rewind). So the copy is made in the order that keeps every invariant the gateway
checks at start (docs/audit-log.md):

1. everything but the audit log's journal and index: the embedded store through SQLite's online
   backup API (a consistent snapshot, holding the head the gateway last published), the keys, the
   checkpoint mirror, the replica id, tokens. Every head copied here covers only records that were
   already durable, so the journal or the index copied next holds them;
2. the audit journal, as the run of whole, checksummed frames at its start
   (:func:`~.audit.journal.intact_prefix`): a frame cut by the copy or by the writer emptying the
   journal is dropped — its records are either already in the index or younger than the backup;
3. the audit index last, through SQLite's online backup API: it holds every record the journal had
   before it was emptied, so journal and index together leave no gap.

On restore the gateway copies the journal's records beyond the index into it, as after a crash.
Lock files and SQLite's ``-wal``/``-shm`` companions are left out. The copy gets the data directory's
modes: the folder 0700, every file 0600.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from .audit import DEFAULT_FILE_NAME as AUDIT_FILE_NAME
from .audit.journal import intact_prefix, journal_path_for

SQLITE_SUFFIX = ".sqlite3"
# Live state of the running gateway, never part of a copy.
SKIPPED_SUFFIXES = ("-wal", "-shm", "-journal", ".lock", ".writer-lock", ".partial")


@dataclass
class BackupReport:
    databases: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    journal_bytes: int = 0
    bytes: int = 0


class BackupError(Exception):
    """The backup cannot be made (the message says why)."""


def backup_data_dir(source: Path, target: Path) -> BackupReport:
    """Copy the data directory ``source`` into ``target`` (new or empty), online."""
    if not (source / AUDIT_FILE_NAME).is_file():
        raise BackupError(f"{source} holds no audit log ({AUDIT_FILE_NAME}): not a data directory")
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty: a backup goes into a new folder")
    if target.resolve().is_relative_to(source.resolve()):
        raise BackupError(f"{target} is inside the data directory {source}")
    _private_dir(target)
    report = BackupReport()
    index = source / AUDIT_FILE_NAME
    journal = journal_path_for(index)
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.name.endswith(SKIPPED_SUFFIXES) or path in (index, journal):
            continue
        copy = target / path.relative_to(source)
        _private_dir(copy.parent)
        if path.suffix == SQLITE_SUFFIX:
            _copy_database(path, copy)
            report.databases.append(path.name)
        else:
            _write_private(copy, path.read_bytes())
            report.files.append(str(path.relative_to(source)))
    if journal.is_file():
        frames = intact_prefix(journal.read_bytes())
        _write_private(target / journal.name, frames)
        report.journal_bytes = len(frames)
    _copy_database(index, target / index.name)
    report.databases.append(index.name)
    report.bytes = sum(path.stat().st_size for path in target.rglob("*") if path.is_file())
    return report


def _private_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.chmod(path, 0o600)


def _copy_database(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent snapshot, whatever the writer is doing."""
    reader = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        writer = sqlite3.connect(target)
        try:
            reader.backup(writer)
            writer.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, nothing beside it
        finally:
            writer.close()
    finally:
        reader.close()
    os.chmod(target, 0o600)
