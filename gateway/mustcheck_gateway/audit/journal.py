"""The write-ahead journal: what makes a record durable before the gateway answers.

Each group of records is appended to ``audit.journal`` (one JSON line per record or checkpoint)
and ``fdatasync``-ed: one write and one sync per group, whatever its size. The SQLite database is
the index that queries and verification read; the writer copies journal records into it in larger
transactions, and empties the journal once everything in it is committed there. On open, whatever
the journal holds beyond the database's last record is copied in first (a crash in between).

A line cut short by a crash during its write was never acknowledged (the sync did not return), so
a torn last line is dropped; any other unreadable line is an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import Checkpoint
from .errors import AuditIntegrityError

JOURNAL_SUFFIX = ".journal"


def journal_path_for(db_path: Path) -> Path:
    return db_path.with_suffix(JOURNAL_SUFFIX)


@dataclass(frozen=True, slots=True)
class JournalContents:
    rows: list[tuple[Any, ...]]
    checkpoints: list[tuple[Any, ...]]


def read_journal(path: Path) -> JournalContents:
    """The rows and checkpoint rows in the journal (empty if there is none)."""
    rows: list[tuple[Any, ...]] = []
    checkpoints: list[tuple[Any, ...]] = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return JournalContents(rows, checkpoints)
    lines = data.split(b"\n")
    complete = lines[:-1]  # the last piece is empty after a final newline, or a torn line
    for number, line in enumerate(complete, start=1):
        try:
            entry = json.loads(line)
            if "r" in entry:
                rows.append(tuple(entry["r"]))
            else:
                checkpoints.append(tuple(entry["c"]))
        except (ValueError, KeyError, TypeError) as error:
            raise AuditIntegrityError(f"{path.name} line {number} cannot be read ({error})") from None
    return JournalContents(rows, checkpoints)


class Journal:
    """Append-and-sync file of the writer thread (not thread-safe: the writer is its only user)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = os.fstat(self._descriptor).st_size

    def append(self, rows: Sequence[tuple[Any, ...]], checkpoints: Sequence[Checkpoint]) -> None:
        """Write the rows and checkpoints and return once they are on disk."""
        lines = [json.dumps({"r": list(row)}, ensure_ascii=False, separators=(",", ":")) for row in rows]
        lines += [
            json.dumps({"c": list(checkpoint.to_row())}, ensure_ascii=False, separators=(",", ":"))
            for checkpoint in checkpoints
        ]
        payload = ("\n".join(lines) + "\n").encode()
        written = 0
        while written < len(payload):
            written += os.write(self._descriptor, payload[written:])
        os.fdatasync(self._descriptor)
        self.size += len(payload)

    def clear(self) -> None:
        """Empty the journal (everything in it is committed to the database)."""
        os.ftruncate(self._descriptor, 0)
        os.fdatasync(self._descriptor)
        self.size = 0

    def close(self) -> None:
        if self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1
