"""Offline verification of an audit log: the chain, the signed checkpoints and the mirror file.

Needs only the database file (opened read-only, so a copy will do), ``checkpoints.jsonl`` next to
it, and the directory of Ed25519 public keys: no secret key. Checks, in this order, and stops at
the first problem, which it names with a seq and a plain reason:

1. every checkpoint's signature (database rows, then mirror lines);
2. every prune anchor is backed by a signed prune checkpoint for the same record;
3. the chain, from the latest prune anchor (or genesis): no gap in the seqs, each record links to
   the previous record's hash, each record's hash matches its content;
4. every checkpoint in the database after the anchor names a record that exists with the signed hash;
5. the database's checkpoints and the mirror agree (rows deleted from the database are still in the
   mirror, so a truncated tail shows even without its checkpoint rows; lines deleted from the mirror
   are still in the database);
6. a log with records has at least one signed head (a checkpoint): without one nothing shows that
   records were not cut off or rewritten.

A torn journal tail (a write a crash or a full disk cut short: never acknowledged, see
:mod:`.journal`) is no tampering: the report stays ``ok`` and lists it under ``repairs``, as it lists
every record in which a gateway said it cut such a tail off. A journal frame that is complete but
altered is tampering.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..store.sqlite_connections import consistent_read
from .chain import ChainWalker
from .checkpoint import Checkpoint, CheckpointKind, signature_problem
from .errors import AuditIntegrityError, KeyRingError
from .journal import JournalContents, erased_records, journal_path_for, read_journal
from .keys import load_public_keys
from .mirror import MIRROR_FILE_NAME, MirrorLine, mirror_path_for, read_mirror
from .record import GENESIS_HASH, TAIL_CUT_OUTCOME, AuditRecord
from .sqlite_log import (
    PruneAnchor,
    connect_read_only,
    iter_rows,
    read_checkpoints,
    read_prune_anchors,
)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of a verification; on failure, the first problem found (seq may be None)."""

    ok: bool
    records_checked: int
    checkpoints_checked: int
    mirror_entries_checked: int
    first_seq: int | None = None
    last_seq: int | None = None
    problem_seq: int | None = None
    reason: str | None = None
    # Torn tails (unfinished writes, never acknowledged) found in the journal or cut off by a gateway.
    repairs: tuple[str, ...] = ()

    @property
    def tampered(self) -> bool:
        return not self.ok

    def __str__(self) -> str:
        counts = (
            f"{self.records_checked} records, {self.checkpoints_checked} checkpoints, "
            f"{self.mirror_entries_checked} mirror entries checked"
        )
        if not self.ok:
            return f"audit log TAMPERED: {self.reason} ({counts})"
        repaired = "".join(f"; repaired: {repair}" for repair in self.repairs)
        return f"audit log verifies ({counts}){repaired}"


class _Problem(Exception):
    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason


class _Verification:
    def __init__(
        self,
        public_keys: Mapping[str, Ed25519PublicKey],
        mirror: list[MirrorLine] | None,
        journal: JournalContents | None = None,
    ) -> None:
        self.public_keys = public_keys
        self.mirror = mirror
        self.journal = journal
        self.walker = ChainWalker()
        self.checkpoints_checked = 0
        self.mirror_checked = 0
        self.first_seq: int | None = None
        self.repairs: list[str] = []

    def run(self, connection: sqlite3.Connection) -> None:
        checkpoints = read_checkpoints(connection)
        anchors = read_prune_anchors(connection)
        self._signatures(checkpoints)
        self._anchors(anchors, checkpoints)
        anchor = anchors[-1] if anchors else None
        signed = self._signed_seqs(checkpoints, anchor)
        seen = self._walk(connection, anchor, signed)
        self._coverage(signed, seen)
        self._mirror_agrees(checkpoints)
        self._signed_at_all(checkpoints, anchor)

    # 1
    def _signatures(self, checkpoints: list[Checkpoint]) -> None:
        for checkpoint in checkpoints:
            problem = signature_problem(checkpoint, self.public_keys)
            if problem:
                raise _Problem(checkpoint.seq, problem)
            self.checkpoints_checked += 1
        for line in self.mirror or ():
            if line.checkpoint is None:
                raise _Problem(None, f"{MIRROR_FILE_NAME} line {line.number} is not a valid checkpoint")
            problem = signature_problem(line.checkpoint, self.public_keys)
            if problem:
                raise _Problem(line.checkpoint.seq, f"{MIRROR_FILE_NAME} line {line.number}: {problem}")
            self.mirror_checked += 1

    # 2
    @staticmethod
    def _anchors(anchors: list[PruneAnchor], checkpoints: list[Checkpoint]) -> None:
        prune_checkpoints = {c.seq: c.record_hash for c in checkpoints if c.kind is CheckpointKind.PRUNE}
        for anchor in anchors:
            if prune_checkpoints.get(anchor.seq) != anchor.record_hash:
                raise _Problem(
                    anchor.seq,
                    f"prune anchor at seq {anchor.seq} is not backed by a signed prune checkpoint "
                    f"(records up to it were deleted without a legitimate prune)",
                )

    # 3
    @staticmethod
    def _signed_seqs(checkpoints: list[Checkpoint], anchor: PruneAnchor | None) -> dict[int, str]:
        """seq → hash the database's checkpoints after the anchor expect (the mirror must equal them: 5)."""
        start = anchor.seq if anchor else 0
        return {
            checkpoint.seq: checkpoint.record_hash for checkpoint in checkpoints if checkpoint.seq > start
        }

    def _walk(
        self, connection: sqlite3.Connection, anchor: PruneAnchor | None, signed: Mapping[int, str]
    ) -> dict[int, str]:
        start_seq, start_hash = (anchor.seq, anchor.record_hash) if anchor else (0, GENESIS_HASH)
        if anchor is not None:
            stray = connection.execute(
                "SELECT MIN(seq) FROM audit_records WHERE seq <= ?", (anchor.seq,)
            ).fetchone()[0]
            if stray is not None:
                raise _Problem(
                    int(stray), f"record {stray} precedes the prune anchor at seq {anchor.seq} but is present"
                )
        self.walker = ChainWalker(after_seq=start_seq, after_hash=start_hash)
        seen: dict[int, str] = {}
        for row in itertools.chain(iter_rows(connection, after_seq=start_seq), self._journal_rows()):
            try:
                record = AuditRecord.from_row(row)
            except (ValueError, TypeError, KeyError) as error:
                raise _Problem(
                    _seq_of(row), f"record {row[0]}: stored fields cannot be read ({error}) (altered)"
                ) from error
            problem = self.walker.step(record)
            if problem:
                raise _Problem(record.seq, problem)
            if self.first_seq is None:
                self.first_seq = record.seq
            if record.seq in signed:
                seen[record.seq] = record.record_hash
            if record.kind == "admin" and record.outcome == TAIL_CUT_OUTCOME:
                self.repairs.append(f"record {record.seq} says a torn journal tail was cut off at start")
        return seen

    def _journal_rows(self) -> Iterator[tuple[Any, ...]]:
        """Records a running or crashed gateway had made durable but not yet indexed: they continue
        the chain after the database's last record."""
        for row in self.journal.rows if self.journal else ():
            if int(row[0]) > self.walker.last_seq:
                yield row
        if self.journal is not None:
            try:
                erased_records("the journal", self.journal, self.walker.last_seq)
            except AuditIntegrityError as error:
                raise _Problem(self.walker.last_seq + 1, str(error)) from None

    # 4
    def _coverage(self, signed: Mapping[int, str], seen: Mapping[int, str]) -> None:
        for seq in sorted(signed):
            if seq not in seen:
                raise _Problem(
                    seq, f"checkpoint at seq {seq} refers to a record that is missing: the log was truncated"
                )
            if seen[seq] != signed[seq]:
                raise _Problem(
                    seq,
                    f"checkpoint at seq {seq}: record {seq} does not have the signed hash (rewritten)",
                )

    # 6
    def _signed_at_all(self, checkpoints: list[Checkpoint], anchor: PruneAnchor | None) -> None:
        journal_checkpoints = self.journal.checkpoints if self.journal else []
        if self.walker.checked and not checkpoints and not journal_checkpoints and anchor is None:
            raise _Problem(
                None,
                f"{self.walker.checked} records but no signed checkpoint: nothing shows the log was not "
                "cut off or rewritten (checkpoints deleted?)",
            )

    # 5
    def _mirror_agrees(self, checkpoints: list[Checkpoint]) -> None:
        if self.mirror is None:
            if checkpoints:
                raise _Problem(
                    None, f"{MIRROR_FILE_NAME} is missing but the database has {len(checkpoints)} checkpoints"
                )
            return
        in_db = {checkpoint.identity: checkpoint for checkpoint in checkpoints}
        mirrored = {line.checkpoint.identity: line.checkpoint for line in self.mirror if line.checkpoint}
        for identity, checkpoint in sorted(mirrored.items(), key=lambda item: item[0][1]):
            stored = in_db.get(identity)
            if stored is None:
                raise _Problem(
                    checkpoint.seq,
                    f"checkpoint rows missing from the database but present in {MIRROR_FILE_NAME} "
                    f"(seq {checkpoint.seq}): records or checkpoints were deleted",
                )
            if stored != checkpoint:
                raise _Problem(
                    checkpoint.seq,
                    f"checkpoint at seq {checkpoint.seq} differs between the database and {MIRROR_FILE_NAME}",
                )
        # Checkpoints of one kind are mirrored in seq order, each after its commit: one missing below the
        # highest mirrored seq of its kind was removed from the file; above it, it may be in flight.
        highest = {kind: max((s for k, s in mirrored if k == kind), default=0) for kind in CheckpointKind}
        for identity, checkpoint in sorted(in_db.items(), key=lambda item: item[0][1]):
            if identity not in mirrored and checkpoint.seq < highest[checkpoint.kind]:
                raise _Problem(
                    checkpoint.seq,
                    f"checkpoint at seq {checkpoint.seq} is in the database but missing from "
                    f"{MIRROR_FILE_NAME} (the mirror file was edited)",
                )


def _seq_of(row: Sequence[object]) -> int | None:
    return row[0] if row and isinstance(row[0], int) else None


def verify_log(db_path: Path, public_keys_dir: Path, *, mirror_path: Path | None = None) -> VerifyReport:
    """Verify the audit log in ``db_path`` with only the public keys in ``public_keys_dir``."""
    mirror_file = mirror_path or mirror_path_for(db_path)
    try:
        public_keys = load_public_keys(public_keys_dir)
        # The mirror is read first: anything in it was committed to the database before it was appended.
        mirror = read_mirror(mirror_file) if mirror_file.exists() else None
    except (OSError, KeyRingError, ValueError) as error:
        return VerifyReport(False, 0, 0, 0, reason=f"cannot read the keys or the mirror file: {error}")
    try:
        journal = read_journal(journal_path_for(db_path))
    except AuditIntegrityError as error:
        return VerifyReport(False, 0, 0, 0, reason=str(error))
    verification = _Verification(public_keys, mirror, journal)
    if journal.torn is not None:
        verification.repairs.append(
            f"torn journal tail ({journal.torn.describe()}; never acknowledged, cut off at the next start)"
        )
    try:
        connection = connect_read_only(db_path)
    except (OSError, sqlite3.Error) as error:
        return VerifyReport(False, 0, 0, 0, reason=f"cannot open the audit database: {error}")
    problem: _Problem | None = None
    try:
        with consistent_read(connection):
            verification.run(connection)
    except _Problem as found:
        problem = found
    except sqlite3.Error as error:
        problem = _Problem(None, f"cannot read the audit database: {error}")
    except (ValueError, TypeError) as error:
        problem = _Problem(None, f"checkpoint or prune anchor rows cannot be read ({error}) (altered)")
    finally:
        connection.close()
    return VerifyReport(
        ok=problem is None,
        records_checked=verification.walker.checked,
        checkpoints_checked=verification.checkpoints_checked,
        mirror_entries_checked=verification.mirror_checked,
        first_seq=verification.first_seq,
        last_seq=verification.walker.last_seq if verification.walker.checked else None,
        problem_seq=problem.seq if problem else None,
        reason=problem.reason if problem else None,
        repairs=tuple(verification.repairs),
    )
