"""Audit chain heads in the shared store: one statement and one codec for both backends.

Each gateway publishes the latest signed checkpoint of its own audit chain (docs/scaling.md). The
store keeps a new head only if it extends the one it holds (:func:`upsert`): for the hash chain, a
larger seq, or the same seq with the same hash. Anything else (an older head, or another record at
the same seq: a rewound log) is refused with :class:`HeadRejected`, whichever replica's clock is behind.

A head also carries the replica's latest signed *tree head* (its audit log as a Merkle tree): the store
takes a new tree head only with a consistency proof from the one it holds (:func:`tree_problem`), so a
log cut short or rewritten cannot publish again.
"""

from __future__ import annotations

from collections.abc import Sequence

from mustcheck.merkle import verify_consistency
from mustcheck.tree_head import TreeHead

from .base import AuditHead, StoreError
from .codec import format_instant, parse_instant

COLUMNS = ("replica", "seq", "record_hash", "key_id", "signature", "signed_at", "published_at", "tree_head")
SELECT = f"SELECT {', '.join(COLUMNS)} FROM audit_heads ORDER BY replica"


def select_one(placeholder: str) -> str:
    return f"SELECT {', '.join(COLUMNS)} FROM audit_heads WHERE replica = {placeholder}"


def tree_problem(stored: AuditHead | None, head: AuditHead, proof: Sequence[bytes]) -> str | None:
    """Why ``head``'s tree head does not extend the stored one (None: a consistency proof shows it does,
    or there is no tree head to extend)."""
    if stored is None or not stored.tree_head:
        return None
    if not head.tree_head:
        return "it carries no tree head, but the store holds one"
    try:
        old, new = TreeHead.from_json(stored.tree_head), TreeHead.from_json(head.tree_head)
        hasher = new.hasher
    except ValueError as error:
        return f"its tree head cannot be read: {error}"
    if old.log_id != new.log_id:
        return f"its tree head is of log {new.log_id}, the stored one of log {old.log_id}"
    if not verify_consistency(hasher, old.size, new.size, old.root, new.root, list(proof)):
        return (
            f"its tree head (size {new.size}) is not proven consistent with the stored one (size "
            f"{old.size}): the log was cut short or rewritten"
        )
    return None


def check_tree(stored: AuditHead | None, head: AuditHead, proof: Sequence[bytes]) -> None:
    problem = tree_problem(stored, head, proof)
    if problem is not None:
        raise HeadRejected(f"the store refused replica {head.replica}'s head: {problem}")


def upsert(placeholder: str) -> str:
    """The statement that keeps the newer of the stored and the given head (``?`` or ``%s``)."""
    updates = ", ".join(f"{column} = excluded.{column}" for column in COLUMNS if column != "replica")
    return (
        f"INSERT INTO audit_heads ({', '.join(COLUMNS)}) VALUES ({', '.join([placeholder] * len(COLUMNS))}) "
        f"ON CONFLICT (replica) DO UPDATE SET {updates} WHERE excluded.seq > audit_heads.seq "
        "OR (excluded.seq = audit_heads.seq AND excluded.record_hash = audit_heads.record_hash)"
    )


class HeadRejected(StoreError):
    """A published head that does not extend the replica's head in the store."""


def check_kept(head: AuditHead, changed_rows: int) -> None:
    """Raise :class:`HeadRejected` if the upsert of ``head`` changed no row (it extends no stored head)."""
    if changed_rows == 0:
        raise HeadRejected(
            f"the store refused replica {head.replica}'s head at record {head.seq}: it does not extend the "
            "head the store holds (an older head, or another record at the same seq)"
        )


def head_values(head: AuditHead) -> tuple[object, ...]:
    return (
        head.replica,
        head.seq,
        head.record_hash,
        head.key_id,
        head.signature,
        format_instant(head.signed_at),
        format_instant(head.published_at),
        head.tree_head,
    )


def head_from_values(row: Sequence[object]) -> AuditHead:
    replica, seq, record_hash, key_id, signature, signed_at, published_at, tree_head = row
    return AuditHead(
        str(replica),
        int(str(seq)),
        str(record_hash),
        str(key_id),
        str(signature),
        parse_instant(str(signed_at)),
        parse_instant(str(published_at)),
        str(tree_head or ""),
    )
