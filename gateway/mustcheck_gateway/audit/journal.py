"""The write-ahead journal: what makes a record durable before the gateway answers.

Each group of records is appended to ``audit.journal`` (one JSON line per record or checkpoint)
and ``fdatasync``-ed: one write and one sync per group, whatever its size. The SQLite database is
the index that queries and verification read; the writer copies journal records into it in larger
transactions, and empties the journal once everything in it is committed there. On open, whatever
the journal holds beyond the database's last record is copied in first (a crash in between).

A line cut short by a crash during its write was never acknowledged (the sync did not return), so
a torn last line is dropped; any other unreadable line is an error.

The file is preallocated with zeros (``GROW_BYTES`` at a time) and written in place, so that a sync
writes data only, not the file's size as well (on ext4 that halves the cost of the sync that each
group of records waits for). Beyond the last line the file holds only zeros: reading stops at the
first zero byte (JSON text never contains one), and emptying the journal zeroes what was written.
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
GROW_BYTES = 1 << 20


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
    end = data.find(b"\0")
    lines = (data if end < 0 else data[:end]).split(b"\n")
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
    """Append-and-sync file of the writer (not thread-safe: the writer is its only user).

    ``size`` is how much of it holds lines; ``capacity`` the preallocated length of the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.capacity = os.fstat(self._descriptor).st_size
        data = os.pread(self._descriptor, self.capacity, 0) if self.capacity else b""
        end = data.find(b"\0")
        self.size = len(data) if end < 0 else end
        if self.capacity - self.size < GROW_BYTES // 2:
            self._grow(GROW_BYTES)

    def _grow(self, needed: int) -> None:
        """Extend the file with zeros (written, not just allocated: a sync then has no metadata to write)."""
        added = max(needed, GROW_BYTES)
        os.pwrite(self._descriptor, bytes(added), self.capacity)
        os.fsync(self._descriptor)
        self.capacity += added

    def append(self, rows: Sequence[tuple[Any, ...]], checkpoints: Sequence[Checkpoint]) -> None:
        """Write the rows and checkpoints and return once they are on disk."""
        lines = [json.dumps({"r": list(row)}, ensure_ascii=False, separators=(",", ":")) for row in rows]
        lines += [
            json.dumps({"c": list(checkpoint.to_row())}, ensure_ascii=False, separators=(",", ":"))
            for checkpoint in checkpoints
        ]
        payload = ("\n".join(lines) + "\n").encode()
        if self.size + len(payload) > self.capacity:
            self._grow(self.size + len(payload) - self.capacity)
        self._write_at(self.size, payload)
        os.fdatasync(self._descriptor)
        self.size += len(payload)

    def _write_at(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self._descriptor, view, offset)
            view, offset = view[written:], offset + written

    def clear(self) -> None:
        """Empty the journal (everything in it is committed to the database): zero what was written."""
        if self.size:
            self._write_at(0, bytes(self.size))
            os.fdatasync(self._descriptor)
        self.size = 0

    def close(self) -> None:
        if self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1
