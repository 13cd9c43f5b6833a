"""Group commit into PostgreSQL: the writer of one replica's log in the shared database.

It runs in the audit writer process (:mod:`.writer_process` with ``--postgres-log``), as the
embedded backend's writer does, so that psycopg, hashing, the tree and signing never hold the
gateway's interpreter lock; the gateway talks to it through :class:`~.remote_writer.RemoteWriter`.

The writer takes every submission waiting (and, while requests announced in the gateway are on their
way, waits up to the group window for them; with none announced, up to ``GROUP_LINGER_S``), gives
the records consecutive seqs of its log, chains
them, appends their leaves to the log's Merkle tree and signs ONE tree head over the new size; then
writes records, new tree nodes, the head (and a chain checkpoint when one falls due) in ONE
transaction. Only after that transaction commits are the seqs and receipts handed back: no answer
leaves before its record is durable (R10).

One writer per log: the writer holds a session advisory lock on its log id for as long as its
connection lives, so a second gateway with the same log id is refused, and a killed gateway's lock
goes with its connection (a killed writer process's too). After a failed commit the connection is
opened again and the log's state is read back from the database (what committed is the truth;
nothing of a failed commit was answered).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import queue
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import structlog

from mustcheck.merkle import SHA256
from mustcheck.receipts import encode_receipt
from mustcheck.tree_head import TreeHead, sign_tree_head

from . import tree as merkle_tree
from .announced import SharedCounter
from .checkpoint import Checkpoint, CheckpointKind, sign_checkpoint
from .errors import AuditError, AuditIntegrityError, AuditUnavailable
from .heads import LogView, check_no_rewind, newest
from .keys import KeyKind, KeyRing, load_public_keys
from .postgres_schema import (
    RECORD_INSERT,
    Connection,
    LogConnection,
    bind_log,
    ensure_partitions,
    month_of,
    record_values,
)
from .record import GENESIS_HASH
from .sqlite_log import iter_rows, read_checkpoints, read_prune_anchors
from .tree import consistency_problem
from .writer import STOP, Flush, Inbox, Submission

log = structlog.get_logger("mustcheck.audit")

MAX_RECORDS_PER_COMMIT = 5000
DEFAULT_GROUP_WINDOW_S = 0.002
# How long a commit waits for more records when no request has announced one (as the embedded
# writer's GROUP_LINGER_S): a record that comes within it shares the commit's transaction and head.
GROUP_LINGER_S = 0.001


def log_lock_key(log_id: str) -> int:
    """The session advisory lock key of one log (a signed 64-bit integer from its id)."""
    digest = hashlib.sha256(b"mustcheck.audit.log\n" + log_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def open_connection(url: str, log_id: str) -> Connection:
    # A short bound: while the database is away, each commit's reconnect fails fast (UNAVAILABLE).
    connection = psycopg.connect(url, autocommit=True, connect_timeout=2)
    try:
        bind_log(connection, log_id)
    except BaseException:
        connection.close()
        raise
    return connection


class PostgresWriter:
    """The single writer of one log: :meth:`run` commits what its inbox holds until told to stop, and
    reports each submission's outcome (its seqs, or the error) to ``deliver`` under its token."""

    def __init__(
        self,
        url: str,
        log_id: str,
        keyring: KeyRing,
        *,
        checkpoint_every: int,
        checkpoint_interval_s: float,
        group_window_s: float = DEFAULT_GROUP_WINDOW_S,
        linger_s: float = GROUP_LINGER_S,
        inbox: Inbox,
        deliver: Callable[[list[tuple[int, Any]]], None],
        announced: SharedCounter,
    ) -> None:
        if checkpoint_every < 1 or checkpoint_interval_s <= 0:
            raise ValueError("checkpoint_every must be ≥ 1 and checkpoint_interval_s > 0")
        self.url = url
        self.log_id = log_id
        self.keyring = keyring
        self._every = checkpoint_every
        self._interval = checkpoint_interval_s
        self._window = group_window_s
        self._linger = min(group_window_s, linger_s)
        self.inbox = inbox
        self._deliver = deliver
        self._announced = announced  # requests in progress in the gateway that will submit a record
        self.commits = 0
        self.checkpoints_written = 0
        self.last_commit_latency_s = 0.0
        self.head: TreeHead | None = None
        self.last_seq, self.last_hash = 0, GENESIS_HASH  # read from the database by _open
        self._connection: Connection | None = None
        self._months: set[dt.date] = set()  # months whose record partition is known to exist
        self._commit_rows: list[tuple[Any, ...]] = []  # the rows of the commit being settled (receipts)
        self._open()

    # -- state, read back from the database -----------------------------------------------

    def _open(self) -> None:
        """Connect, take the log's lock, and read where the log stands (checked: no rewind)."""
        connection = open_connection(self.url, self.log_id)
        try:
            taken = connection.execute(
                "SELECT pg_try_advisory_lock(%s)", (log_lock_key(self.log_id),)
            ).fetchone()
            if not taken or not taken[0]:
                raise AuditError(
                    f"another gateway is writing the audit log {self.log_id} in this database "
                    "(each replica needs a data directory of its own, with its own replica id)"
                )
            connection.execute(
                "INSERT INTO audit_logs (log_id, created_at) VALUES (%s, %s) ON CONFLICT (log_id) DO NOTHING",
                (self.log_id, dt.datetime.now(dt.UTC).isoformat()),
            )
            self._load(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def _load(self, connection: Connection) -> None:
        reader = LogConnection(connection)
        row = connection.execute(
            "SELECT seq, record_hash FROM audit_log_records WHERE log_id = %s ORDER BY seq DESC LIMIT 1",
            (self.log_id,),
        ).fetchone()
        anchors = read_prune_anchors(reader)  # type: ignore[arg-type]
        anchor = anchors[-1] if anchors else None
        if row is not None:
            self.last_seq, self.last_hash = int(row[0]), str(row[1])
        elif anchor is not None:
            self.last_seq, self.last_hash = anchor.seq, anchor.record_hash
        else:
            self.last_seq, self.last_hash = 0, GENESIS_HASH
        checkpoints = read_checkpoints(reader)  # type: ignore[arg-type]
        self._covered = max([0, *(c.seq for c in checkpoints), anchor.seq if anchor else 0])
        self._last_checkpoint_time = time.monotonic()
        public_keys = load_public_keys(self.keyring.public_dir)

        def record_hash(seq: int) -> str | None:
            found = connection.execute(
                "SELECT record_hash FROM audit_log_records WHERE log_id = %s AND seq = %s", (self.log_id, seq)
            ).fetchone()
            return None if found is None else str(found[0])

        view = LogView(self.last_seq, record_hash, anchor.seq if anchor else 0)
        check_no_rewind(view, (newest(checkpoints, "the audit database"),), public_keys)
        stored = merkle_tree.stored_tree(reader, SHA256)  # type: ignore[arg-type]
        added = 0
        while stored.size < (anchor.seq if anchor else 0):
            stored.append(merkle_tree.pruned_leaf(SHA256, stored.size + 1))
            added += 1
        for record_row in iter_rows(reader, after_seq=stored.size):  # type: ignore[arg-type]
            if int(record_row[0]) != stored.size + 1:
                raise AuditIntegrityError(
                    f"audit log tamper alarm: log {self.log_id}: record {stored.size + 1} is missing before "
                    f"record {record_row[0]}"
                )
            stored.append(merkle_tree.record_leaf(SHA256, record_row))
            added += 1
        if added:  # records without their nodes (copied in by hand?): store what the tree needs
            with connection.transaction():
                self._insert_nodes(connection, stored.take_pending())
            log.warning("audit_tree_caught_up", log_id=self.log_id, leaves=added)
        stored.take_pending()
        head = merkle_tree.latest_head(reader)  # type: ignore[arg-type]
        if head is not None:
            problem = head.signature_problem(public_keys) or consistency_problem(stored, head)
            if problem is not None:
                raise AuditIntegrityError(
                    f"audit log tamper alarm: log {self.log_id}: the newest tree head in the database: "
                    f"{problem}. Refusing to continue the log; restore the database or investigate"
                )
        self.tree = stored
        self.head = head

    def _insert_nodes(self, connection: Connection, nodes: Sequence[merkle_tree.Node]) -> None:
        if nodes:
            with connection.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO audit_log_tree_nodes (log_id, level, idx, hash) VALUES (%s, %s, %s, %s)",
                    [(self.log_id, level, index, digest) for level, index, digest in nodes],
                )

    def use_keyring(self, keyring: KeyRing) -> None:
        """Sign later heads with this key ring's current key (after a rotation in the gateway)."""
        self.keyring = keyring

    # -- the loop, in the writer process ---------------------------------------------------

    def run(self) -> None:
        stopping = False
        while not stopping:
            batch, flushes, stopping = self._take()
            if batch:
                self._commit(batch, checkpoint=False)
            if flushes or stopping:
                if self.last_seq > self._covered:
                    self._commit([], checkpoint=True)
                for flush in flushes:
                    flush.future.set_result(None)
            elif self.last_seq > self._covered and self._checkpoint_due():
                self._commit([], checkpoint=True)
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _checkpoint_due(self) -> bool:
        return time.monotonic() - self._last_checkpoint_time >= self._interval

    def _take(self) -> tuple[list[Submission], list[Flush], bool]:
        batch: list[Submission] = []
        flushes: list[Flush] = []
        wait = None
        if self.last_seq > self._covered:
            wait = max(0.0, self._interval - (time.monotonic() - self._last_checkpoint_time))
        try:
            item: object = self.inbox.get(timeout=wait)
        except queue.Empty:
            return batch, flushes, False
        count = 0
        first = time.monotonic()
        deadline, linger_until = first + self._window, first + self._linger
        while True:
            if item is STOP:
                return batch, flushes, True
            if isinstance(item, Flush):
                flushes.append(item)
            elif isinstance(item, Submission):
                batch.append(item)
                count += len(item.records)
            if count >= MAX_RECORDS_PER_COMMIT:
                return batch, flushes, False
            try:
                item = self.inbox.get_nowait()
                continue
            except queue.Empty:
                pass
            remaining = (deadline if self._announced.value > 0 else linger_until) - time.monotonic()
            if flushes or remaining <= 0:
                return batch, flushes, False
            try:
                item = self.inbox.get(timeout=remaining)
            except queue.Empty:
                return batch, flushes, False

    def _sign_checkpoint(self, seq: int, record_hash: str) -> Checkpoint:
        key_id = self.keyring.current_id(KeyKind.SIGN)
        return sign_checkpoint(
            CheckpointKind.CHAIN,
            seq,
            record_hash,
            key_id=key_id,
            signer=self.keyring.signer(key_id),
            at=dt.datetime.now(dt.UTC),
        )

    def _commit(self, batch: list[Submission], *, checkpoint: bool) -> None:
        started = time.perf_counter()
        try:
            if self._connection is None:
                self._open()  # after a failed commit: the state as the database holds it
            connection = self._connection
            assert connection is not None
            seq, prev_hash = self.last_seq, self.last_hash
            rows: list[tuple[Any, ...]] = []
            seqs: list[list[int]] = []
            for submission in batch:
                assigned = []
                for pending in submission.records:
                    seq += 1
                    prev_hash, row = pending.chain(seq, prev_hash)
                    rows.append(row)
                    assigned.append(seq)
                seqs.append(assigned)
            for row in rows:
                self.tree.append(merkle_tree.record_leaf(SHA256, row))
            nodes = self.tree.take_pending()
            head = self.head
            if rows:
                key_id = self.keyring.current_id(KeyKind.SIGN)
                head = sign_tree_head(
                    self.log_id,
                    self.tree.size,
                    self.tree.root(),
                    dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
                    key_id,
                    self.keyring.signer(key_id),
                )
            checkpoints = []
            if seq > self._covered and (
                checkpoint
                or self._covered == 0
                or seq - self._covered >= self._every
                or self._checkpoint_due()
            ):
                checkpoints.append(self._sign_checkpoint(seq, prev_hash))
            values = [record_values(self.log_id, row) for row in rows]
            months = {month_of(value[1]) for value in values} - self._months
            if months:  # a month's first record: its partition is made first (once per writer and month)
                ensure_partitions(connection, months)
                self._months |= months
            # One pipeline: BEGIN, the rows of each table, COMMIT and one sync, in one round trip.
            with connection.pipeline(), connection.transaction(), connection.cursor() as cursor:
                if values:
                    cursor.executemany(RECORD_INSERT, values)
                self._insert_nodes(connection, nodes)
                if rows and head is not None:
                    cursor.execute(
                        "INSERT INTO audit_log_tree_heads (log_id, size, at, head) VALUES (%s, %s, %s, %s)",
                        (self.log_id, head.size, head.at, head.to_json()),
                    )
                for signed in checkpoints:
                    cursor.execute(
                        "INSERT INTO audit_log_checkpoints (log_id, kind, seq, record_hash, at, key_id, "
                        "signature) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        (self.log_id, *signed.to_row()),
                    )
        except Exception as error:
            self._failed(error, batch)
            return
        self.last_seq, self.last_hash, self.head = seq, prev_hash, head
        if checkpoints:
            self._covered = seq
            self._last_checkpoint_time = time.monotonic()
            self.checkpoints_written += 1
        self.commits += 1 if rows else 0
        self.last_commit_latency_s = time.perf_counter() - started
        if batch:
            self._commit_rows = rows
            self._deliver(
                [(submission.token, assigned) for submission, assigned in zip(batch, seqs, strict=True)]
            )

    def receipt(self, seq: int) -> str:
        """The proof receipt of record ``seq`` of the commit being settled (call from ``deliver``)."""
        assert self.head is not None and self._commit_rows
        row = self._commit_rows[seq - int(self._commit_rows[0][0])]
        proof = self.tree.inclusion(seq - 1, self.head.size)
        return encode_receipt(merkle_tree.answer_fields(row), str(row[-1]), proof, self.head)

    def _failed(self, error: Exception, batch: list[Submission]) -> None:
        """Nothing of this commit is answered; the next one starts from what the database holds."""
        log.error("audit_commit_failed", log_id=self.log_id, error=repr(error))
        self._months.clear()  # a partition may have been dropped (a prune): look again
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
            self._connection = None
        outcome: Exception = (
            error
            if isinstance(error, AuditIntegrityError)
            else AuditUnavailable(f"the audit database cannot be written now: {error}")
        )
        if batch:
            self._deliver([(submission.token, outcome) for submission in batch])
