"""The lookups of many subjects at once (a ``BatchCheck``), assembled from a few statements' rows.

A store reads, in one consistent snapshot, the entries of every subject asked about and the entries that
name any of the persons asked about; :func:`lookups_from` then gives each subject what ``lookup`` would
have given it alone: its own entries and, for a person, the entries naming them, each in entry order.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

from .base import ListEntry, Lookup

# Subjects a statement asks about at most (SQLite binds at most 32,766 parameters; a batch has 1,000).
CHUNK = 500


def chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def lookups_from(
    subjects: Sequence[tuple[str, bool]],
    *,
    data_version: int,
    complete_since: dt.datetime | None,
    own: Iterable[ListEntry],
    naming: Iterable[tuple[str, ListEntry]],
) -> list[Lookup]:
    """One :class:`Lookup` for each ``(subject code, person)``, in order. ``own``: the entries of the
    subjects, in entry order; ``naming``: ``(person id, entry)`` for each entry naming a person asked
    about, in entry order."""
    own_by_subject: dict[str, list[ListEntry]] = defaultdict(list)
    for entry in own:
        own_by_subject[entry.subject_code].append(entry)
    naming_person: dict[str, list[ListEntry]] = defaultdict(list)
    for person_id, entry in naming:
        naming_person[person_id].append(entry)
    return [
        Lookup(
            data_version=data_version,
            own=list(own_by_subject.get(code, ())),
            linked=list(naming_person.get(code, ())) if person else [],
            complete_since=complete_since,
        )
        for code, person in subjects
    ]


def subjects_to_read(subjects: Sequence[tuple[str, bool]]) -> tuple[list[str], list[str]]:
    """The distinct subject codes, and the distinct codes of persons, sorted."""
    return sorted({code for code, _ in subjects}), sorted({code for code, person in subjects if person})
