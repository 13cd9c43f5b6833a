"""The append calls both audit log backends share, and the reveal of stored subjects.

:class:`AppendFront` gives ``append``, ``append_many``, ``append_receipted`` and ``append_sync`` over a
backend's two hooks, :meth:`AppendFront._append` (asynchronous, with receipts) and
:meth:`AppendFront.append_many_sync`; it protects each event's subject (:meth:`AppendFront._prepare`)
and names the policy set in force in every record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from .protect import SubjectProtector
from .record import AuditEvent, AuditRecord, PendingRecord
from .remote_writer import Announcement


class AppendFront:
    """The append calls over a backend's commit (a mixin: the backend gives the hooks)."""

    _protector: SubjectProtector
    policy_set: str  # the digest of the policy set served, named in every record (replay)

    async def _append(
        self, events: Iterable[AuditEvent], receipts_for: Sequence[int], announcement: Announcement | None
    ) -> tuple[list[int], list[str]]:
        """Commit ``events``; their seqs and the receipts of those at ``receipts_for``."""
        raise NotImplementedError

    def append_many_sync(self, events: Iterable[AuditEvent]) -> list[int]:
        """Commit ``events``, blocking until they are durable; their seqs."""
        raise NotImplementedError

    def _prepare(self, events: Iterable[AuditEvent]) -> list[PendingRecord]:
        now = dt.datetime.now(dt.UTC)
        # The items of a batch share their instant: written as text once for all of them.
        instants: dict[dt.datetime, str] = {}
        return [
            PendingRecord.from_event(event, self._protector, now, self.policy_set, instants)
            for event in events
        ]

    async def append(self, event: AuditEvent, *, announcement: Announcement | None = None) -> int:
        """Log one event; resolves to its seq once it is durable."""
        return (await self.append_many([event], announcement=announcement))[0]

    async def append_many(
        self, events: Iterable[AuditEvent], *, announcement: Announcement | None = None
    ) -> list[int]:
        """Log several events (e.g. a batch's items) in one commit; resolves to their seqs, in order."""
        return (await self._append(events, (), announcement))[0]

    async def append_receipted(
        self,
        events: Iterable[AuditEvent],
        receipts_for: Sequence[int],
        *,
        announcement: Announcement | None = None,
    ) -> tuple[list[int], list[str]]:
        """Like :meth:`append_many`, and the receipts (R11) of the events at ``receipts_for`` (allowed
        checks), in that order, proven against the tree head signed for their commit."""
        return await self._append(events, receipts_for, announcement)

    def append_sync(self, event: AuditEvent) -> int:
        """Log one event, blocking until it is durable; return its seq."""
        return self.append_many_sync([event])[0]

    def _revealed(
        self, seqs: Sequence[int], found: Mapping[int, AuditRecord]
    ) -> list[tuple[int, str | None]]:
        """The clear subject of each of ``seqs`` among the records ``found`` (None: no such record, or
        no subject), in ``seqs`` order."""
        revealed: list[tuple[int, str | None]] = []
        for seq in seqs:
            record = found.get(seq)
            protected = record.protected_subject if record else None
            revealed.append((seq, self._protector.reveal(protected, seq=seq) if protected else None))
        return revealed
