"""The audit log on PostgreSQL: one database holds the log of every gateway replica of a deployment.

:class:`PostgresAuditLog` is the PostgreSQL backend of the audit log: the same calls as
:class:`~.audit_log.AuditLog` (the embedded backend). This replica appends to its own log (its log id
is its replica id) through :class:`~.postgres_writer.PostgresWriter`, committed before an answer
leaves. That writer runs in a process of its own, as the embedded backend's does
(:class:`~.remote_writer.RemoteWriter`, :mod:`.writer_process`), so that its work never holds the
gateway's interpreter lock; if that process dies, appends are refused (``AuditUnavailable``) until
another has started (:mod:`.writer_keeper`). Reads for auditors (query, export, statistics,
coverage, reveal, verify) cover every log in the database, naming each record by its log id and
seq (leaf index ``seq − 1``).

Retention (R14) drops whole month partitions older than the cut-off (at most now − 3 years), after
leaving, for each log whose oldest records go, a signed prune checkpoint and a prune anchor so that
the remaining records still verify (:meth:`PostgresAuditLog.prune`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog

from mustcheck.merkle import SHA256
from mustcheck.suites import PublicKey
from mustcheck.tree_head import TreeHead

from ..store.codec import format_instant
from . import tree as merkle_tree
from .appending import AppendFront
from .chain import ChainWalker
from .checkpoint import Checkpoint, CheckpointKind, sign_checkpoint
from .errors import AuditIntegrityError, AuditLogClosed, AuditUnavailable
from .keys import KeyKind, KeyRing, load_public_keys
from .outage import AVAILABLE_AGAIN, Outage
from .postgres_schema import (
    Connection,
    LogConnection,
    bind_log,
    migrate,
    month_end,
    partitions,
)
from .protect import SubjectProtector
from .query import AuditFilter
from .reading import FilteredReads
from .record import GENESIS_HASH, RECORD_COLUMNS, AuditEvent, AuditRecord
from .remote_writer import Announcement, PostgresStore, RemoteWriter, WriterSettings, current_log_level
from .retention import check_prune_allowed
from .sqlite_log import _where, read_prune_anchors
from .verify import TreeState, VerifyReport, verify_bound
from .writer_keeper import WriterKeeper

log = structlog.get_logger("mustcheck.audit")

PAGE_SIZE = 500
_SELECT = f"SELECT {', '.join(RECORD_COLUMNS)}, log_id FROM audit_log_records"


def _record(row: Sequence[Any]) -> AuditRecord:
    return dataclasses.replace(AuditRecord.from_row(row[:-1]), log_id=str(row[-1]))


def _pg(where: str) -> str:
    return where.replace("?", "%s")


@dataclass(frozen=True, slots=True)
class DroppedPartition:
    name: str
    month: dt.date


class PostgresAuditLog(WriterKeeper, FilteredReads, AppendFront):
    """This replica's audit log in the shared PostgreSQL database, and every replica's log for reading."""

    backend = "postgresql"
    _export_log_ids = True

    def __init__(
        self,
        url: str,
        log_id: str,
        keyring: KeyRing,
        *,
        checkpoint_every: int = 1000,
        checkpoint_interval_s: float = 10.0,
    ) -> None:
        self.url = url
        self.log_id = log_id
        self.keyring = keyring
        self.published_head: Checkpoint | None = None  # the embedded backend's; unused here
        self.published_tree_head = ""
        self.policy_set = ""  # the digest of the policy set served, named in every record (replay)
        self._protector = SubjectProtector(keyring)
        self._local = threading.local()
        self._readers: list[Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._outage = Outage()  # since when and why appends are refused, and how many were
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as connection:
            migrate(connection)
        self._settings = WriterSettings(
            checkpoint_every, checkpoint_interval_s, log_level=current_log_level()
        )
        self._keep()
        self._writer = self._new_writer()

    # -- the writer process (writer_keeper.WriterKeeper) ------------------------------------

    def _new_writer(self) -> RemoteWriter:
        return RemoteWriter(
            PostgresStore(self.url, self.log_id), self.keyring, self._settings, on_exit=self._writer_stopped
        )

    def _append_system(self, writer: RemoteWriter, outcome: str, detail: dict[str, Any]) -> None:
        event = AuditEvent(kind="admin", caller_id="system", outcome=outcome, detail=detail)
        writer.submit(self._prepare([event])).result()

    def _where(self) -> dict[str, str]:
        return {"log_id": self.log_id}

    @property
    def writer_pid(self) -> int | None:
        """The process id of this log's writer process (None: none is running)."""
        return self._writer.pid

    # -- connections for reading ------------------------------------------------------------

    def _reader(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.broken:
            connection = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            bind_log(connection, self.log_id)
            self._local.connection = connection
            self._local.bound = self.log_id
            with self._readers_lock:
                self._readers.append(connection)
        return connection

    def _bound(self, log_id: str) -> LogConnection:
        """A reader that sees ``log_id``'s log under the embedded table names."""
        connection = self._reader()
        if log_id != getattr(self._local, "bound", self.log_id):
            bind_log(connection, log_id)
        self._local.bound = log_id
        return LogConnection(connection)

    def log_ids(self) -> list[str]:
        """Every log in the database (one per replica that ever wrote), in id order."""
        rows = self._reader().execute("SELECT log_id FROM audit_logs ORDER BY log_id").fetchall()
        return [str(row[0]) for row in rows]

    # -- availability ---------------------------------------------------------------------

    def unavailable(self) -> str | None:
        """Why appends are refused now (None: they are taken): the last commit failed a moment ago."""
        if self._closed:
            return "the audit log is closed"
        return self._outage.seen(self._down_reason() or self._writer.recent_failure())

    def note_available(self) -> bool:
        """Whether appends are taken again; if so and they were refused, record the outage (since when,
        why, how many refused) as the embedded log does. ``AuditUnavailable`` if that record cannot be
        committed after all (the outage is kept and recorded at the next try)."""
        if self.unavailable() is not None:
            return False
        detail = self._outage.detail()
        if detail is None:
            return True
        self._append_system(self._writer, AVAILABLE_AGAIN, detail)
        self._outage.ended(detail)
        log.warning("audit_available_again", log_id=self.log_id, refused=detail["refused"])
        return True

    # -- appending --------------------------------------------------------------------------

    def _admit(self) -> None:
        if self._closed:
            raise AuditLogClosed("the audit log is closed")
        reason = self.unavailable()
        if reason is not None:
            self._outage.refused(reason)
            raise AuditUnavailable(reason)

    async def _append(
        self, events: Iterable[AuditEvent], receipts_for: Sequence[int], announcement: Announcement | None
    ) -> tuple[list[int], list[str]]:
        try:
            self._admit()
            pending = self._prepare(events)
        except BaseException:
            if announcement is not None:
                announcement.release()
            raise
        if not pending:
            if announcement is not None:
                announcement.release()
            return [], []
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            self._writer.submit_to(waiter, pending, announcement, receipts_for)
            # A cancelled request cancels only this waiter: the writer process holds the record and writes it.
            outcome = await waiter
        except AuditUnavailable as error:  # its commit failed, or the writer process is gone: refused
            self._outage.refused(str(error))
            raise
        if receipts_for:
            seqs, receipts = outcome
            return list(seqs), list(receipts)
        return list(outcome), []

    def append_many_sync(self, events: Iterable[AuditEvent]) -> list[int]:
        self._admit()
        pending = self._prepare(events)
        if not pending:
            return []
        seqs: list[int] = self._writer.submit(pending).result()
        return seqs

    # -- metrics ---------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return self._writer.queue_depth

    @property
    def last_commit_latency_s(self) -> float:
        return self._writer.last_commit_latency_s

    @property
    def commits(self) -> int:
        return self._writer.commits

    @property
    def checkpoints_written(self) -> int:
        return self._writer.checkpoints_written

    @property
    def last_seq(self) -> int:
        return self._writer.last_seq

    # -- this log's heads -------------------------------------------------------------------

    def sign_head(self) -> None:
        """Sign a chain checkpoint for the records none covers yet."""
        if self._closed:
            return
        self._writer.flush(checkpoint=True)

    def extends(self, head: Checkpoint) -> str | None:
        return None  # heads live in this database, beside the records: nothing published elsewhere

    def checkpoints(self, log_id: str | None = None) -> list[Checkpoint]:
        from .sqlite_log import read_checkpoints

        return read_checkpoints(self._bound(log_id or self.log_id))  # type: ignore[arg-type]

    def latest_tree_head(self, log_id: str | None = None) -> TreeHead | None:
        return merkle_tree.latest_head(self._bound(log_id or self.log_id))  # type: ignore[arg-type]

    def latest_checkpoint(self, kind: CheckpointKind) -> Checkpoint | None:
        found = [c for c in self.checkpoints() if c.kind is kind]
        return max(found, key=lambda c: c.seq) if found else None

    def tree_consistency(self, old_size: int, new_size: int, log_id: str | None = None) -> list[bytes]:
        if old_size in (0, new_size):
            return []
        stored = merkle_tree.stored_tree(self._bound(log_id or self.log_id), SHA256)  # type: ignore[arg-type]
        return stored.consistency(old_size, new_size)

    def prove(self, seq: int, log_id: str | None = None) -> tuple[bytes, list[bytes], TreeHead] | None:
        """Record ``seq``'s leaf hash, its inclusion proof and the newest tree head of its log (None:
        no such record under a head)."""
        reader = self._bound(log_id or self.log_id)
        head = merkle_tree.latest_head(reader)  # type: ignore[arg-type]
        if head is None or not 1 <= seq <= head.size:
            return None
        row = reader.execute(
            f"SELECT {', '.join(RECORD_COLUMNS)} FROM audit_records WHERE seq = ?", (seq,)
        ).fetchone()
        if row is None:
            return None
        stored = merkle_tree.stored_tree(reader, SHA256)  # type: ignore[arg-type]
        return merkle_tree.record_leaf(SHA256, row), stored.inclusion(seq - 1, head.size), head

    # -- reading every log --------------------------------------------------------------------

    def records(
        self, *, since_seq: int | None = None, until_seq: int | None = None, log_id: str | None = None
    ) -> Iterator[AuditRecord]:
        """One log's records (default: this replica's) in seq order."""
        from .sqlite_log import iter_rows

        wanted = log_id or self.log_id
        after = 0 if since_seq is None else since_seq - 1
        rows = list(iter_rows(self._bound(wanted), after_seq=after, until_seq=until_seq))  # type: ignore[arg-type]
        for row in rows:
            yield _record((*row, wanted))

    # -- the auditor's reads: query and export (reading.FilteredReads) ---------------------

    def _newest(self, criteria: AuditFilter, limit: int) -> list[AuditRecord]:
        """The newest ``limit`` matching records of every log (by time), oldest first."""
        where, parameters = _where(criteria)
        rows = (
            self._reader()
            .execute(
                f"{_SELECT}{_pg(where)} ORDER BY at DESC, log_id DESC, seq DESC LIMIT %s",
                (*parameters, limit),
            )
            .fetchall()
        )
        return [_record(row) for row in reversed(rows)]

    def _every(self, criteria: AuditFilter) -> Iterator[AuditRecord]:
        """Every matching record of every log, by log then seq, a page at a time."""
        where, parameters = _where(criteria)
        joiner = " AND " if where else " WHERE "
        last = ("", 0)
        while True:
            rows = (
                self._reader()
                .execute(
                    f"{_SELECT}{_pg(where)}{joiner}(log_id, seq) > (%s, %s) ORDER BY log_id, seq LIMIT %s",
                    (*parameters, *last, PAGE_SIZE),
                )
                .fetchall()
            )
            for row in rows:
                yield _record(row)
            if len(rows) < PAGE_SIZE:
                return
            last = (str(rows[-1][-1]), int(rows[-1][0]))

    def reveal(
        self, seqs: Sequence[int], *, by: str = "unspecified", purpose: str = "", log_id: str | None = None
    ) -> list[tuple[int, str | None]]:
        """The clear subjects of records ``seqs`` of log ``log_id`` (default: this replica's); the reveal
        is logged first."""
        wanted = log_id or self.log_id
        seqs = [int(seq) for seq in seqs]
        self.append_sync(
            AuditEvent(kind="reveal", caller_id=by, purpose=purpose, detail={"log_id": wanted, "seqs": seqs})
        )
        rows = (
            self._reader()
            .execute(f"{_SELECT} WHERE log_id = %s AND seq = ANY(%s)", (wanted, seqs))
            .fetchall()
        )
        return self._revealed(seqs, {int(row[0]): _record(row) for row in rows})

    def count_by_caller(
        self, since: dt.datetime, *, kinds: Sequence[str], subject_kind: str
    ) -> dict[str, int]:
        """Successful records of ``kinds`` about ``subject_kind`` subjects since ``since``, by caller,
        over every replica's log (a person quota is the deployment's)."""
        rows = self._reader().execute(
            "SELECT caller_id, COUNT(*) FROM audit_log_records WHERE at >= %s AND kind = ANY(%s) "
            "AND subject_kind = %s AND status = 'OK' GROUP BY caller_id",
            (format_instant(since), list(kinds), subject_kind),
        )
        return {str(caller_id): int(count) for caller_id, count in rows}

    def count(self) -> int:
        row = self._reader().execute("SELECT COUNT(*) FROM audit_log_records").fetchone()
        return int(row[0]) if row else 0

    # -- verification -------------------------------------------------------------------------

    def verify_all(self, *, heads: Sequence[tuple[TreeHead, str]] = ()) -> list[tuple[str, VerifyReport]]:
        return verify_logs(self.url, load_public_keys(self.keyring.public_dir), heads=heads)

    def verify(self) -> VerifyReport:
        """Verify every replica's log; the first one that fails is reported (with its log id)."""
        self.sign_head()
        return combined(self.verify_all())

    # -- retention ------------------------------------------------------------------------------

    def prune(self, before: dt.datetime, now: dt.datetime | None = None, *, by: str = "system") -> int:
        """Drop the month partitions that hold only records older than ``before`` (R14: ``before`` ≤
        now − 3 years, else :class:`~.errors.RetentionError`, dropping nothing). Returns the records
        dropped; the prune is itself logged."""
        clock = dt.datetime.now(dt.UTC)
        if before.tzinfo is None or (now is not None and now.tzinfo is None):
            raise ValueError("prune needs timezone-aware instants")
        check_prune_allowed(before, clock if now is None else min(now, clock))
        dropped, deleted = prune_partitions(self.url, self.keyring, before, clock)
        if not dropped:
            return 0
        log.info("audit_partitions_dropped", partitions=[p.name for p in dropped], records=deleted)
        self.append_sync(
            AuditEvent(
                kind="admin",
                caller_id=by,
                outcome="audit.pruned",
                detail={
                    "action": "audit.prune",
                    "cut_off": format_instant(before),
                    "partitions": [p.name for p in dropped],
                    "records_deleted": deleted,
                },
            )
        )
        return deleted

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._stop_keeping()
        self._writer.close()  # the writer process commits everything sent, signs a checkpoint, stops
        self._closed = True
        with self._readers_lock:
            for connection in self._readers:
                connection.close()
            self._readers.clear()

    def __enter__(self) -> PostgresAuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def verify_one(
    url: str,
    log_id: str,
    public_keys: Mapping[str, PublicKey],
    *,
    heads: Sequence[tuple[TreeHead, str]] = (),
    state: TreeState | None = None,
) -> VerifyReport:
    """Verify one log in one snapshot, against the tree ``heads`` an auditor holds for it."""
    connection = psycopg.connect(url, autocommit=True, connect_timeout=10)
    try:
        bind_log(connection, log_id)
        connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return verify_bound(
            LogConnection(connection),
            public_keys,
            log_id=log_id,
            heads=heads,
            state=state,
            database_error=psycopg.Error,
        )
    finally:
        connection.close()


def newest_tree_heads(url: str) -> list[tuple[str, TreeHead | None]]:
    """Every log in the database (by log id) and its newest signed tree head (None: none signed yet).
    Empty when the database holds no audit log (its audit tables were never made)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as connection:
        found = connection.execute("SELECT to_regclass('audit_log_tree_heads')").fetchone()
        if found is None or found[0] is None:
            return []
        ids = [str(row[0]) for row in connection.execute("SELECT log_id FROM audit_logs ORDER BY log_id")]
        newest = {
            str(log_id): TreeHead.from_json(str(head))
            for log_id, head in connection.execute(
                "SELECT DISTINCT ON (log_id) log_id, head FROM audit_log_tree_heads "
                "ORDER BY log_id, size DESC, at DESC"
            )
        }
    return [(log_id, newest.get(log_id)) for log_id in sorted(set(ids) | set(newest))]


def verify_logs(
    url: str,
    public_keys: Mapping[str, PublicKey],
    *,
    heads: Sequence[tuple[TreeHead, str]] = (),
    states: Mapping[str, TreeState] | None = None,
) -> list[tuple[str, VerifyReport]]:
    """Every log in the database, verified; ``heads`` (e.g. from receipts) go to the log they name.
    A head that names a log the database does not hold is reported as a missing log. A log with one of
    ``states`` (the last verified head an auditor kept, by log id) is verified incrementally from it."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as connection:
        ids = [str(row[0]) for row in connection.execute("SELECT log_id FROM audit_logs ORDER BY log_id")]
    kept = states or {}
    results = [
        (
            log_id,
            verify_one(
                url,
                log_id,
                public_keys,
                heads=[(h, s) for h, s in heads if h.log_id == log_id],
                state=kept.get(log_id),
            ),
        )
        for log_id in ids
    ]
    for log_id, state in kept.items():
        if log_id not in ids:
            reason = (
                f"the verification state names the log {log_id}, verified through record {state.size}, but "
                "the database holds no such log (deleted)"
            )
            results.append((log_id, VerifyReport(False, 0, 0, 0, problem_seq=1, reason=reason)))
    for head, source in heads:
        if head.log_id not in ids:
            reason = (
                f"{source} names the log {head.log_id} with {head.size} records, but the database holds "
                "no such log (deleted)"
            )
            results.append((head.log_id, VerifyReport(False, 0, 0, 0, problem_seq=1, reason=reason)))
    return results


def combined(reports: Sequence[tuple[str, VerifyReport]]) -> VerifyReport:
    """One verdict over several logs: the first failure (naming its log), else the sums."""
    for log_id, report in reports:
        if not report.ok:
            return VerifyReport(
                False,
                report.records_checked,
                report.checkpoints_checked,
                0,
                problem_seq=report.problem_seq,
                reason=f"log {log_id}: {report.reason}",
                tree_heads_checked=report.tree_heads_checked,
            )
    return VerifyReport(
        True,
        sum(r.records_checked for _, r in reports),
        sum(r.checkpoints_checked for _, r in reports),
        0,
        tree_heads_checked=sum(r.tree_heads_checked for _, r in reports),
    )


def prune_partitions(
    url: str, keyring: KeyRing, cut_off: dt.datetime, now: dt.datetime
) -> tuple[list[DroppedPartition], int]:
    """Drop, in one transaction, every record partition whose month ends at or before ``cut_off``.

    Retention must have been checked by the caller. For each log with records in them, the records
    dropped must be the oldest of that log (a prefix of its chain, checked intact); a signed prune
    checkpoint and a prune anchor at its last dropped record keep the rest verifiable.
    """
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as connection:
        old = [
            DroppedPartition(name, month)
            for name, month in partitions(connection)
            if month_end(month) <= cut_off
        ]
        if not old:
            return [], 0
        deleted = 0
        with connection.transaction():
            names = [p.name for p in old]
            for name in names:  # no writer adds to them while they are checked and dropped
                connection.execute(f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE")
            union = " UNION ALL ".join(f"SELECT log_id, seq FROM {name}" for name in names)
            spans = connection.execute(
                f"SELECT log_id, MIN(seq), MAX(seq), COUNT(*) FROM ({union}) dropped GROUP BY log_id"
            ).fetchall()
            for log_id, _first, last, count in spans:
                deleted += int(count)
                _anchor(connection, keyring, str(log_id), int(last), names, cut_off, now)
            for name in names:
                connection.execute(f"DROP TABLE {name}")
        return old, deleted


def _anchor(
    connection: Connection,
    keyring: KeyRing,
    log_id: str,
    through: int,
    dropped: Sequence[str],
    cut_off: dt.datetime,
    now: dt.datetime,
) -> None:
    """Check that log ``log_id``'s records up to ``through`` are all in the partitions to drop and
    intact, then sign a prune checkpoint and store a prune anchor there."""
    young = " UNION ALL ".join(f"SELECT seq FROM {name} WHERE log_id = %s" for name in dropped)
    in_dropped = connection.execute(
        f"SELECT COUNT(*) FROM ({young}) d WHERE seq <= %s",
        (*([log_id] * len(dropped)), through),
    ).fetchone()
    bind_log(connection, log_id)
    reader = LogConnection(connection)
    anchors = read_prune_anchors(reader)  # type: ignore[arg-type]
    start_seq, start_hash = (anchors[-1].seq, anchors[-1].record_hash) if anchors else (0, GENESIS_HASH)
    if in_dropped is None or int(in_dropped[0]) != through - start_seq:
        raise AuditIntegrityError(
            f"refusing to prune log {log_id}: records up to {through} are not all in the partitions "
            "older than the cut-off (a record with an older time follows younger ones); nothing was dropped"
        )
    from .sqlite_log import iter_rows

    walker = ChainWalker(after_seq=start_seq, after_hash=start_hash)
    for row in iter_rows(reader, after_seq=start_seq, until_seq=through):  # type: ignore[arg-type]
        problem = walker.step(AuditRecord.from_row(row))
        if problem is not None:
            raise AuditIntegrityError(f"refusing to prune log {log_id}, which does not verify: {problem}")
    if walker.last_seq != through:
        raise AuditIntegrityError(f"refusing to prune log {log_id}: records up to {through} are missing")
    key_id = keyring.current_id(KeyKind.SIGN)
    checkpoint = sign_checkpoint(
        CheckpointKind.PRUNE, through, walker.last_hash, key_id=key_id, signer=keyring.signer(key_id), at=now
    )
    connection.execute(
        "INSERT INTO audit_log_checkpoints (log_id, kind, seq, record_hash, at, key_id, signature) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (log_id, *checkpoint.to_row()),
    )
    connection.execute(
        "INSERT INTO audit_log_prune_anchors (log_id, seq, record_hash, cut_off, pruned_at, records_deleted) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (log_id, through, walker.last_hash, format_instant(cut_off), format_instant(now), walker.checked),
    )
