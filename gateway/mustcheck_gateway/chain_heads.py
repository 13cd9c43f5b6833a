"""Each gateway publishes the head of its audit chain — its latest signed checkpoint — to the store.

With several replicas each keeps its own audit chain on its own disk (docs/scaling.md). The store
they share then lists every chain there is and how far each reached, so an auditor knows which data
directories make up the record and can prove that none was withheld or cut short:
``mustcheck audit verify --data-dir DIR --store URL`` checks the chain in DIR against its head.

No rewind (docs/audit-log.md): the gateway opens its log only if the log extends the head it last
published (:func:`published_head`), checks again before each publication that the log still holds
the previously published head, and the store itself keeps a head only if it extends the one it has.

A replica's id lives in its data directory (``replica.id``), so it survives restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from pathlib import Path

import structlog

from mustcheck.tree_head import TreeHead

from .audit import AuditIntegrityError, AuditLog, Checkpoint, CheckpointKind, load_public_keys
from .audit.checkpoint import signature_problem
from .audit.journal import journal_path_for, read_journal
from .audit.record import RECORD_COLUMNS
from .audit.sqlite_log import connect_read_only
from .store.audit_heads import HeadRejected
from .store.base import AuditHead, ListStore
from .tasks import cancelled

log = structlog.get_logger("mustcheck.gateway")
REPLICA_FILE_NAME = "replica.id"


def replica_id(data_dir: Path) -> str:
    """This data directory's replica id, made on first use."""
    path = data_dir / REPLICA_FILE_NAME
    if not path.exists():
        with contextlib.suppress(FileExistsError), path.open("x", encoding="ascii") as file:
            file.write(uuid.uuid4().hex[:16] + "\n")
    return path.read_text(encoding="ascii").strip()


def read_replica_id(data_dir: Path) -> str | None:
    """The data directory's replica id, if a gateway has served from it (made by :func:`replica_id`)."""
    path = data_dir / REPLICA_FILE_NAME
    return path.read_text(encoding="ascii").strip() if path.is_file() else None


def published_head(store: ListStore, replica: str) -> AuditHead | None:
    """The head ``replica`` last published to ``store`` (None: it never published one)."""
    return next((head for head in store.audit_heads() if head.replica == replica), None)


def head_checkpoint(head: AuditHead) -> Checkpoint:
    """The chain checkpoint a published head was made from (same signature)."""
    return Checkpoint(
        CheckpointKind.CHAIN, head.seq, head.record_hash, head.signed_at, head.key_id, head.signature
    )


class HeadPublisher:
    def __init__(
        self,
        audit: AuditLog,
        store: ListStore,
        replica: str,
        *,
        interval_s: float,
        published: AuditHead | None = None,
    ) -> None:
        self.audit = audit
        self.store = store
        self.replica = replica
        self.interval_s = interval_s
        self.published: AuditHead | None = published
        self._task: asyncio.Task[None] | None = None

    def publish(self) -> AuditHead | None:
        """Publish the latest chain checkpoint if it is newer than the last one published, after checking
        that the log still holds the last one published (never publish over a rewound log)."""
        latest = self.audit.latest_checkpoint(CheckpointKind.CHAIN)
        if latest is None:
            return None
        if self.published is not None:
            if (self.published.seq, self.published.record_hash) == (
                latest.seq,
                latest.record_hash,
            ) and self.published.tree_head == self._tree_head_text():
                return self.published
            problem = self.audit.extends(head_checkpoint(self.published))
            if problem is not None:
                log.error("audit_tamper_alarm", problem=problem, replica=self.replica)
                raise AuditIntegrityError(f"not publishing a new audit head: {problem}")
        tree_head = self.audit.latest_tree_head()
        proof: list[bytes] = []
        if tree_head is not None and self.published is not None and self.published.tree_head:
            # The store keeps the new tree head only with a proof that it extends the one published.
            proof = self.audit.tree_consistency(
                TreeHead.from_json(self.published.tree_head).size, tree_head.size
            )
        head = AuditHead(
            self.replica,
            latest.seq,
            latest.record_hash,
            latest.key_id,
            latest.signature,
            latest.at,
            dt.datetime.now(dt.UTC),
            "" if tree_head is None else tree_head.to_json(),
        )
        self.store.publish_audit_head(head, proof)
        self.published = head
        self.audit.published_head = latest  # a restarted writer checks the log against it
        self.audit.published_tree_head = head.tree_head
        return head

    def _tree_head_text(self) -> str:
        tree_head = self.audit.latest_tree_head()
        return "" if tree_head is None else tree_head.to_json()

    def publish_final(self) -> AuditHead | None:
        """On stop: sign a head for every record written, and publish it."""
        self.audit.sign_head()
        return self.publish()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mustcheck-audit-heads")

    async def stop(self) -> None:
        await cancelled(self._task)
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await loop.run_in_executor(None, self.publish)
            except AuditIntegrityError:  # a rewound log: publish() raised the alarm; again next round
                pass
            except HeadRejected as error:  # the store holds a head this log does not extend
                log.error("audit_tamper_alarm", replica=self.replica, error=str(error))
            except Exception as error:  # the store is away: the next round tries again
                log.warning("audit_head_not_published", error=str(error))


def head_problem(db_path: Path, head: AuditHead, public_keys_dir: Path) -> str | None:
    """Why the audit log at ``db_path`` does not reach its published ``head`` (``None``: it does).

    Offline and read-only: the head's signature is checked with the public keys, then the record the
    head names is looked up in the log (its index or its journal) and its hash compared.
    """
    checkpoint = head_checkpoint(head)
    problem = signature_problem(checkpoint, load_public_keys(public_keys_dir))
    if problem is not None:
        return f"the published head of replica {head.replica} is not genuine: {problem}"
    found = _record_hash(db_path, head.seq)
    if found is None:
        return (
            f"the chain ends before the head replica {head.replica} published (record {head.seq}, "
            f"signed {head.signed_at:%Y-%m-%d %H:%M:%S} UTC): records withheld or cut off"
        )
    if found != head.record_hash:
        return f"record {head.seq} is not the one replica {head.replica} published as its head"
    return None


def _record_hash(db_path: Path, seq: int) -> str | None:
    connection = connect_read_only(db_path)
    try:
        row = connection.execute("SELECT record_hash FROM audit_records WHERE seq = ?", (seq,)).fetchone()
    finally:
        connection.close()
    if row is not None:
        return str(row[0])
    seq_at, hash_at = RECORD_COLUMNS.index("seq"), RECORD_COLUMNS.index("record_hash")
    for journal_row in read_journal(journal_path_for(db_path)).rows:
        if journal_row[seq_at] == seq:
            return str(journal_row[hash_at])
    return None
