"""The auditor's reads that both audit log backends share: ``query`` and ``export`` with their filters.

:class:`FilteredReads` turns the keyword filters into an :class:`~.query.AuditFilter` (the raw
subject hashed under every HMAC key id, never stored or returned) and leaves to each backend only
where the matching records come from: :meth:`FilteredReads._newest` (the newest ``limit``) and
:meth:`FilteredReads._every` (all of them, in order), after :meth:`FilteredReads._settle` (the
embedded log indexes what is durable first).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import TextIO

from .export import ExportFormat, export_records
from .protect import SubjectProtector
from .query import AuditFilter
from .record import AuditRecord


class FilteredReads:
    """``query`` and ``export`` over a backend's records (a mixin: the backend gives the hooks)."""

    _protector: SubjectProtector
    # Whether exported records carry their log id (the PostgreSQL log holds every replica's log).
    _export_log_ids = False

    def _settle(self) -> None:
        """Make what is durable readable (the embedded log indexes its journal); nothing by default."""

    def _newest(self, criteria: AuditFilter, limit: int) -> list[AuditRecord]:
        """The newest ``limit`` records matching ``criteria``, oldest first."""
        raise NotImplementedError

    def _every(self, criteria: AuditFilter) -> Iterator[AuditRecord]:
        """Every record matching ``criteria``, in the backend's export order."""
        raise NotImplementedError

    def _filter(
        self,
        *,
        since: dt.datetime | None,
        until: dt.datetime | None,
        caller_id: str | None,
        department: str | None,
        matter: str | None,
        outcome: str | None,
        kind: str | None,
        subject: str | None,
        before_seq: int | None = None,
    ) -> AuditFilter:
        return AuditFilter(
            since=since,
            until=until,
            caller_id=caller_id,
            department=department,
            matter=matter,
            outcome=outcome,
            kind=kind,
            subject_hashes=None if subject is None else tuple(self._protector.search_hashes(subject)),
            before_seq=before_seq,
        )

    def query(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        caller_id: str | None = None,
        department: str | None = None,
        matter: str | None = None,
        outcome: str | None = None,
        kind: str | None = None,
        subject: str | None = None,
        limit: int = 100,
        before_seq: int | None = None,
    ) -> list[AuditRecord]:
        """The newest ``limit`` records matching every given filter (and older than ``before_seq``, when
        given), oldest first (newest last).

        ``subject`` is the raw identifier; it is hashed under every HMAC key id (old ones too) and
        never stored or returned. ``since`` is inclusive, ``until`` exclusive.
        """
        criteria = self._filter(
            since=since,
            until=until,
            caller_id=caller_id,
            department=department,
            matter=matter,
            outcome=outcome,
            kind=kind,
            subject=subject,
            before_seq=before_seq,
        )
        self._settle()
        return self._newest(criteria, limit)

    def export(
        self,
        out: TextIO,
        format: ExportFormat = "jsonl",
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        caller_id: str | None = None,
        department: str | None = None,
        matter: str | None = None,
        outcome: str | None = None,
        kind: str | None = None,
        subject: str | None = None,
        include_ciphertext: bool = False,
    ) -> int:
        """Write every matching record as JSON Lines or CSV; return how many.

        The subject is exported as its keyed hash only; ``include_ciphertext`` adds ``subject_enc``
        (needed to re-hash the exported records against the chain, useless without the AES key).
        """
        criteria = self._filter(
            since=since,
            until=until,
            caller_id=caller_id,
            department=department,
            matter=matter,
            outcome=outcome,
            kind=kind,
            subject=subject,
        )
        self._settle()
        return export_records(
            self._every(criteria),
            out,
            format,
            include_ciphertext=include_ciphertext,
            log_ids=self._export_log_ids,
        )
