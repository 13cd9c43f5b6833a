"""Which subjects a write touched: what the change stream (``Watch``) and every cache need to know.

Each write records, in its own transaction, the subjects whose answer it may change: the subject of
every changed entry and the responsible persons the entry names before and after (R7: a person's
answer follows the organisations' entries). A bulk import records :data:`EVERYTHING` instead of a
million codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .base import ListEntry

# Stands for "every subject": caches drop all they hold.
EVERYTHING = "*"


@dataclass(frozen=True, slots=True)
class SubjectChange:
    """What one data version changed: ``subjects`` (raw codes, never sent out), or ``everything``."""

    data_version: int
    subjects: frozenset[str]

    @property
    def everything(self) -> bool:
        return EVERYTHING in self.subjects


def touched_subjects(*states: ListEntry | None) -> set[str]:
    """The subjects whose answers depend on any of these states of an entry."""
    touched: set[str] = set()
    for state in states:
        if state is not None:
            touched.add(state.subject_code)
            touched.update(person.person_id for person in state.responsible_persons)
    return touched


def group_changes(rows: Iterable[tuple[int, str]]) -> list[SubjectChange]:
    """``(data_version, subject)`` rows, ordered by version, as one change per version."""
    grouped: dict[int, set[str]] = {}
    for version, subject in rows:
        grouped.setdefault(int(version), set()).add(subject)
    return [SubjectChange(version, frozenset(subjects)) for version, subjects in grouped.items()]
