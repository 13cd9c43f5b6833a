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


def select_changes(placeholder: str) -> str:
    """The changes of the first ``limit`` versions after a version (parameters: after, limit), in the
    backend's placeholder style (``?`` or ``%s``)."""
    return (
        "SELECT data_version, subject_code FROM subject_changes WHERE data_version IN "
        f"(SELECT DISTINCT data_version FROM subject_changes WHERE data_version > {placeholder} "
        f"ORDER BY data_version LIMIT {placeholder}) ORDER BY data_version"
    )


def insert_change(placeholder: str) -> str:
    """Record that a version touched a subject (parameters: version, subject); once is enough."""
    return (
        "INSERT INTO subject_changes (data_version, subject_code) "
        f"VALUES ({placeholder}, {placeholder}) ON CONFLICT DO NOTHING"
    )


def group_changes(rows: Iterable[tuple[int, str]]) -> list[SubjectChange]:
    """``(data_version, subject)`` rows, ordered by version, as one change per version."""
    grouped: dict[int, set[str]] = {}
    for version, subject in rows:
        grouped.setdefault(int(version), set()).add(subject)
    return [SubjectChange(version, frozenset(subjects)) for version, subjects in grouped.items()]
