"""The audit log on one SQLite file (``DATA_DIR/audit.sqlite3``), separate from the list store.

WAL mode with ``PRAGMA synchronous=FULL``: a commit is on disk when it returns. Reads use one
connection per thread; the group-commit writer owns its own connection; every write runs in one
``BEGIN IMMEDIATE`` transaction. Everything SQLite-specific about the audit log lives here.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mustcheck.merkle import TreeHasher
from mustcheck.tree_head import TreeHead

from ..store.codec import format_instant, parse_instant
from ..store.migrations import apply_migrations
from ..store.sqlite_connections import ThreadConnections, consistent_read, transaction
from . import tree
from .chain import ChainWalker
from .checkpoint import CHECKPOINT_COLUMNS, Checkpoint, CheckpointKind
from .errors import AuditIntegrityError
from .query import AuditFilter
from .record import GENESIS_HASH, RECORD_COLUMNS, AuditRecord
from .schema import MIGRATIONS

PAGE_SIZE = 500
_RECORD_SELECT = f"SELECT {', '.join(RECORD_COLUMNS)} FROM audit_records"
_MARKS = ", ".join("?" for _ in RECORD_COLUMNS)
_RECORD_INSERT = f"INSERT INTO audit_records ({', '.join(RECORD_COLUMNS)}) VALUES ({_MARKS})"
_CHECKPOINT_SELECT = f"SELECT {', '.join(CHECKPOINT_COLUMNS)} FROM audit_checkpoints"
_CHECKPOINT_INSERT = (
    f"INSERT INTO audit_checkpoints ({', '.join(CHECKPOINT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in CHECKPOINT_COLUMNS)})"
)


@dataclass(frozen=True, slots=True)
class PruneAnchor:
    """Where the remaining chain starts after a prune: the last deleted record's seq and hash."""

    seq: int
    record_hash: str
    cut_off: dt.datetime
    pruned_at: dt.datetime
    records_deleted: int


@dataclass(frozen=True, slots=True)
class ChainTail:
    """What a writer continues from: the last record (or anchor, or genesis) and checkpoint coverage."""

    last_seq: int
    last_hash: str
    covered_seq: int  # highest seq a checkpoint (or prune) covers


@dataclass(frozen=True, slots=True)
class PruneResult:
    through_seq: int
    records_deleted: int
    checkpoint: Checkpoint


# -- connections -----------------------------------------------------------------


def connect(path: Path) -> sqlite3.Connection:
    """A writable connection: WAL, synchronous=FULL, autocommit (transactions are explicit)."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``): verification never writes to the file it checks."""
    if not path.is_file():
        raise FileNotFoundError(f"no audit database at {path}")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=30)


# -- reads on any connection -------------------------------------------------------


def read_checkpoints(connection: sqlite3.Connection) -> list[Checkpoint]:
    rows = connection.execute(f"{_CHECKPOINT_SELECT} ORDER BY seq, kind").fetchall()
    return [Checkpoint.from_row(tuple(row)) for row in rows]


def read_prune_anchors(connection: sqlite3.Connection) -> list[PruneAnchor]:
    rows = connection.execute(
        "SELECT seq, record_hash, cut_off, pruned_at, records_deleted FROM audit_prune_anchors ORDER BY seq"
    ).fetchall()
    return [
        PruneAnchor(int(seq), str(hashed), parse_instant(cut_off), parse_instant(pruned_at), int(deleted))
        for seq, hashed, cut_off, pruned_at, deleted in rows
    ]


def iter_rows(
    connection: sqlite3.Connection, *, after_seq: int = 0, until_seq: int | None = None
) -> Iterator[tuple[Any, ...]]:
    """Raw record rows in seq order, a page at a time (callers decide how to read a bad row)."""
    last = after_seq
    while True:
        if until_seq is None:
            rows = connection.execute(
                f"{_RECORD_SELECT} WHERE seq > ? ORDER BY seq LIMIT ?", (last, PAGE_SIZE)
            ).fetchall()
        else:
            rows = connection.execute(
                f"{_RECORD_SELECT} WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (last, until_seq, PAGE_SIZE),
            ).fetchall()
        yield from rows
        if len(rows) < PAGE_SIZE:
            return
        last = int(rows[-1][0])


def count_records(connection: sqlite3.Connection) -> int:
    return int(connection.execute("SELECT COUNT(*) FROM audit_records").fetchone()[0])


def read_tail(connection: sqlite3.Connection) -> ChainTail:
    row = connection.execute(
        "SELECT seq, record_hash FROM audit_records ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    anchors = read_prune_anchors(connection)
    anchor = anchors[-1] if anchors else None
    if row is not None:
        last_seq, last_hash = int(row[0]), str(row[1])
    elif anchor is not None:
        last_seq, last_hash = anchor.seq, anchor.record_hash
    else:
        last_seq, last_hash = 0, GENESIS_HASH
    covered = connection.execute("SELECT MAX(seq) FROM audit_checkpoints").fetchone()[0]
    return ChainTail(last_seq, last_hash, max(int(covered or 0), anchor.seq if anchor else 0))


def _where(criteria: AuditFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    parameters: list[Any] = []
    if criteria.since is not None:
        clauses.append("at >= ?")
        parameters.append(format_instant(criteria.since))
    if criteria.until is not None:
        clauses.append("at < ?")
        parameters.append(format_instant(criteria.until))
    if criteria.before_seq is not None:
        clauses.append("seq < ?")
        parameters.append(criteria.before_seq)
    for column in ("caller_id", "department", "matter", "outcome", "kind"):
        value = getattr(criteria, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            parameters.append(value)
    if criteria.subject_hashes is not None:
        if not criteria.subject_hashes:
            clauses.append("1 = 0")
        else:
            clauses.append(
                "("
                + " OR ".join("(subject_hash = ? AND hmac_key_id = ?)" for _ in criteria.subject_hashes)
                + ")"
            )
            for key_id, hashed in criteria.subject_hashes:
                parameters.extend((hashed, key_id))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", parameters


# -- the store ---------------------------------------------------------------------


class SqliteAuditStore:
    """Storage of the audit log: schema, reads for auditors, and the prune transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connections = ThreadConnections(lambda: connect(self.path))
        self.migrate()

    def connect(self) -> sqlite3.Connection:
        """A new writable connection of the caller's own (the writer keeps one)."""
        return self._connections.open()

    def _reader(self) -> sqlite3.Connection:
        return self._connections.current()

    def close(self) -> None:
        self._connections.close()

    # -- schema ------------------------------------------------------------------

    def migrate(self) -> int:
        with transaction(self._reader()) as connection:
            return apply_migrations(connection, MIGRATIONS)

    def schema_version(self) -> int:
        row = self._reader().execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    # -- writes (the writer's connection) -----------------------------------------

    @staticmethod
    def insert(
        connection: sqlite3.Connection, records: Iterable[AuditRecord], checkpoints: Iterable[Checkpoint]
    ) -> None:
        """Insert within the caller's transaction."""
        SqliteAuditStore.insert_rows(connection, [record.to_row() for record in records], checkpoints)

    @staticmethod
    def insert_rows(
        connection: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], checkpoints: Iterable[Checkpoint]
    ) -> None:
        """Insert rows already in :data:`RECORD_COLUMNS` order, within the caller's transaction."""
        if rows:
            connection.executemany(_RECORD_INSERT, rows)
        for checkpoint in checkpoints:
            connection.execute(_CHECKPOINT_INSERT, checkpoint.to_row())

    def tail(self) -> ChainTail:
        with consistent_read(self._reader()) as connection:
            return read_tail(connection)

    # -- reads ---------------------------------------------------------------------

    def records(self, *, since_seq: int | None = None, until_seq: int | None = None) -> Iterator[AuditRecord]:
        after = 0 if since_seq is None else since_seq - 1
        for row in iter_rows(self._reader(), after_seq=after, until_seq=until_seq):
            yield AuditRecord.from_row(row)

    def query(self, criteria: AuditFilter, *, limit: int) -> list[AuditRecord]:
        """The newest ``limit`` matching records, oldest first."""
        where, parameters = _where(criteria)
        rows = (
            self._reader()
            .execute(f"{_RECORD_SELECT}{where} ORDER BY seq DESC LIMIT ?", (*parameters, limit))
            .fetchall()
        )
        return [AuditRecord.from_row(row) for row in reversed(rows)]

    def matching(self, criteria: AuditFilter) -> Iterator[AuditRecord]:
        """Every matching record in seq order, a page at a time."""
        where, parameters = _where(criteria)
        joiner = " AND " if where else " WHERE "
        last = 0
        while True:
            rows = (
                self._reader()
                .execute(
                    f"{_RECORD_SELECT}{where}{joiner}seq > ? ORDER BY seq LIMIT ?",
                    (*parameters, last, PAGE_SIZE),
                )
                .fetchall()
            )
            for row in rows:
                yield AuditRecord.from_row(row)
            if len(rows) < PAGE_SIZE:
                return
            last = int(rows[-1][0])

    def count_by_caller(
        self, since: dt.datetime, *, kinds: Sequence[str], subject_kind: str
    ) -> dict[str, int]:
        """Successful records of ``kinds`` about ``subject_kind`` subjects since ``since``, by caller."""
        marks = ", ".join("?" for _ in kinds)
        rows = self._reader().execute(
            f"SELECT caller_id, COUNT(*) FROM audit_records WHERE at >= ? AND kind IN ({marks}) "
            "AND subject_kind = ? AND status = 'OK' GROUP BY caller_id",
            (format_instant(since), *kinds, subject_kind),
        )
        return {caller_id: int(count) for caller_id, count in rows}

    def records_by_seq(self, seqs: Sequence[int]) -> dict[int, AuditRecord]:
        found: dict[int, AuditRecord] = {}
        wanted = sorted(set(seqs))
        for start in range(0, len(wanted), PAGE_SIZE):
            chunk = wanted[start : start + PAGE_SIZE]
            marks = ", ".join("?" for _ in chunk)
            for row in self._reader().execute(f"{_RECORD_SELECT} WHERE seq IN ({marks})", chunk):
                record = AuditRecord.from_row(row)
                found[record.seq] = record
        return found

    def checkpoints(self) -> list[Checkpoint]:
        return read_checkpoints(self._reader())

    def record_hash(self, seq: int) -> str | None:
        row = self._reader().execute("SELECT record_hash FROM audit_records WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else str(row[0])

    def pruned_through(self) -> int:
        """The seq of the last record a prune deleted (0: none)."""
        anchors = read_prune_anchors(self._reader())
        return anchors[-1].seq if anchors else 0

    def latest_tree_head(self) -> TreeHead | None:
        return tree.latest_head(self._reader())

    def tree_consistency(self, old_size: int, new_size: int, hasher: TreeHasher) -> list[bytes]:
        """The consistency proof between two sizes of the stored tree (``LookupError`` if not stored)."""
        if old_size in (0, new_size):
            return []
        return tree.stored_tree(self._reader(), hasher).consistency(old_size, new_size)

    def latest_checkpoint(self, kind: CheckpointKind) -> Checkpoint | None:
        row = (
            self._reader()
            .execute(f"{_CHECKPOINT_SELECT} WHERE kind = ? ORDER BY seq DESC LIMIT 1", (kind.value,))
            .fetchone()
        )
        return Checkpoint.from_row(tuple(row)) if row is not None else None

    def count(self) -> int:
        return count_records(self._reader())

    # -- pruning -------------------------------------------------------------------

    def prune(
        self, cut_off: dt.datetime, *, sign: Callable[[int, str], Checkpoint], now: dt.datetime
    ) -> PruneResult | None:
        """Delete, in one transaction, the longest prefix of the chain whose records are all older than
        ``cut_off``, after checking that prefix is intact; sign a prune checkpoint for its last record and
        store a prune anchor there. Retention must have been checked by the caller. None if nothing to do.
        """
        with transaction(self._reader()) as connection:
            anchors = read_prune_anchors(connection)
            anchor = anchors[-1] if anchors else None
            start_seq, start_hash = (anchor.seq, anchor.record_hash) if anchor else (0, GENESIS_HASH)
            first_young = connection.execute(
                "SELECT MIN(seq) FROM audit_records WHERE at >= ?", (format_instant(cut_off),)
            ).fetchone()[0]
            if first_young is not None:
                through = int(first_young) - 1
            else:
                through = int(connection.execute("SELECT MAX(seq) FROM audit_records").fetchone()[0] or 0)
            if through <= start_seq:
                return None
            walker = ChainWalker(after_seq=start_seq, after_hash=start_hash)
            for row in iter_rows(connection, after_seq=start_seq, until_seq=through):
                problem = walker.step(AuditRecord.from_row(row))
                if problem is not None:
                    raise AuditIntegrityError(f"refusing to prune a log that does not verify: {problem}")
            if walker.last_seq != through:
                raise AuditIntegrityError(f"refusing to prune: records up to {through} are missing")
            checkpoint = sign(through, walker.last_hash)
            self.insert(connection, (), (checkpoint,))
            connection.execute(
                "INSERT INTO audit_prune_anchors (seq, record_hash, cut_off, pruned_at, records_deleted) "
                "VALUES (?, ?, ?, ?, ?)",
                (through, walker.last_hash, format_instant(cut_off), format_instant(now), walker.checked),
            )
            connection.execute("DELETE FROM audit_records WHERE seq <= ?", (through,))
            return PruneResult(through, walker.checked, checkpoint)
