"""What an auditor asks for: filters over audit records, independent of the storage backend."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Records matching every given criterion; ``None`` means "any".

    ``since`` is inclusive and ``until`` exclusive. ``subject_hashes`` holds (HMAC key id, hash)
    pairs: the searched subject hashed under every key id, so records written before a key rotation
    are found too (an empty tuple matches nothing).
    """

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    caller_id: str | None = None
    department: str | None = None
    matter: str | None = None
    outcome: str | None = None
    kind: str | None = None
    subject_hashes: tuple[tuple[str, str], ...] | None = None
    # Only records with a smaller seq (paging back through the newest first).
    before_seq: int | None = None
