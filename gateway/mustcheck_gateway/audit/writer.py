"""Group commit: one writer thread turns every pending event into records in ONE transaction.

Callers put submissions (a list of protected records and a future) on a queue. The writer takes
everything that is waiting, assigns consecutive sequence numbers, links each record to the previous
one's hash, inserts them with any checkpoints that fall due, commits once (one fsync), and resolves
every future with its seqs. So requests wait for at most one commit in flight plus their own, never
for one fsync each.

A ``chain`` checkpoint is signed for every ``checkpoint_every``-th record (inside the same
transaction), and for the last record when ``checkpoint_interval_s`` has passed with records not
yet covered, and on close. Checkpoints go to the mirror file after their transaction commits.
"""

from __future__ import annotations

import datetime as dt
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import structlog

from .checkpoint import Checkpoint, CheckpointKind, sign_checkpoint
from .errors import AuditError, AuditLogClosed
from .keys import KeyKind, KeyRing
from .mirror import CheckpointMirror
from .record import AuditRecord, PendingRecord
from .sqlite_log import SqliteAuditStore, transaction

log = structlog.get_logger("mustcheck.audit")

MAX_RECORDS_PER_COMMIT = 5000


@dataclass(slots=True)
class _Submission:
    records: list[PendingRecord]
    future: Future[list[int]] = field(default_factory=Future)


_STOP = object()


class GroupCommitWriter:
    """The single writer of one audit store; thread-safe :meth:`submit`, idempotent :meth:`close`."""

    def __init__(
        self,
        store: SqliteAuditStore,
        keyring: KeyRing,
        mirror: CheckpointMirror,
        *,
        checkpoint_every: int,
        checkpoint_interval_s: float,
    ) -> None:
        if checkpoint_every < 1 or checkpoint_interval_s <= 0:
            raise ValueError("checkpoint_every must be ≥ 1 and checkpoint_interval_s > 0")
        self._store = store
        self._keyring = keyring
        self._mirror = mirror
        self._every = checkpoint_every
        self._interval = checkpoint_interval_s
        self._queue: queue.SimpleQueue[_Submission | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._pending_records = 0
        tail = store.tail()
        self._last_seq = tail.last_seq
        self._last_hash = tail.last_hash
        self._covered_seq = tail.covered_seq
        # Records left uncovered by an earlier run get their checkpoint on the first turn.
        self._last_checkpoint_time = time.monotonic() - (self._interval if self._uncovered else 0.0)
        self.commits = 0
        self.checkpoints_written = 0
        self.last_commit_latency_s = 0.0
        self._connection: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="mustcheck-audit-writer", daemon=True)
        self._thread.start()

    # -- the caller's side ---------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Records submitted and not yet committed."""
        with self._lock:
            return self._pending_records

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def submit(self, records: list[PendingRecord]) -> Future[list[int]]:
        """Queue records for the next commit; the future resolves to their seqs once durable."""
        submission = _Submission(records)
        with self._lock:
            if self._closed:
                raise AuditLogClosed("the audit log is closed")
            self._pending_records += len(records)
            self._queue.put(submission)
        return submission.future

    def close(self) -> None:
        """Commit everything queued, write a final checkpoint, stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()

    # -- the writer thread ---------------------------------------------------------

    @property
    def _uncovered(self) -> int:
        return self._last_seq - self._covered_seq

    def _run(self) -> None:
        self._connection = self._store.connect()
        try:
            stopping = False
            while not stopping:
                batch, stopping = self._take()
                if batch:
                    self._commit(batch)
                if self._uncovered and (stopping or self._checkpoint_due()):
                    self._write_checkpoint()
        except BaseException:  # never leave a waiter hanging
            log.exception("audit_writer_crashed")
            with self._lock:
                self._closed = True
            self._fail_queued(AuditError("the audit writer stopped"))
            raise

    def _checkpoint_due(self) -> bool:
        return time.monotonic() - self._last_checkpoint_time >= self._interval

    def _take(self) -> tuple[list[_Submission], bool]:
        """Block for the first submission (or until a checkpoint falls due), then drain the queue."""
        timeout = None
        if self._uncovered:
            timeout = max(0.0, self._interval - (time.monotonic() - self._last_checkpoint_time))
        try:
            first = self._queue.get(timeout=timeout)
        except queue.Empty:
            return [], False
        batch: list[_Submission] = []
        stopping = False
        item: object = first
        count = 0
        while True:
            if item is _STOP:
                stopping = True  # everything submitted before close() is already queued ahead of it
            elif isinstance(item, _Submission):
                batch.append(item)
                count += len(item.records)
            if count >= MAX_RECORDS_PER_COMMIT and not stopping:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        return batch, stopping

    def _commit(self, batch: list[_Submission]) -> None:
        assert self._connection is not None
        for submission in batch:
            submission.future.set_running_or_notify_cancel()  # audit is written even if nobody waits
        started = time.perf_counter()
        seq, prev_hash, covered = self._last_seq, self._last_hash, self._covered_seq
        records: list[AuditRecord] = []
        checkpoints: list[Checkpoint] = []
        seqs: list[list[int]] = []
        try:
            for submission in batch:
                assigned = []
                for pending in submission.records:
                    seq += 1
                    record = pending.chain(seq, prev_hash)
                    prev_hash = record.record_hash
                    records.append(record)
                    assigned.append(seq)
                    if seq - covered >= self._every:
                        checkpoints.append(self._sign(seq, prev_hash))
                        covered = seq
                seqs.append(assigned)
            with transaction(self._connection) as connection:
                self._store.insert(connection, records, checkpoints)
        except Exception as error:
            log.error("audit_commit_failed", records=len(records), error=repr(error))
            self._settle(batch, error=error)
            return
        self._last_seq, self._last_hash, self._covered_seq = seq, prev_hash, covered
        self.last_commit_latency_s = time.perf_counter() - started
        self.commits += 1
        self._settle(batch, seqs=seqs)
        if checkpoints:
            self._last_checkpoint_time = time.monotonic()
            self._publish(checkpoints)

    def _settle(
        self, batch: list[_Submission], *, seqs: list[list[int]] | None = None, error: Exception | None = None
    ) -> None:
        with self._lock:
            self._pending_records -= sum(len(submission.records) for submission in batch)
        for index, submission in enumerate(batch):
            if submission.future.cancelled():
                continue
            if error is not None:
                submission.future.set_exception(error)
            else:
                assert seqs is not None
                submission.future.set_result(seqs[index])

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
        checkpoint = self._sign(self._last_seq, self._last_hash)
        try:
            with transaction(self._connection) as connection:
                self._store.insert(connection, (), (checkpoint,))
        except Exception as error:
            log.error("audit_checkpoint_failed", seq=checkpoint.seq, error=repr(error))
            self._last_checkpoint_time = time.monotonic()  # retry after another interval
            return
        self._covered_seq = checkpoint.seq
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
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Submission) and item.future.set_running_or_notify_cancel():
                item.future.set_exception(error)
