"""Entries to and from the column values every backend stores (text dates, JSON snapshots)."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from mustcheck.identifiers import SubjectKind

from ..policy.model import ListKind
from .base import EncodedEntry, EntryStatus, HistoryRecord, ListEntry, PersonRole, ResponsiblePerson

ENTRY_COLUMNS = (
    "entry_id",
    "source",
    "subject_code",
    "subject_name",
    "subject_kind",
    "memorandum_id",
    "list_kind",
    "initiating_department",
    "decision_document",
    "reason",
    "severity",
    "decision_date",
    "effective_from",
    "punish_until",
    "display_until",
    "status",
    "status_changed_at",
)
HISTORY_COLUMNS = ("entry_id", "data_version", "action", "actor", "changed_at", "snapshot")
SOURCE, DECISION_DOCUMENT = ENTRY_COLUMNS.index("source"), ENTRY_COLUMNS.index("decision_document")
_DATE_COLUMNS = frozenset(
    {"decision_date", "effective_from", "punish_until", "display_until", "status_changed_at"}
)


def entry_key(source: str, decision_document: str) -> str:
    """An entry's identity: its source and decision document number, as a short stable id."""
    digest = hashlib.sha256(f"{source}\x00{decision_document}".encode()).hexdigest()
    return f"E{digest[:20]}"


def format_instant(value: dt.datetime) -> str:
    """One fixed-width UTC text form for every stored instant (lists, callers, audit), so text order is
    time order."""
    if value.tzinfo is None:
        raise ValueError(f"instant {value!r} has no time zone")
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


# List dates repeat: an import formats the same few thousand days again and again.
_format_list_date = functools.lru_cache(maxsize=65536)(format_instant)


def parse_instant(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"stored instant {text!r} has no time zone")
    return parsed


def entry_values(entry: ListEntry) -> tuple[Any, ...]:
    """The entry's values in ``ENTRY_COLUMNS`` order (dates in the stored text form)."""
    changed = entry.status_changed_at
    return (
        entry.entry_id,
        entry.source,
        entry.subject_code,
        entry.subject_name,
        entry.subject_kind.value,
        entry.memorandum_id,
        entry.list_kind.value,
        entry.initiating_department,
        entry.decision_document,
        entry.reason,
        entry.severity,
        _format_list_date(entry.decision_date),
        _format_list_date(entry.effective_from),
        _format_list_date(entry.punish_until),
        _format_list_date(entry.display_until),
        entry.status.value,
        None if changed is None else _format_list_date(changed),
    )


def entry_from_values(values: Sequence[Any], persons: Sequence[Sequence[Any]] = ()) -> ListEntry:
    """Rebuild an entry from ``ENTRY_COLUMNS`` values and (person_id, name, role) rows."""
    row: dict[str, Any] = dict(zip(ENTRY_COLUMNS, values, strict=True))
    for column in _DATE_COLUMNS:
        if row[column] is not None:
            row[column] = parse_instant(row[column])
    row["subject_kind"] = SubjectKind(row["subject_kind"])
    row["list_kind"] = ListKind(row["list_kind"])
    row["status"] = EntryStatus(row["status"])
    row["responsible_persons"] = tuple(
        ResponsiblePerson(person_id, name, PersonRole(role)) for person_id, name, role in persons
    )
    return ListEntry(**row)


def encode_entry(entry: ListEntry) -> EncodedEntry:
    values = entry_values(entry)
    persons = tuple((p.person_id, p.name, p.role.value) for p in entry.responsible_persons)
    return values, persons, _snapshot_json(values, persons).encode()


def snapshot(entry: ListEntry) -> str:
    """The entry as one JSON document, for history rows."""
    return encode_entry(entry)[2].decode()


_encode_snapshot = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


def _snapshot_json(values: Sequence[Any], persons: Sequence[Sequence[str]]) -> str:
    data: dict[str, Any] = dict(zip(ENTRY_COLUMNS, values, strict=True))
    data["responsible_persons"] = persons  # tuples encode as JSON arrays, as lists do
    return _encode_snapshot(data)


def from_snapshot(text: str) -> ListEntry:
    data: Mapping[str, Any] = json.loads(text)
    return entry_from_values([data[column] for column in ENTRY_COLUMNS], data["responsible_persons"])


def history_from_values(values: Sequence[Any]) -> HistoryRecord:
    """Rebuild a history record from ``HISTORY_COLUMNS`` values."""
    entry_id, version, action, actor, changed_at, state = values
    at = parse_instant(changed_at)
    return HistoryRecord(entry_id, int(version), action, actor, at, from_snapshot(state))
