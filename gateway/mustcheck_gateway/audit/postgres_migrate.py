"""Move an embedded audit log (a data directory's files) into the shared PostgreSQL database, proofs intact.

The log keeps its log id (the data directory's replica id), its seqs, records, checkpoints, prune
anchors, tree nodes and signed tree heads exactly as they are: the tree over the same records is the
same tree, so every receipt issued before the move still proves its record against the moved log, and
the replica continues the same log on PostgreSQL. The embedded log is settled first (its journal
replayed into the index, its tree caught up, a final head signed: what a gateway's start and stop do)
and verified; the copy is one transaction, and the moved log is verified in the database before the
command reports success. The data directory's files are left as they were (a backup).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ..chain_heads import read_replica_id
from ..store.codec import parse_instant
from ..store.urls import redacted
from .audit_log import DEFAULT_FILE_NAME, KEYS_DIR_NAME, AuditLog, verify_data_dir
from .checkpoint import CHECKPOINT_COLUMNS
from .errors import AuditError, AuditIntegrityError
from .keys import load_public_keys
from .postgres_log import verify_one
from .postgres_schema import ensure_partitions, migrate, month_of
from .postgres_writer import log_lock_key
from .record import RECORD_COLUMNS
from .sqlite_log import connect_read_only

PAGE = 5000


@dataclass(frozen=True, slots=True)
class MovedLog:
    log_id: str
    records: int
    checkpoints: int
    tree_heads: int


def move_audit_log(
    data_dir: Path, url: str, *, progress: Callable[[str, int], None] | None = None
) -> MovedLog:
    """Copy the embedded audit log of ``data_dir`` into the database at ``url`` (see the module)."""
    log_id = read_replica_id(data_dir)
    database = data_dir / DEFAULT_FILE_NAME
    if log_id is None or not database.is_file():
        raise AuditError(f"{data_dir} holds no audit log of a gateway (no {DEFAULT_FILE_NAME} or replica.id)")
    AuditLog.open(data_dir).close()  # journal replayed, tree caught up, everything under a signed head
    verdict = verify_data_dir(data_dir)
    if not verdict.ok:
        raise AuditIntegrityError(f"the audit log in {data_dir} is TAMPERED: {verdict.reason}")
    source = connect_read_only(database)
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as target:
            migrate(target)
            months = {
                month_of(parse_instant(str(at)))
                for (at,) in source.execute(
                    "SELECT DISTINCT substr(at, 1, 7) || '-01T00:00:00+00:00' FROM audit_records"
                )
            }
            ensure_partitions(target, months)
            with target.transaction(), target.cursor() as cursor:
                taken = cursor.execute(
                    "SELECT pg_try_advisory_xact_lock(%s)", (log_lock_key(log_id),)
                ).fetchone()
                if not taken or not taken[0]:
                    raise AuditError(
                        f"a gateway is writing the log {log_id} in {redacted(url)}: stop it first"
                    )
                existing = cursor.execute(
                    "SELECT COUNT(*) FROM audit_logs WHERE log_id = %s", (log_id,)
                ).fetchone()
                if existing and int(existing[0]):
                    raise AuditError(
                        f"{redacted(url)} already holds the audit log {log_id}: nothing was copied"
                    )
                cursor.execute(
                    "INSERT INTO audit_logs (log_id, created_at) VALUES (%s, now()::text)", (log_id,)
                )
                records = _copy(
                    source,
                    cursor,
                    f"SELECT {', '.join(RECORD_COLUMNS)} FROM audit_records ORDER BY seq",
                    f"COPY audit_log_records (log_id, at_time, {', '.join(RECORD_COLUMNS)}) FROM STDIN",
                    lambda row: (log_id, parse_instant(str(row[1])), *row),
                )
                if progress:
                    progress("audit_records", records)
                checkpoints = _copy(
                    source,
                    cursor,
                    f"SELECT {', '.join(CHECKPOINT_COLUMNS)} FROM audit_checkpoints",
                    f"COPY audit_log_checkpoints (log_id, {', '.join(CHECKPOINT_COLUMNS)}) FROM STDIN",
                    lambda row: (log_id, *row),
                )
                _copy(
                    source,
                    cursor,
                    "SELECT seq, record_hash, cut_off, pruned_at, records_deleted FROM audit_prune_anchors",
                    "COPY audit_log_prune_anchors "
                    "(log_id, seq, record_hash, cut_off, pruned_at, records_deleted) FROM STDIN",
                    lambda row: (log_id, *row),
                )
                nodes = _copy(
                    source,
                    cursor,
                    "SELECT level, idx, hash FROM audit_tree_nodes",
                    "COPY audit_log_tree_nodes (log_id, level, idx, hash) FROM STDIN",
                    lambda row: (log_id, row[0], row[1], bytes(row[2])),  # type: ignore[call-overload]
                )
                heads = _copy(
                    source,
                    cursor,
                    "SELECT size, at, head FROM audit_tree_heads",
                    "COPY audit_log_tree_heads (log_id, size, at, head) FROM STDIN",
                    lambda row: (log_id, *row),
                )
                if progress:
                    progress("audit_tree_nodes", nodes)
                found = cursor.execute(
                    "SELECT COUNT(*) FROM audit_log_records WHERE log_id = %s", (log_id,)
                ).fetchone()
                if found is None or int(found[0]) != records:
                    raise AuditError(f"the copy of log {log_id} does not add up; nothing was copied")
    finally:
        source.close()
    moved = verify_one(url, log_id, load_public_keys(data_dir / KEYS_DIR_NAME / "public"))
    if not moved.ok or moved.records_checked != verdict.records_checked:
        raise AuditIntegrityError(
            f"the moved log {log_id} does not verify in the database: {moved.reason or 'records missing'}"
        )
    return MovedLog(log_id, records, checkpoints, heads)


def _copy(
    source: object,
    cursor: psycopg.Cursor[tuple[object, ...]],
    select: str,
    copy: str,
    convert: Callable[[tuple[object, ...]], tuple[object, ...]],
) -> int:
    rows = source.execute(select)  # type: ignore[attr-defined]
    count = 0
    with cursor.copy(copy) as writing:
        while True:
            page = rows.fetchmany(PAGE)
            if not page:
                break
            for row in page:
                writing.write_row(convert(tuple(row)))
                count += 1
    return count
