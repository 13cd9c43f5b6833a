"""The audit log facade: append (durably, group-committed), read, reveal, export, verify, prune.

``AuditLog.open(DATA_DIR)`` uses ``DATA_DIR/audit.sqlite3``, ``DATA_DIR/checkpoints.jsonl`` and the
key ring ``DATA_DIR/keys/`` (created on first use). Appends return once the record is on disk; the
raw subject of an event is protected before it is queued and never stored in clear. Chaining,
journaling and syncing run in a writer process started by :meth:`AuditLog.open` (:mod:`.remote_writer`),
so they never hold the gateway's interpreter lock.

The log keeps itself writable (docs/audit-log.md): a writer process that dies is started again (a
record says so, and one more if it cut a torn journal tail); below the disk's free-space watermark
(:mod:`.space`) appends are refused with :class:`~.errors.AuditUnavailable` until space returns, and
a record then says how many were refused. :meth:`AuditLog.unavailable` says why appends are refused.

A gateway of several worker processes (``serve --workers``) keeps one log: the process that opens it
with ``workers=True`` holds it and its writer, which also listens for the workers
(:mod:`.writer_clients`); each worker opens it with ``attach=True``: it submits to that writer, reads
the same files, and neither takes the log's lock nor starts or records a writer of its own (when the
writer is restarted, a worker attaches to the new one).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog

from mustcheck.tree_head import TreeHead

from ..store.codec import format_instant
from .appending import AppendFront
from .checkpoint import Checkpoint, CheckpointKind, sign_checkpoint
from .errors import AuditError, AuditUnavailable
from .exclusive import WriterLock
from .heads import Head, LogView, extension_problem
from .journal import journal_path_for
from .keys import KeyKind, KeyRing
from .mirror import CheckpointMirror, mirror_path_for
from .outage import AVAILABLE_AGAIN, Outage
from .protect import SubjectProtector
from .query import AuditFilter
from .reading import FilteredReads
from .record import TAIL_CUT_OUTCOME, AuditEvent, AuditRecord
from .remote_writer import Announcement, EmbeddedStore, RemoteWriter, WriterSettings, current_log_level
from .retention import check_prune_allowed
from .space import DEFAULT_MIN_FREE_MB, MIB, FreeSpace
from .sqlite_log import SqliteAuditStore
from .verify import TreeState, VerifyReport, verify_log
from .writer_clients import SOCKET_NAME
from .writer_keeper import WriterKeeper

log = structlog.get_logger("mustcheck.audit")

DEFAULT_FILE_NAME = "audit.sqlite3"
KEYS_DIR_NAME = "keys"


def verify_data_dir(
    data_dir: Path,
    public_keys: Path | None = None,
    *,
    heads: Sequence[tuple[TreeHead, str]] = (),
    state: TreeState | None = None,
) -> VerifyReport:
    """Verify the audit log of a (copy of a) data directory offline, read-only, with only the public keys
    (by default those the directory holds), against the tree ``heads`` an auditor holds, incrementally
    from ``state`` if given."""
    replica = data_dir / "replica.id"
    return verify_log(
        data_dir / DEFAULT_FILE_NAME,
        public_keys or data_dir / KEYS_DIR_NAME / "public",
        log_id=replica.read_text(encoding="ascii").strip() if replica.is_file() else None,
        heads=heads,
        state=state,
    )


class AuditLog(WriterKeeper, FilteredReads, AppendFront):
    """The tamper-evident audit log of one gateway (one writer process; safe to share across threads)."""

    def __init__(
        self,
        db_path: Path,
        keyring: KeyRing,
        *,
        checkpoint_every: int = 1000,
        checkpoint_interval_s: float = 10.0,
        index_every: int | None = None,
        index_interval_s: float | None = None,
        min_free_mb: float = DEFAULT_MIN_FREE_MB,
        published_head: Checkpoint | None = None,
        published_tree_head: str = "",
        workers: bool = False,
        attach: bool = False,
    ) -> None:
        self.path = db_path
        self._attached = attach
        self._clients: socket.socket | None = None
        self.keyring = keyring
        self.mirror_path = mirror_path_for(db_path)
        self.journal_path = journal_path_for(db_path)
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._settings = WriterSettings(
            checkpoint_every,
            checkpoint_interval_s,
            index_every=index_every,
            index_interval_s=index_interval_s,
            log_level=current_log_level(),
        )
        self.published_head = published_head  # the newest head published to the store (no rewind past it)
        self.published_tree_head = published_tree_head  # its tree head (JSON): the log must be consistent
        # The digest of the policy set the gateway serves: every record names it (``record.POLICY_SET_KEY``).
        self.policy_set = ""
        self.space = FreeSpace(db_path.parent, int(min_free_mb * MIB))
        self._keep()
        self._outage = Outage()  # since when and why appends are refused, and how many were
        self._lock = None if attach else WriterLock(db_path)
        try:
            self._store = SqliteAuditStore(db_path)
            self._mirror = CheckpointMirror(self.mirror_path)
            self._protector = SubjectProtector(keyring)
            if attach:
                self._writer = RemoteWriter.attach(self.clients_path, keyring, on_exit=self._writer_stopped)
            else:
                if workers:
                    self._clients = _listen(self.clients_path)
                self._restore_mirror()
                self._writer = self._start_writer()
        except BaseException:
            store: SqliteAuditStore | None = getattr(self, "_store", None)
            if store is not None:
                store.close()
            self._close_clients()
            if self._lock is not None:
                self._lock.release()
            raise

    @property
    def clients_path(self) -> Path:
        """Where the writer of a multi-process gateway listens for its workers."""
        return self.path.parent / SOCKET_NAME

    def _close_clients(self) -> None:
        if self._clients is not None:
            self._clients.close()
            self._clients = None
            with contextlib.suppress(OSError):
                _unix_call(self.clients_path, os.unlink)

    @classmethod
    def open(
        cls,
        data_dir: Path,
        *,
        checkpoint_every: int = 1000,
        checkpoint_interval_s: float = 10.0,
        file_name: str = DEFAULT_FILE_NAME,
        keys_dir: Path | None = None,
        index_every: int | None = None,
        index_interval_s: float | None = None,
        min_free_mb: float = DEFAULT_MIN_FREE_MB,
        published_head: Checkpoint | None = None,
        published_tree_head: str = "",
        crypto: str | None = None,
        keyring: KeyRing | None = None,
        workers: bool = False,
        attach: bool = False,
    ) -> AuditLog:
        """Open (creating the database and the keys on first use) the audit log in ``data_dir``.

        ``crypto`` names the crypto suite: a new key ring is made of it, an existing one must be of it
        (:class:`~.keys.SuiteMismatch` otherwise); None: the key ring's (international for a new one).
        ``keyring``: the key ring the caller already loaded (then ``keys_dir`` and ``crypto`` are unused).

        ``index_every`` and ``index_interval_s`` (tests only) say how often journaled records are
        copied into the database (default: every 1,000 records or 50 ms). ``min_free_mb`` is the
        free-space watermark (0: none); ``published_head`` the head last published to the store: the
        log must extend it, and every head it signed, or it does not open (:mod:`.heads`).
        ``workers``: its writer also takes the appends of this gateway's worker processes, which open
        the log with ``attach``.
        """
        data_dir.mkdir(parents=True, exist_ok=True)
        if keyring is None:
            keyring = KeyRing.load_or_create(keys_dir or data_dir / KEYS_DIR_NAME, crypto)
        return cls(
            data_dir / file_name,
            keyring,
            checkpoint_every=checkpoint_every,
            checkpoint_interval_s=checkpoint_interval_s,
            index_every=index_every,
            index_interval_s=index_interval_s,
            min_free_mb=min_free_mb,
            published_head=published_head,
            published_tree_head=published_tree_head,
            workers=workers,
            attach=attach,
        )

    # -- the writer process: started, watched, started again -----------------------------

    def _start_writer(self) -> RemoteWriter:
        store = EmbeddedStore(
            self.path, self.journal_path, self.mirror_path, self.published_head, self.published_tree_head
        )
        writer = RemoteWriter(
            store,
            self.keyring,
            self._settings,
            on_exit=self._writer_stopped,
            clients=self._clients,
        )
        if writer.cut is not None:
            offset, length = writer.cut
            detail = {
                "journal": self.journal_path.name,
                "offset": offset,
                "bytes": length,
                "why": "an unfinished write (a crash or a full disk); nothing in it was acknowledged",
            }
            try:
                self._append_system(writer, TAIL_CUT_OUTCOME, detail)
            except AuditError as error:  # the operational log still says what was cut
                log.error("audit_tail_cut_not_recorded", error=str(error), **detail)
        return writer

    def _append_system(self, writer: RemoteWriter, outcome: str, detail: dict[str, Any]) -> None:
        """A record of the log's own upkeep (kind ``admin``, caller ``system``), past the watermark."""
        event = AuditEvent(kind="admin", caller_id="system", outcome=outcome, detail=detail)
        writer.submit(self._prepare([event])).result()

    def _new_writer(self) -> RemoteWriter:
        if self._attached:  # the gateway's writer is being restarted: attach to the new one
            return RemoteWriter.attach(self.clients_path, self.keyring, on_exit=self._writer_stopped)
        self._restore_mirror()
        return self._start_writer()

    def _where(self) -> dict[str, str]:
        return {"db": str(self.path)}

    # -- availability ----------------------------------------------------------------

    def unavailable(self) -> str | None:
        """Why appends are refused now (None: they are taken): the writer is down or the disk nearly full."""
        return self._outage.seen(self._down or self.space.low() or self._writer.recent_failure())

    def sign_head(self) -> None:
        """Sign a checkpoint for the records no checkpoint covers yet (e.g. to publish it on stop)."""
        self._writer.flush(checkpoint=True)

    def extends(self, head: Checkpoint) -> str | None:
        """Why this log does not contain the record ``head`` signed (None: it does)."""
        self._writer.flush()
        view = LogView(self._store.tail().last_seq, self._store.record_hash, self._store.pruned_through())
        return extension_problem(view, Head(head, "the store"))

    def _admit(self) -> None:
        reason = self.unavailable()
        if reason is None:
            return
        self._outage.refused(reason)
        raise AuditUnavailable(reason)

    def note_available(self) -> bool:
        """Whether appends are taken again; if so and they were refused, record how many, and since when."""
        if self.unavailable() is not None:
            return False
        detail = self._outage.detail()
        if detail is None:
            return True
        log.warning("audit_available_again", refused=detail["refused"])
        self._append_system(self._writer, AVAILABLE_AGAIN, detail)
        self._outage.ended(detail)
        return True

    def _restore_mirror(self) -> None:
        """Copy checkpoints committed to the database but not yet mirrored (a crash in between)."""
        mirrored = self._mirror.identities()
        missing = [c for c in self._store.checkpoints() if c.identity not in mirrored]
        if missing:
            missing.sort(key=lambda checkpoint: checkpoint.at)
            self._mirror.append(missing)
            log.warning("audit_mirror_restored", checkpoints=len(missing))

    # -- appending -------------------------------------------------------------------

    async def _append(
        self, events: Iterable[AuditEvent], receipts_for: Sequence[int], announcement: Announcement | None
    ) -> tuple[list[int], list[str]]:
        try:
            self._admit()
        except AuditUnavailable:
            if announcement is not None:
                announcement.release()
            raise
        pending = self._prepare(events)
        if not pending:
            if announcement is not None:
                announcement.release()
            return [], []
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._writer.submit_to(waiter, pending, announcement, receipts_for)
        # A cancelled request cancels only this waiter: the writer process holds the record and writes it.
        outcome = await waiter
        if receipts_for:
            seqs, receipts = outcome
            return list(seqs), list(receipts)
        return outcome, []

    def append_many_sync(self, events: Iterable[AuditEvent]) -> list[int]:
        self._admit()
        pending = self._prepare(events)
        if not pending:
            return []
        seqs: list[int] = self._writer.submit(pending).result()
        return seqs

    # -- metrics ---------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Events waiting to be committed."""
        return self._writer.queue_depth

    @property
    def last_commit_latency_s(self) -> float:
        return self._writer.last_commit_latency_s

    @property
    def commits(self) -> int:
        """Transactions that wrote records (each holds every event pending when it started)."""
        return self._writer.commits

    @property
    def checkpoints_written(self) -> int:
        return self._writer.checkpoints_written

    @property
    def last_seq(self) -> int:
        return self._writer.last_seq

    # -- reading ---------------------------------------------------------------------

    def records(
        self, *, since_seq: int | None = None, until_seq: int | None = None, log_id: str | None = None
    ) -> Iterator[AuditRecord]:
        """Stored records in seq order, ``since_seq`` and ``until_seq`` inclusive. ``log_id`` (the
        PostgreSQL log's parameter, which holds every replica's log) must be None: this file holds only
        this replica's log."""
        if log_id is not None:
            raise ValueError(f"the embedded audit log holds only this replica's log, not log {log_id}")
        self._writer.flush()
        return self._store.records(since_seq=since_seq, until_seq=until_seq)

    # -- the auditor's reads: query and export (reading.FilteredReads) ---------------------

    def _settle(self) -> None:
        self._writer.flush()

    def _newest(self, criteria: AuditFilter, limit: int) -> list[AuditRecord]:
        return self._store.query(criteria, limit=limit)

    def _every(self, criteria: AuditFilter) -> Iterator[AuditRecord]:
        return self._store.matching(criteria)

    def reveal(
        self, seqs: Sequence[int], *, by: str = "unspecified", purpose: str = ""
    ) -> list[tuple[int, str | None]]:
        """The clear subject of each record (None: no such record, or no subject), in ``seqs`` order.

        The reveal itself is logged first (kind ``reveal``, caller ``by``, the seqs in its detail).
        Raises :class:`~.errors.AuditIntegrityError` if a ciphertext was altered.
        """
        seqs = [int(seq) for seq in seqs]
        self.append_sync(AuditEvent(kind="reveal", caller_id=by, purpose=purpose, detail={"seqs": seqs}))
        self._writer.flush()
        return self._revealed(seqs, self._store.records_by_seq(seqs))

    def count_by_caller(
        self, since: dt.datetime, *, kinds: Sequence[str], subject_kind: str
    ) -> dict[str, int]:
        """Successful records of ``kinds`` about ``subject_kind`` subjects since ``since``, by caller."""
        self._writer.flush()
        return self._store.count_by_caller(since, kinds=kinds, subject_kind=subject_kind)

    def checkpoints(self) -> list[Checkpoint]:
        self._writer.flush()
        return self._store.checkpoints()

    def latest_tree_head(self) -> TreeHead | None:
        """The newest signed tree head in the database (after indexing what is durable)."""
        self._writer.flush()
        return self._store.latest_tree_head()

    def tree_consistency(self, old_size: int, new_size: int) -> list[bytes]:
        """The consistency proof from the tree of ``old_size`` records to that of ``new_size``."""
        return self._store.tree_consistency(old_size, new_size, self.keyring.suite.public.hasher)

    def latest_checkpoint(self, kind: CheckpointKind) -> Checkpoint | None:
        """The checkpoint of ``kind`` with the highest seq, if there is one."""
        self._writer.flush()
        return self._store.latest_checkpoint(kind)

    def count(self) -> int:
        self._writer.flush()
        return self._store.count()

    def verify(self) -> VerifyReport:
        """Verify this log as an outsider would: the file read-only, with the public keys only."""
        self.sign_head()  # what is written so far gets its signed head first
        return verify_log(self.path, self.keyring.public_dir, mirror_path=self.mirror_path)

    # -- retention ---------------------------------------------------------------------

    def prune(self, before: dt.datetime, now: dt.datetime | None = None, *, by: str = "system") -> int:
        """Delete the records older than ``before`` (R14: only if ``before`` ≤ now − 3 years).

        Raises :class:`~.errors.RetentionError` (deleting nothing) otherwise. ``now`` may move the
        limit earlier than the clock, never later. Deletes the longest run of oldest records with
        ``at < before`` in one transaction, after checking it is intact, and leaves a signed prune
        checkpoint and an anchor so the remaining chain still verifies. Returns how many were deleted;
        the prune is itself logged (kind ``admin``).
        """
        clock = dt.datetime.now(dt.UTC)
        if before.tzinfo is None or (now is not None and now.tzinfo is None):
            raise ValueError("prune needs timezone-aware instants")
        check_prune_allowed(before, clock if now is None else min(now, clock))

        def sign(seq: int, record_hash: str) -> Checkpoint:
            key_id = self.keyring.current_id(KeyKind.SIGN)
            signer = self.keyring.signer(key_id)
            return sign_checkpoint(
                CheckpointKind.PRUNE, seq, record_hash, key_id=key_id, signer=signer, at=clock
            )

        self._writer.flush()
        result = self._store.prune(before, sign=sign, now=clock)
        if result is None:
            return 0
        self._mirror.append([result.checkpoint])
        log.info("audit_pruned", through_seq=result.through_seq, records=result.records_deleted)
        self.append_sync(
            AuditEvent(
                kind="admin",
                caller_id=by,
                outcome="audit.pruned",
                detail={
                    "action": "audit.prune",
                    "cut_off": format_instant(before),
                    "through_seq": result.through_seq,
                    "records_deleted": result.records_deleted,
                },
            )
        )
        return result.records_deleted

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Commit everything queued, write a final checkpoint, stop the writer, close the file."""
        self._stop_keeping()
        self._writer.close()
        self._store.close()
        self._close_clients()
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _unix_call(path: Path, call: Any) -> Any:
    """``call`` a Unix socket's path through its directory's descriptor: a socket's address may hold
    only 107 bytes, a data directory's path more."""
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        return call(f"/proc/self/fd/{directory}/{path.name}")
    finally:
        os.close(directory)


def _listen(path: Path) -> socket.socket:
    """The writer's listening socket for the workers, at ``path`` (a stale one, left by a gateway that
    was killed, is replaced: the data directory's lock says no other gateway uses it)."""
    with contextlib.suppress(FileNotFoundError):
        _unix_call(path, os.unlink)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _unix_call(path, listener.bind)
        listener.listen(64)
    except BaseException:
        listener.close()
        raise
    return listener
