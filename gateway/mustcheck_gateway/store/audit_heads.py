"""Audit chain heads in the shared store: one statement and one codec for both backends.

Each gateway publishes the latest signed checkpoint of its own audit chain (docs/scaling.md); an
older checkpoint never replaces a newer one, whichever replica's clock is behind.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import AuditHead
from .codec import format_instant, parse_instant

COLUMNS = ("replica", "seq", "record_hash", "key_id", "signature", "signed_at", "published_at")
SELECT = f"SELECT {', '.join(COLUMNS)} FROM audit_heads ORDER BY replica"


def upsert(placeholder: str) -> str:
    """The statement that keeps the newer of the stored and the given head (``?`` or ``%s``)."""
    updates = ", ".join(f"{column} = excluded.{column}" for column in COLUMNS if column != "replica")
    return (
        f"INSERT INTO audit_heads ({', '.join(COLUMNS)}) VALUES ({', '.join([placeholder] * len(COLUMNS))}) "
        f"ON CONFLICT (replica) DO UPDATE SET {updates} WHERE excluded.seq >= audit_heads.seq"
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
