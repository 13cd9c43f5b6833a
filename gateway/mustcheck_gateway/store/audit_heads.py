"""Audit chain heads in the shared store: one statement and one codec for both backends.

Each gateway publishes the latest signed checkpoint of its own audit chain (docs/scaling.md). The
store keeps a new head only if it extends the one it holds (:func:`upsert`): for the hash chain, a
larger seq, or the same seq with the same hash. Anything else (an older head, or another record at
the same seq: a rewound log) is refused with :class:`HeadRejected`, whichever replica's clock is behind.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import AuditHead, StoreError
from .codec import format_instant, parse_instant

COLUMNS = ("replica", "seq", "record_hash", "key_id", "signature", "signed_at", "published_at")
SELECT = f"SELECT {', '.join(COLUMNS)} FROM audit_heads ORDER BY replica"


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
    )


def head_from_values(row: Sequence[object]) -> AuditHead:
    replica, seq, record_hash, key_id, signature, signed_at, published_at = row
    return AuditHead(
        str(replica),
        int(str(seq)),
        str(record_hash),
        str(key_id),
        str(signature),
        parse_instant(str(signed_at)),
        parse_instant(str(published_at)),
    )
