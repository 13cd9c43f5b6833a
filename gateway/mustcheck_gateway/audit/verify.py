"""Offline verification of an audit log: the chain, the signed checkpoints and the mirror file.

Needs only the database file (opened read-only, so a copy will do), ``checkpoints.jsonl`` next to
it, and the directory of public keys (Ed25519 or SM2: the keys say which suite the log is of, and so
which hash its tree uses): no secret key. Checks, in this order, and stops at
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
   records were not cut off or rewritten;
7. the Merkle tree (:mod:`.tree`), rebuilt from the records, against every tree head known: those in
   the database, and those the auditor hands in (from receipts, or published to the shared store). A
   head must be genuine, name this log, cover no more records than the log holds (else records were
   cut from the end after it was signed) and have the root of the log's first ``size`` records; the
   stored tree nodes (what proofs are made from) must give the same root.

Verification can be incremental (:class:`TreeState`): from the last head an auditor verified (its
size, the last record's hash and the tree's frontier, kept by the auditor), only the records after it
are walked; tree heads older than it are checked with a consistency proof from the stored tree.

A torn journal tail (a write a crash or a full disk cut short: never acknowledged, see
:mod:`.journal`) is no tampering: the report stays ``ok`` and lists it under ``repairs``, as it lists
every record in which a gateway said it cut such a tail off. A journal frame that is complete but
altered is tampering.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mustcheck.merkle import SHA256, Frontier, TreeHasher, verify_consistency
from mustcheck.suites import DEFAULT_SUITE, SUITES, PublicKey, Suite
from mustcheck.tree_head import TreeHead, b64, unb64

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
from .tree import MerkleTree, read_heads, read_node, record_leaf, stored_size


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
    tree_heads_checked: int = 0
    # Where an incremental verification may start next time (None: the log failed, or has no tree).
    state: TreeState | None = None

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


@dataclass(frozen=True, slots=True)
class TreeState:
    """What an auditor keeps of the last verified log: its size, last record hash and tree frontier."""

    log_id: str
    size: int
    last_hash: str
    frontier: tuple[bytes, ...]

    def root(self, hasher: TreeHasher = SHA256) -> bytes:
        """The root of the kept frontier under the log's tree hash (SHA-256 unless the suite says SM3)."""
        return Frontier(hasher, self.size, list(self.frontier)).root()

    def to_json(self) -> str:
        return json.dumps(
            {
                "log": self.log_id,
                "size": self.size,
                "last_hash": self.last_hash,
                "frontier": [b64(node) for node in self.frontier],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> TreeState:
        data = json.loads(text)
        try:
            frontier = tuple(unb64(node) for node in data["frontier"])
            state = cls(str(data["log"]), int(data["size"]), str(data["last_hash"]), frontier)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a verification state: {error}") from None
        if state.size < 0:
            raise ValueError("not a verification state: its size is negative")
        if len(frontier) != state.size.bit_count():
            raise ValueError("not a verification state: its frontier does not fit its size")
        return state


class _StoredNodes:
    """The stored tree nodes, read level by level in index order, to compare with the rebuilt tree."""

    def __init__(self, connection: sqlite3.Connection, size: int) -> None:
        self._connection = connection
        self._size = size
        self._cursors: dict[int, Iterator[tuple[int, bytes]]] = {}
        self._current: dict[int, tuple[int, bytes] | None] = {}
        # The first stored node found wrong: reported after the chain's own checks (step 7).
        self.problem: _Problem | None = None

    def _found(self, seq: int, reason: str) -> None:
        if self.problem is None:
            self.problem = _Problem(seq, reason)

    def check(self, level: int, index: int, digest: bytes) -> None:
        if self.problem is not None or (index + 1) << level > self._size:
            return  # not indexed yet (the journal's records) or not stored: nothing to compare
        cursor = self._cursors.get(level)
        if cursor is None:
            rows = self._connection.execute(
                "SELECT idx, hash FROM audit_tree_nodes WHERE level = ? AND idx >= ? ORDER BY idx",
                (level, index),
            )
            cursor = self._cursors[level] = ((int(i), bytes(h)) for i, h in rows)
            self._current[level] = next(cursor, None)
        current = self._current[level]
        while current is not None and current[0] < index:
            current = next(cursor, None)
        self._current[level] = current
        if current is None or current[0] != index:
            self._found(
                index << level, f"the stored tree lacks its node at level {level}, index {index} (deleted)"
            )
        elif current[1] != digest:
            self._found(
                (index << level) + 1,
                f"the stored tree nodes do not match the records: the node at level {level}, index {index} "
                "was altered (proofs made from it would be false)",
            )


class _Problem(Exception):
    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason


class _Verification:
    def __init__(
        self,
        public_keys: Mapping[str, PublicKey],
        mirror: list[MirrorLine] | None,
        journal: JournalContents | None = None,
        *,
        log_id: str | None = None,
        heads: Sequence[tuple[TreeHead, str]] = (),
        state: TreeState | None = None,
    ) -> None:
        self.log_id = log_id
        self.hasher = suite_of_keys(public_keys).hasher
        self.given_heads = heads
        self.state = state
        self.frontier: Frontier | None = None
        self.wanted: set[int] = set()
        self.roots: dict[int, bytes] = {}
        self.heads_checked = 0
        self.nodes: _StoredNodes | None = None
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
        if self.state is not None:  # verified before: only what follows is walked
            signed = {seq: hashed for seq, hashed in signed.items() if seq > self.state.size}
            self.roots[self.state.size] = self.state.root(self.hasher)
        heads = [(head, "the audit database") for head in read_heads(connection)] + list(self.given_heads)
        tree_size = stored_size(connection)
        self.nodes = _StoredNodes(connection, tree_size)
        self.wanted = {head.size for head, _ in heads} | {tree_size}
        seen = self._walk(connection, anchor, signed)
        self._coverage(signed, seen)
        self._mirror_agrees(checkpoints)
        self._signed_at_all(checkpoints, anchor)
        self._tree(connection, heads, tree_size)

    def _append_leaf(self, leaf: bytes) -> None:
        """Grow the rebuilt tree, comparing every node it completes with the stored one."""
        assert self.frontier is not None
        frontier, nodes = self.frontier, self.nodes
        index, level, merged = frontier.size, 0, leaf
        if nodes is not None:
            nodes.check(0, index, merged)
        while index & 1:
            merged = self.hasher.node(frontier.nodes.pop(), merged)
            index >>= 1
            level += 1
            if nodes is not None:
                nodes.check(level, index, merged)
        frontier.nodes.append(merged)
        frontier.size += 1

    # 7
    def _tree(
        self, connection: sqlite3.Connection, heads: list[tuple[TreeHead, str]], tree_size: int
    ) -> None:
        if self.frontier is None:
            return
        size = self.frontier.size
        self.roots[size] = self.frontier.root()
        state = self.state
        try:
            stored = MerkleTree(
                self.hasher, min(tree_size, size), lambda level, index: read_node(connection, level, index)
            )
        except LookupError as error:
            raise _Problem(None, f"the stored tree is incomplete: {error} (deleted)") from None
        for head, source in sorted(heads, key=lambda item: item[0].size):
            where = f"the tree head of size {head.size} signed {head.at} ({source})"
            problem = head.signature_problem(self.public_keys)
            if problem is not None:
                raise _Problem(None, f"{source}: a forged tree head: {problem}")
            if self.log_id is not None and head.log_id != self.log_id:
                raise _Problem(None, f"{where} is of log {head.log_id}, not of this log ({self.log_id})")
            if head.size > size:
                first = size + 1
                cut = f"record {first}" if first == head.size else f"records {first}–{head.size}"
                raise _Problem(
                    first,
                    f"the log ends at record {size} but {where} covers {head.size} records: {cut} "
                    "were cut from the end after that head was signed (truncated)",
                )
            root = self.roots.get(head.size)
            if root is not None:
                if root != head.root:
                    raise _Problem(
                        head.size,
                        f"the log's first {head.size} records do not have the root {where} signed "
                        "(rewritten)",
                    )
            elif state is not None and head.size < state.size:
                try:
                    proof = stored.consistency(head.size, state.size) if head.size else []
                except (LookupError, ValueError):
                    proof = None
                if proof is None or not verify_consistency(
                    self.hasher, head.size, state.size, head.root, state.root(self.hasher), proof
                ):
                    raise _Problem(
                        head.size, f"{where} is not consistent with the last verified head (rewritten)"
                    )
            self.heads_checked += 1
        if self.nodes is not None and self.nodes.problem is not None:
            raise self.nodes.problem
        if tree_size > size:
            raise _Problem(
                size + 1,
                f"the stored tree has {tree_size} leaves but the log ends at record {size}: records "
                f"{size + 1}–{tree_size} were cut from the end (truncated)",
            )
        checked = min(tree_size, size)
        if checked and self.roots.get(checked) is not None:
            try:
                stored_root = stored.root_at(checked)
            except LookupError as error:
                raise _Problem(None, f"the stored tree is incomplete: {error}") from None
            if stored_root != self.roots[checked]:
                raise _Problem(None, "the stored tree nodes do not match the records (altered)")

    def new_state(self, log_id: str | None) -> TreeState | None:
        if self.frontier is None or log_id is None:
            return None
        return TreeState(log_id, self.frontier.size, self.walker.last_hash, tuple(self.frontier.nodes))

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
        self.frontier = Frontier(self.hasher)
        if self.state is not None and self.state.size >= start_seq:
            state = self.state
            found = connection.execute("SELECT record_hash FROM audit_records WHERE seq = ?", (state.size,))
            row = found.fetchone()
            if state.size and (row is None or str(row[0]) != state.last_hash) and state.size != start_seq:
                raise _Problem(
                    state.size,
                    f"record {state.size}, the last one verified before, is missing or changed "
                    "(truncated or rewritten since)",
                )
            start_seq, start_hash = state.size, state.last_hash
            self.frontier = Frontier(self.hasher, state.size, list(state.frontier))
        elif start_seq:
            try:
                self.frontier = MerkleTree(
                    self.hasher, start_seq, lambda level, index: read_node(connection, level, index)
                ).frontier
            except LookupError:
                self.frontier = None  # pruned before the log had a tree: nothing to rebuild it from
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
            if self.frontier is not None:
                self._append_leaf(record_leaf(self.hasher, row))
                if self.frontier.size in self.wanted:
                    self.roots[self.frontier.size] = self.frontier.root()
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


def suite_of_keys(public_keys: Mapping[str, PublicKey]) -> Suite:
    """The suite a log's public keys are of (a ring's keys are all of its suite); the default if none.

    ``KeyRingError`` if they are of more than one suite.
    """
    by_signature = {suite.signature: suite for suite in SUITES.values()}
    found = {by_signature[key.algorithm] for key in public_keys.values() if key.algorithm in by_signature}
    if len(found) > 1:
        names = ", ".join(sorted(suite.name for suite in found))
        raise KeyRingError(f"the public keys are of more than one crypto suite ({names})")
    return found.pop() if found else DEFAULT_SUITE


def _seq_of(row: Sequence[object]) -> int | None:
    return row[0] if row and isinstance(row[0], int) else None


def verify_log(
    db_path: Path,
    public_keys_dir: Path,
    *,
    mirror_path: Path | None = None,
    log_id: str | None = None,
    heads: Sequence[tuple[TreeHead, str]] = (),
    state: TreeState | None = None,
) -> VerifyReport:
    """Verify the audit log in ``db_path`` with only the public keys in ``public_keys_dir``; also against
    the tree ``heads`` given (with where each came from), incrementally from ``state`` if given."""
    mirror_file = mirror_path or mirror_path_for(db_path)
    try:
        public_keys = load_public_keys(public_keys_dir)
        suite_of_keys(public_keys)
        # The mirror is read first: anything in it was committed to the database before it was appended.
        mirror = read_mirror(mirror_file) if mirror_file.exists() else None
    except (OSError, KeyRingError, ValueError) as error:
        return VerifyReport(False, 0, 0, 0, reason=f"cannot read the keys or the mirror file: {error}")
    try:
        journal = read_journal(journal_path_for(db_path))
    except AuditIntegrityError as error:
        return VerifyReport(False, 0, 0, 0, reason=str(error))
    verification = _Verification(public_keys, mirror, journal, log_id=log_id, heads=heads, state=state)
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
    return _report(verification, problem, log_id)


def verify_bound(
    connection: Any,
    public_keys: Mapping[str, PublicKey],
    *,
    log_id: str,
    heads: Sequence[tuple[TreeHead, str]] = (),
    state: TreeState | None = None,
    database_error: type[Exception] = sqlite3.Error,
) -> VerifyReport:
    """Verify one log through a connection that shows it under the embedded table names (a PostgreSQL
    connection bound to the log, :mod:`.postgres_schema`), inside the caller's snapshot. There is no
    journal and no mirror file: the database's commits are the log's durability."""
    verification = _Verification(public_keys, [], None, log_id=log_id, heads=heads, state=state)
    problem: _Problem | None = None
    try:
        verification.run(connection)
    except _Problem as found:
        problem = found
    except database_error as error:
        problem = _Problem(None, f"cannot read the audit database: {error}")
    except (ValueError, TypeError) as error:
        problem = _Problem(None, f"checkpoint or prune anchor rows cannot be read ({error}) (altered)")
    return _report(verification, problem, log_id)


def _report(verification: _Verification, problem: _Problem | None, log_id: str | None) -> VerifyReport:
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
        tree_heads_checked=verification.heads_checked,
        state=None if problem is not None else verification.new_state(log_id),
    )
