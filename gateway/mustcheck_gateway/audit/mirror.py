"""The checkpoint mirror: ``checkpoints.jsonl`` next to the database, append-only, one JSON line each.

It is an external witness: whoever deletes records and the checkpoint rows that cover them from the
database still leaves the signed checkpoints here. Lines are only ever appended (and fsynced after
each write); a checkpoint is appended after the database transaction holding it has committed.
A write that fails (a full disk) is cut off again, and a last line left unfinished by a crash is cut
off when the mirror is next opened: a checkpoint whose line is unfinished is still in the database,
and the next open copies it here (``AuditLog._restore_mirror``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import Checkpoint

MIRROR_FILE_NAME = "checkpoints.jsonl"


@dataclass(frozen=True, slots=True)
class MirrorLine:
    number: int  # 1-based line number in the file
    checkpoint: Checkpoint | None  # None: the line is not a readable checkpoint
    text: str


def mirror_path_for(db_path: Path) -> Path:
    return db_path.parent / MIRROR_FILE_NAME


def read_mirror(path: Path) -> list[MirrorLine]:
    """Every non-empty line of the mirror file, parsed where possible."""
    lines: list[MirrorLine] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                checkpoint: Checkpoint | None = Checkpoint.from_json(text)
            except (ValueError, KeyError, TypeError):
                checkpoint = None
            lines.append(MirrorLine(number, checkpoint, text.rstrip("\n")))
    return lines


class CheckpointMirror:
    """Appends checkpoints to the mirror file, one writer at a time, durably."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        # Created with the log, so "no mirror file" always means someone removed it.
        path.touch(mode=0o644, exist_ok=True)
        self._cut_unfinished_line()

    def _cut_unfinished_line(self) -> None:
        with self.path.open("r+b") as file:
            data = file.read()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                file.truncate(end)
                os.fsync(file.fileno())

    def append(self, checkpoints: Iterable[Checkpoint]) -> None:
        text = "".join(checkpoint.to_json() + "\n" for checkpoint in checkpoints)
        if not text:
            return
        with self._lock:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            size = os.fstat(descriptor).st_size
            try:
                data = memoryview(text.encode())
                while data:
                    data = data[os.write(descriptor, data) :]
                os.fsync(descriptor)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(descriptor, size)  # no unfinished line is left behind
                raise
            finally:
                os.close(descriptor)

    def identities(self) -> set[tuple[str, int]]:
        if not self.path.exists():
            return set()
        return {line.checkpoint.identity for line in read_mirror(self.path) if line.checkpoint is not None}
