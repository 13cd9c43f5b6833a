"""Group commit: the writer process makes every pending event durable with ONE journal sync.

The writer runs in the audit writer process (:mod:`.writer_process`) and takes submissions (a list of
protected records and the token its gateway knows them by), flushes and the stop from its
:class:`Inbox`, the request pipe. It takes everything that is waiting (and, while requests announced
in the gateway are still on their way, waits up to the group window for them; with none announced,
up to ``GROUP_LINGER_S`` for one that comes anyway), assigns consecutive
sequence numbers, links each record to the previous one's hash, appends them with any checkpoints
that fall due to the journal, syncs it once, and reports every submission's seqs through ``deliver``.
So requests never wait for one sync each.

The records then go to the SQLite database (the index that queries and verification read) in larger
transactions: every ``INDEX_EVERY`` records, every ``INDEX_INTERVAL_S`` seconds, whenever a reader
asks (a :class:`Flush`) and on stop; after each, the journal is emptied. A SQLite transaction costs far
more than a journal sync, so this keeps the cost per record low when requests come one by one.

A ``chain`` checkpoint is signed for every ``checkpoint_every``-th record, and for the last record when
``checkpoint_interval_s`` has passed with records not yet covered, and on stop. Checkpoints go to the
mirror file after the database transaction that stores them commits.

Every commit also appends its records' leaves to the log's Merkle tree (:mod:`.tree`) and signs ONE tree
head over the new size and root (:mod:`mustcheck.tree_head`): the receipts of all answers in the commit
are proven against it (:meth:`GroupCommitWriter.receipt`). New tree nodes and heads go to the database
with the records' index transaction; the tree is derivable from the records, so a crash before that
transaction loses nothing (the tree catches up from the records when the writer starts).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import queue
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from mustcheck.merkle import TreeHasher
from mustcheck.tree_head import TreeHead, sign_tree_head

from ..store.sqlite_connections import transaction
from . import tree as merkle_tree
from .announced import SharedCounter
from .checkpoint import Checkpoint, CheckpointKind, sign_checkpoint
from .errors import AuditError, AuditIntegrityError
from .heads import Head, LogView, check_no_rewind, mirror_head, newest
from .journal import Journal, TornTail, erased_records, read_journal
from .keys import KeyKind, KeyRing, load_public_keys
from .mirror import CheckpointMirror
from .record import AuditRecord, PendingRecord
from .sqlite_log import SqliteAuditStore
from .tree import consistency_problem

log = structlog.get_logger("mustcheck.audit")

MAX_RECORDS_PER_COMMIT = 5000
INDEX_EVERY = 1000
INDEX_INTERVAL_S = 0.05
# After a failed index transaction (a full disk), wait this long before the next try.
INDEX_RETRY_S = 0.5


@dataclass(slots=True)
class Submission:
    """Records to commit together, and the token their outcome is reported under."""

    records: list[PendingRecord]
    token: int


@dataclass(slots=True)
class Flush:
    """A reader's request: index everything durable so far, then resolve."""

    future: Future[None] = field(default_factory=Future)
    checkpoint: bool = False  # also sign a checkpoint for the records not yet covered (a live verify)


STOP = object()


class Inbox(Protocol):
    """Where the writer takes submissions, flushes and :data:`STOP` from (raises queue.Empty)."""

    def get(self, block: bool = True, timeout: float | None = None) -> object: ...

    def get_nowait(self) -> object: ...


# How long a commit may wait for records that requests in progress have announced.
DEFAULT_GROUP_WINDOW_S = 0.002
# How long a commit waits for more records when no request has announced one: a record that comes
# within it shares the commit's sync, tree head and signature. Chosen by measurement (RESULTS.md).
GROUP_LINGER_S = 0.001


def _name_os_thread(name: str) -> None:
    """Show the thread's name to the OS (``top -H``, /proc), so operators see where time goes."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15: PR_SET_NAME


class GroupCommitWriter:
    """The single writer of one audit store: :meth:`run` writes until its inbox says stop."""

    def __init__(
        self,
        store: SqliteAuditStore,
        keyring: KeyRing,
        mirror: CheckpointMirror,
        *,
        checkpoint_every: int,
        checkpoint_interval_s: float,
        group_window_s: float = DEFAULT_GROUP_WINDOW_S,
        linger_s: float = GROUP_LINGER_S,
        journal_path: Path,
        index_every: int | None = None,
        index_interval_s: float | None = None,
        inbox: Inbox,
        deliver: Callable[[list[tuple[int, Any]]], None],
        announced: SharedCounter,
        published_head: Checkpoint | None = None,
        log_id: str | None = None,
        published_tree_head: TreeHead | None = None,
    ) -> None:
        if checkpoint_every < 1 or checkpoint_interval_s <= 0:
            raise ValueError("checkpoint_every must be ≥ 1 and checkpoint_interval_s > 0")
        self._store = store
        self._keyring = keyring
        self._mirror = mirror
        self._every = checkpoint_every
        self._interval = checkpoint_interval_s
        self._inbox = inbox
        self._window = group_window_s
        self._linger = linger_s
        # Requests in progress in the gateway that will submit a record.
        self._announced = announced
        self._index_every = index_every
        self._index_interval = index_interval_s
        # Called once per commit with (token, seqs or exception) of each submission in it.
        self._deliver = deliver
        self.commits = 0
        self.checkpoints_written = 0
        self.last_commit_latency_s = 0.0
        # What replaying the journal cut off: an unfinished write (a crash, a full disk), never acknowledged.
        self.cut: TornTail | None = self._replay_journal(journal_path)
        self._check_no_rewind(published_head)
        if log_id is None:
            from ..chain_heads import replica_id

            log_id = replica_id(store.path.parent)
        self.log_id = log_id
        self._tree = self._open_tree(published_tree_head)
        self.head: TreeHead | None = None  # the head signed after the last commit
        self._unindexed_nodes: list[merkle_tree.Node] = []
        self._unindexed_heads: list[TreeHead] = []
        self._commit_rows: list[tuple[Any, ...]] = []
        self._commit_answers: list[bytes] = []  # their answers as canonical JSON (tree.commit_leaves)
        self._journal = Journal(journal_path)
        self._unindexed_rows: list[tuple[Any, ...]] = []
        self._unindexed_checkpoints: list[Checkpoint] = []
        self._last_index_time = time.monotonic()
        tail = store.tail()
        self._last_seq = tail.last_seq
        self._last_hash = tail.last_hash
        self._covered_seq = tail.covered_seq
        self._headed = tail.covered_seq > 0  # the log has a signed head (else its first record gets one)
        self._signed_seq = tail.covered_seq  # the newest record a checkpoint was signed for
        # Records left uncovered by an earlier run get their checkpoint on the first turn.
        self._last_checkpoint_time = time.monotonic() - (self._interval if self._uncovered else 0.0)
        self._index_retry_at = 0.0
        self._connection: sqlite3.Connection | None = None

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def _hasher(self) -> TreeHasher:
        """The tree's hash: the key ring's suite's (SHA-256 or SM3)."""
        return self._keyring.suite.public.hasher

    def use_keyring(self, keyring: KeyRing) -> None:
        """Sign later checkpoints with this key ring's current key (after a rotation elsewhere)."""
        self._keyring = keyring

    # -- writing ---------------------------------------------------------

    @property
    def _uncovered(self) -> int:
        return self._last_seq - self._covered_seq

    def run(self) -> None:
        """Write until the inbox says stop: commit everything before it, index it, checkpoint it."""
        _name_os_thread("audit-writer")
        self._connection = self._store.connect()
        try:
            stopping = False
            while not stopping:
                batch, flushes, stopping = self._take()
                if batch:
                    self._commit(batch)
                indexed: AuditError | None = None
                if self._unindexed_rows and (flushes or stopping or self._index_due()):
                    indexed = self._index()
                wanted = stopping or self._checkpoint_due() or any(flush.checkpoint for flush in flushes)
                if self._uncovered and wanted and indexed is None:
                    self._write_checkpoint()
                for flush in flushes:
                    if indexed is None:
                        flush.future.set_result(None)
                    else:
                        flush.future.set_exception(indexed)
            self._journal.close()
            self._tree_reader.close()
        except BaseException:  # never leave a waiter hanging
            log.exception("audit_writer_crashed")
            self._fail_queued(AuditError("the audit writer stopped"))
            raise

    def _checkpoint_due(self) -> bool:
        return time.monotonic() - self._last_checkpoint_time >= self._interval

    @property
    def _index_limits(self) -> tuple[int, float]:
        every = INDEX_EVERY if self._index_every is None else self._index_every
        return every, INDEX_INTERVAL_S if self._index_interval is None else self._index_interval

    def _index_due(self) -> bool:
        every, interval = self._index_limits
        now = time.monotonic()
        if now < self._index_retry_at:
            return False
        return len(self._unindexed_rows) >= every or now - self._last_index_time >= interval

    def _wait_limit(self) -> float | None:
        """How long the writer may sleep: until a checkpoint or an index transaction falls due."""
        limits = []
        if self._uncovered:
            limits.append(self._interval - (time.monotonic() - self._last_checkpoint_time))
        if self._unindexed_rows:
            limits.append(self._index_limits[1] - (time.monotonic() - self._last_index_time))
        if not limits:
            return None
        # After a failed index transaction nothing falls due before its retry (a full disk).
        retry = self._index_retry_at - time.monotonic() if self._unindexed_rows else 0.0
        return max(0.0, retry, min(limits))

    def _take(self) -> tuple[list[Submission], list[Flush], bool]:
        """Block for the first submission (or until a checkpoint or an index falls due), then drain.

        While requests that announced a record are still being processed, wait for them too, up to
        the group window: one sync for many records instead of one each (group commit).
        """
        batch: list[Submission] = []
        flushes: list[Flush] = []
        try:
            item: object = self._inbox.get(timeout=self._wait_limit())
        except queue.Empty:
            return batch, flushes, False
        count = 0
        first = time.monotonic()
        deadline, linger_until = first + self._window, first + min(self._window, self._linger)
        while True:
            if item is STOP:
                return batch, flushes, True  # everything submitted before close() is queued ahead of it
            if isinstance(item, Flush):
                flushes.append(item)
            elif isinstance(item, Submission):
                batch.append(item)
                count += len(item.records)
            if count >= MAX_RECORDS_PER_COMMIT:
                return batch, flushes, False
            try:
                item = self._inbox.get_nowait()
                continue
            except queue.Empty:
                pass
            until = deadline if self._announced.value > 0 else linger_until
            remaining = until - time.monotonic()
            if flushes or remaining <= 0:
                return batch, flushes, False
            try:
                item = self._inbox.get(timeout=remaining)
            except queue.Empty:
                return batch, flushes, False

    def _commit(self, batch: list[Submission]) -> None:
        started = time.perf_counter()
        seq, prev_hash, covered = self._last_seq, self._last_hash, self._covered_seq
        rows: list[tuple[Any, ...]] = []
        lines: list[str] = []  # the rows' journal lines, encoded with their hashes
        checkpoints: list[Checkpoint] = []
        seqs: list[list[int]] = []
        try:
            for submission in batch:
                assigned = []
                for pending in submission.records:
                    seq += 1
                    prev_hash, row, line = pending.chain_line(seq, prev_hash)
                    rows.append(row)
                    lines.append(line)
                    assigned.append(seq)
                    if seq - covered >= self._every:
                        checkpoints.append(self._sign(seq, prev_hash))
                        covered = seq
                seqs.append(assigned)
            if not self._headed and not checkpoints:
                # The log's first commit gets a head in its own frame (the cadence is unchanged): a log
                # never holds records without a signed head, whenever it crashes.
                checkpoints.append(self._sign(seq, prev_hash))
            self._journal.append(rows, checkpoints, lines)
        except Exception as error:
            log.error("audit_commit_failed", records=len(rows), error=repr(error))
            self._settle(batch, error=error)
            return
        self._last_seq, self._last_hash, self._covered_seq = seq, prev_hash, covered
        self._grow_tree(rows)
        self._unindexed_rows.extend(rows)
        self._unindexed_checkpoints.extend(checkpoints)
        self._headed = self._headed or bool(checkpoints)
        if checkpoints:
            self._signed_seq = checkpoints[-1].seq
        self.last_commit_latency_s = time.perf_counter() - started
        self.commits += 1
        self._settle(batch, seqs=seqs)
        if checkpoints:
            self._last_checkpoint_time = time.monotonic()

    def _index(self) -> AuditError | None:
        """Copy the journaled records into the database in one transaction, then empty the journal.

        If the database cannot be written (a full disk), the records stay in the journal, where they
        are durable already, and the transaction is tried again later; the error is returned.
        """
        assert self._connection is not None
        rows, checkpoints = self._unindexed_rows, self._unindexed_checkpoints
        try:
            with transaction(self._connection) as connection:
                self._store.insert_rows(connection, rows, checkpoints)
                merkle_tree.insert_nodes(connection, self._unindexed_nodes)
                merkle_tree.insert_heads(connection, self._unindexed_heads)
        except (sqlite3.Error, OSError) as error:
            log.error("audit_index_failed", records=len(rows), error=repr(error))
            self._index_retry_at = time.monotonic() + INDEX_RETRY_S
            return AuditError(f"the audit database cannot be written now: {error}")
        self._unindexed_rows, self._unindexed_checkpoints = [], []
        self._unindexed_nodes, self._unindexed_heads = [], []
        self._tree.stored()
        self._last_index_time = time.monotonic()
        self._journal.clear()
        if checkpoints:
            self._publish(checkpoints)
        return None

    def _replay_journal(self, path: Path) -> TornTail | None:
        """Copy into the database what a crash left only in the journal, then empty the journal;
        return the torn tail cut off, if any (an unfinished write, never acknowledged)."""
        contents = read_journal(path)
        last = max([self._store.tail().last_seq, *(int(row[0]) for row in contents.rows)])
        erased_records(path.name, contents, last)
        if contents.rows or contents.checkpoints:
            self._copy_journal(path, contents.rows, contents.checkpoints)
        journal = Journal(path)  # opening it zeroes a torn tail
        cut = journal.cut
        journal.clear()
        journal.close()
        if cut is not None:
            log.warning("audit_journal_torn_tail_cut", offset=cut.offset, length=cut.length)
        return cut

    def _check_no_rewind(self, published: Checkpoint | None) -> None:
        """Refuse to continue a log that lacks records a signed or published head covers."""
        tail = self._store.tail()
        view = LogView(tail.last_seq, self._store.record_hash, self._store.pruned_through())
        heads = (
            newest(self._store.checkpoints(), "the audit database"),
            mirror_head(self._mirror.path),
            None if published is None else Head(published, "the store"),
        )
        check_no_rewind(view, heads, load_public_keys(self._keyring.public_dir))

    def _copy_journal(
        self, path: Path, journal_rows: list[tuple[Any, ...]], journal_checkpoints: list[tuple[Any, ...]]
    ) -> None:
        tail = self._store.tail()
        rows = [row for row in journal_rows if int(row[0]) > tail.last_seq]
        expected_seq, expected_hash = tail.last_seq + 1, tail.last_hash
        for row in rows:
            record = AuditRecord.from_row(row)
            if record.seq != expected_seq or record.prev_hash != expected_hash:
                raise AuditIntegrityError(
                    f"{path.name}: record {record.seq} does not continue the database (last record "
                    f"{tail.last_seq}): the journal or the database was altered"
                )
            expected_seq, expected_hash = record.seq + 1, record.record_hash
        known = {checkpoint.identity for checkpoint in self._store.checkpoints()}
        checkpoints = [
            checkpoint
            for checkpoint in (Checkpoint.from_row(row) for row in journal_checkpoints)
            if checkpoint.identity not in known
        ]
        connection = self._store.connect()
        try:
            with transaction(connection) as writing:
                self._store.insert_rows(writing, rows, checkpoints)
        finally:
            connection.close()
        if checkpoints:
            self._publish(checkpoints)
        log.warning("audit_journal_replayed", records=len(rows), checkpoints=len(checkpoints))

    # -- the Merkle tree ----------------------------------------------------------------------

    def _open_tree(self, published: TreeHead | None) -> merkle_tree.MerkleTree:
        """The stored tree, caught up with the stored records, checked against the newest tree heads
        (stored, and published to the shared store) with consistency proofs: no rewind."""
        connection = self._store.connect()
        try:
            with transaction(connection) as writing:
                tree = merkle_tree.stored_tree(writing, self._hasher)
                added = merkle_tree.catch_up(writing, tree, self._store.pruned_through())
                newest = merkle_tree.latest_head(writing)
        except LookupError as error:  # nodes the stored tree's right edge needs were deleted
            raise AuditIntegrityError(
                f"audit log tamper alarm: the stored Merkle tree is incomplete ({error}). Refusing to "
                "continue the log; restore the data directory or investigate"
            ) from None
        finally:
            connection.close()
        if added:
            log.info("audit_tree_caught_up", leaves=added, size=tree.size)
        reader = self._tree_reader = self._store.connect()
        tree = merkle_tree.MerkleTree(
            self._hasher, tree.size, lambda level, index: merkle_tree.read_node(reader, level, index)
        )
        public_keys = load_public_keys(self._keyring.public_dir)
        for head, source in ((newest, "the audit database"), (published, "the store")):
            if head is None:
                continue
            problem = head.signature_problem(public_keys)
            if problem is None:
                problem = consistency_problem(tree, head)
            if problem is not None:
                raise AuditIntegrityError(
                    f"audit log tamper alarm: the newest tree head in {source}: {problem}. Refusing to "
                    "continue the log (nothing was repaired, no seq is reused); restore the data "
                    "directory or investigate"
                )
        return tree

    def _grow_tree(self, rows: list[tuple[Any, ...]]) -> None:
        """Append the commit's leaves and sign one tree head over the new size (on the writer's thread)."""
        leaves, self._commit_answers = merkle_tree.commit_leaves(self._hasher, rows)
        for leaf in leaves:
            self._tree.append(leaf)
        self._unindexed_nodes.extend(self._tree.take_pending())
        key_id = self._keyring.current_id(KeyKind.SIGN)
        self.head = sign_tree_head(
            self.log_id,
            self._tree.size,
            self._tree.root(),
            dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            key_id,
            self._keyring.signer(key_id),
            self._keyring.suite.public,
        )
        self._unindexed_heads.append(self.head)
        self._commit_rows = rows

    def receipt(self, seq: int) -> str:
        """The proof receipt of record ``seq`` of the commit being settled (call from ``deliver``)."""
        assert self.head is not None and self._commit_rows
        first = int(self._commit_rows[0][0])
        row = self._commit_rows[seq - first]
        proof = self._tree.inclusion(seq - 1, self.head.size)
        return merkle_tree.row_receipt(self._commit_answers[seq - first], row, proof, self.head)

    def _settle(
        self, batch: list[Submission], *, seqs: list[list[int]] | None = None, error: Exception | None = None
    ) -> None:
        outcomes: list[tuple[int, Any]] = [
            (submission.token, error if seqs is None else seqs[index])
            for index, submission in enumerate(batch)
        ]
        self._deliver(outcomes)

    def _sign(self, seq: int, record_hash: str) -> Checkpoint:
        key_id = self._keyring.current_id(KeyKind.SIGN)
        return sign_checkpoint(
            CheckpointKind.CHAIN,
            seq,
            record_hash,
            key_id=key_id,
            signer=self._keyring.signer(key_id),
            at=dt.datetime.now(dt.UTC),
        )

    def _write_checkpoint(self) -> None:
        assert self._connection is not None
        if self._signed_seq == self._last_seq:
            # Already signed with its commit (the log's first head): one checkpoint per record.
            self._covered_seq = self._last_seq
            self._last_checkpoint_time = time.monotonic()
            return
        if self._unindexed_rows and (time.monotonic() < self._index_retry_at or self._index() is not None):
            return  # the checkpoint's record must be in the database with it: try again later
        checkpoint = self._sign(self._last_seq, self._last_hash)
        try:
            with transaction(self._connection) as connection:
                self._store.insert(connection, (), (checkpoint,))
        except Exception as error:
            log.error("audit_checkpoint_failed", seq=checkpoint.seq, error=repr(error))
            self._last_checkpoint_time = time.monotonic()  # retry after another interval
            return
        self._covered_seq = self._signed_seq = checkpoint.seq
        self._last_checkpoint_time = time.monotonic()
        self._publish([checkpoint])

    def _publish(self, checkpoints: list[Checkpoint]) -> None:
        self.checkpoints_written += len(checkpoints)
        try:
            self._mirror.append(checkpoints)
        except OSError as error:  # the database holds them; the next open copies them to the mirror
            log.error("audit_mirror_append_failed", path=str(self._mirror.path), error=repr(error))
        for checkpoint in checkpoints:
            log.info("audit_checkpoint", seq=checkpoint.seq, key_id=checkpoint.key_id)

    def _fail_queued(self, error: Exception) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Flush):
                item.future.set_exception(error)
                continue
            if isinstance(item, Submission):
                self._settle([item], error=error)
