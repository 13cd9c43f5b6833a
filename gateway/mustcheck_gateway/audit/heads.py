"""No rewind: the log must still contain every head it has signed or published.

A *head* is a signed statement "the log reached record ``seq``, whose hash is ``record_hash``": a
chain or prune checkpoint in the database or in ``checkpoints.jsonl``, or the head a gateway
published to the shared store. Records after the newest head are the unsigned tail (a crash may
cut that short: :mod:`.journal`); records a head covers may never go missing. When its writer starts,
the log is checked against the newest head of each source; a log that is shorter than one, or holds
a different record at its seq, is refused with an :class:`~.errors.AuditIntegrityError` naming what
is missing: nothing is repaired and no seq is handed out twice.

:func:`extension_problem` is the one place that decides whether a log extends a head (for the hash
chain: the head's record is present with the signed hash, or a signed prune removed it). A log whose
heads carry consistency proofs swaps only this function.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mustcheck.suites import PublicKey

from .checkpoint import Checkpoint, signature_problem
from .errors import AuditIntegrityError
from .mirror import MIRROR_FILE_NAME, read_mirror


@dataclass(frozen=True, slots=True)
class Head:
    """A signed head and where it was found (for the alarm's message)."""

    checkpoint: Checkpoint
    source: str

    @property
    def seq(self) -> int:
        return self.checkpoint.seq

    def describe(self) -> str:
        signed = self.checkpoint.at.astimezone(dt.UTC)
        return f"the newest head in {self.source} (record {self.seq}, signed {signed:%Y-%m-%d %H:%M:%S} UTC)"


@dataclass(frozen=True, slots=True)
class LogView:
    """What the check needs of a log: its last seq, the hash of a record by seq, its prune point."""

    last_seq: int
    record_hash: Callable[[int], str | None]
    pruned_through: int = 0


def _missing(first: int, last: int) -> str:
    return f"record {first} is missing" if first == last else f"records {first}–{last} are missing"


def extension_problem(log: LogView, head: Head) -> str | None:
    """Why ``log`` does not extend ``head`` (None: it does)."""
    if head.seq <= log.pruned_through:
        return None  # a signed prune removed that record legitimately
    if head.seq > log.last_seq:
        return (
            f"the log ends at record {log.last_seq} but {head.describe()} covers more: "
            f"{_missing(log.last_seq + 1, head.seq)} (the log was rewound)"
        )
    found = log.record_hash(head.seq)
    if found is None:
        return f"{head.describe()} names a record that is not in the log: {_missing(head.seq, head.seq)}"
    if found != head.checkpoint.record_hash:
        return f"record {head.seq} is not the one {head.describe()} signed (the log was rewritten)"
    return None


def newest(checkpoints: Iterable[Checkpoint], source: str) -> Head | None:
    found = max(checkpoints, key=lambda checkpoint: checkpoint.seq, default=None)
    return None if found is None else Head(found, source)


def mirror_head(path: Path) -> Head | None:
    """The newest checkpoint in the mirror file (unreadable lines are verification's business)."""
    if not path.exists():
        return None
    return newest((line.checkpoint for line in read_mirror(path) if line.checkpoint), MIRROR_FILE_NAME)


def check_no_rewind(log: LogView, heads: Iterable[Head | None], public_keys: Mapping[str, PublicKey]) -> None:
    """Raise :class:`AuditIntegrityError` (a tamper alarm) unless ``log`` extends every head."""
    for head in heads:
        if head is None:
            continue
        forged = signature_problem(head.checkpoint, public_keys)
        if forged is not None:
            raise AuditIntegrityError(
                f"audit log tamper alarm: {head.source} holds a head that is not genuine: {forged}"
            )
        problem = extension_problem(log, head)
        if problem is not None:
            raise AuditIntegrityError(
                f"audit log tamper alarm: {problem}. Refusing to continue the log (nothing was repaired, no "
                "seq is reused); restore the data directory or investigate"
            )
