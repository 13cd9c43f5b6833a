"""Walking the hash chain: the checks every record must pass, in order, with a plain reason on failure.

Used by verification (the whole log) and by pruning (the part about to be deleted must be intact).
"""

from __future__ import annotations

from .record import GENESIS_HASH, AuditRecord, compute_record_hash


def _deleted(first: int, last: int) -> str:
    return f"record {first} deleted" if first == last else f"records {first}–{last} deleted"


class ChainWalker:
    """Feed records in seq order to :meth:`step`; it returns the first problem's reason, or None."""

    def __init__(self, *, after_seq: int = 0, after_hash: str = GENESIS_HASH) -> None:
        self.last_seq = after_seq
        self.last_hash = after_hash
        self.checked = 0

    def step(self, record: AuditRecord) -> str | None:
        expected = self.last_seq + 1
        if record.seq < expected:
            return f"record {record.seq} appears out of order after record {self.last_seq}"
        if record.seq > expected:
            if self.checked == 0:
                return (
                    f"sequence gap: the log starts at {record.seq}, expected {expected} "
                    f"({_deleted(expected, record.seq - 1)})"
                )
            return (
                f"sequence gap: {record.seq} follows {self.last_seq} ({_deleted(expected, record.seq - 1)})"
            )
        if record.prev_hash != self.last_hash:
            return f"record {record.seq}: previous-hash link broken (deleted or reordered records before it)"
        if compute_record_hash(record) != record.record_hash:
            return f"record {record.seq}: hash does not match its content (altered)"
        self.last_seq = record.seq
        self.last_hash = record.record_hash
        self.checked += 1
        return None
