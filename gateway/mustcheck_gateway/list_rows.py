"""List rows: the exchange form of a list entry (close to GB/T 39443-2020's fields).

One row a line in JSON Lines. Dates are calendar dates in China Standard Time
(``YYYY-MM-DD``, meaning 00:00 UTC+8 of that day) or full ISO 8601 instants.
``demo-data`` writes this form; the store is loaded from it.

| field | meaning |
|---|---|
| source | who supplied the row (with ``decision_document``, the entry's identity) |
| subject_code, subject_name, subject_kind | the subject (``organization`` or ``person``) |
| memorandum, list_kind | memorandum id (``policies/memoranda.toml``) and ``red`` / ``black`` |
| initiating_department | department code |
| decision_document, decision_date | the decision's document number and date |
| severity | ``minor``, ``general``, ``serious`` (``none`` for red lists) |
| reason | why the subject is listed |
| effective_date, punish_until, display_until | the periods (R3) |
| status, status_changed | ``active``, ``under_objection``, ``repaired``, ``revoked``; when it last changed |
| responsible_persons | list of ``{id, name, role}`` (R7) |
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any, TextIO

from mustcheck.identifiers import IdentifierError, SubjectKind, validate_subject

from .china_time import CHINA_STANDARD_TIME
from .errors import echo
from .evaluation import add_months
from .policy.model import ListKind, PolicySet
from .store.base import EntryStatus, ListEntry, ListStore, PersonRole, ResponsiblePerson
from .store.codec import entry_key

# A list file whose last line ends without a newline, in the middle of a row.
TRUNCATED = "line {} is cut short: the file's last line is truncated"
ROW_FIELDS = (
    "source",
    "subject_code",
    "subject_name",
    "subject_kind",
    "memorandum",
    "list_kind",
    "initiating_department",
    "decision_document",
    "decision_date",
    "severity",
    "reason",
    "effective_date",
    "punish_until",
    "display_until",
    "status",
    "status_changed",
    "responsible_persons",
)
_OPTIONAL = frozenset({"status", "status_changed", "responsible_persons", "subject_name", "reason"})


class RowError(ValueError):
    """A row cannot become an entry; the message names the field and the problem."""


def parse_instant(text: str, field: str) -> dt.datetime:
    """A ``YYYY-MM-DD`` date (00:00 China Standard Time) or an ISO 8601 instant with offset."""
    try:
        return _parse_instant(text)
    except (TypeError, ValueError):
        raise RowError(
            f"{field}: {echo(str(text))} is not a date (YYYY-MM-DD) or an ISO 8601 instant"
        ) from None


@functools.lru_cache(maxsize=65536)  # an import parses the same days again and again
def _parse_instant(text: str) -> dt.datetime:
    if len(text) == 10:
        day = dt.date.fromisoformat(text)
        return dt.datetime(day.year, day.month, day.day, tzinfo=CHINA_STANDARD_TIME)
    instant = dt.datetime.fromisoformat(text)
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=CHINA_STANDARD_TIME)


def entry_from_row(
    row: Mapping[str, Any], policy: PolicySet, *, legacy_codes: Collection[str] | None = None
) -> ListEntry:
    """Validate one row against R1/R3 and the policy set and build its entry."""
    if not isinstance(row, Mapping):
        raise RowError("a row must be an object of fields")
    missing = [field for field in ROW_FIELDS if field not in _OPTIONAL and not row.get(field)]
    if missing:
        raise RowError(f"missing field(s): {', '.join(missing)}")
    try:
        kind = SubjectKind(row["subject_kind"])
    except ValueError:
        raise RowError(
            f"subject_kind: {echo(str(row['subject_kind']))} is not organization or person"
        ) from None
    try:
        subject = validate_subject(
            str(row["subject_code"]),
            kind=kind,
            legacy_codes=policy.legacy_codes.keys() if legacy_codes is None else legacy_codes,
        )
    except IdentifierError as error:
        raise RowError(f"subject_code: {error.message} [{error.rule}]") from None
    memorandum = policy.memoranda.get(row["memorandum"])
    if memorandum is None:
        raise RowError(f"memorandum: unknown memorandum {echo(str(row['memorandum']))}")
    if row["list_kind"] != memorandum.list_kind.value:
        raise RowError(f"list_kind: memorandum {memorandum.id} is a {memorandum.list_kind.value} list")
    if kind not in memorandum.subject_kinds:
        raise RowError(f"subject_kind: memorandum {memorandum.id} does not cover {kind.value} subjects")
    dates = {
        field: parse_instant(str(row[field]), field)
        for field in ("decision_date", "effective_date", "punish_until", "display_until")
    }
    if (
        not dates["decision_date"]
        <= dates["effective_date"]
        < dates["punish_until"]
        <= dates["display_until"]
    ):
        raise RowError("dates: need decision_date <= effective_date < punish_until <= display_until")
    _check_severity(str(row["severity"]), memorandum.list_kind, dates, policy)
    try:
        status = EntryStatus(row.get("status") or "active")
    except ValueError:
        raise RowError(f"status: {echo(str(row['status']))} is not a known status") from None
    changed = row.get("status_changed")
    return ListEntry(
        entry_id=entry_key(str(row["source"]), str(row["decision_document"])),
        source=str(row["source"]),
        subject_code=subject.code,
        subject_name=str(row.get("subject_name") or ""),
        subject_kind=kind,
        memorandum_id=memorandum.id,
        list_kind=ListKind(row["list_kind"]),
        initiating_department=str(row["initiating_department"]),
        decision_document=str(row["decision_document"]),
        reason=str(row.get("reason") or ""),
        severity=str(row["severity"]),
        decision_date=dates["decision_date"],
        effective_from=dates["effective_date"],
        punish_until=dates["punish_until"],
        display_until=dates["display_until"],
        status=status,
        status_changed_at=parse_instant(str(changed), "status_changed") if changed else None,
        responsible_persons=tuple(_persons(row.get("responsible_persons") or [])),
    )


def _check_severity(
    severity: str, list_kind: ListKind, dates: Mapping[str, dt.datetime], policy: PolicySet
) -> None:
    """R3: a black record's class is known and its measures period within the class's maximum."""
    if list_kind is ListKind.RED:
        if severity not in ("none", ""):
            raise RowError(f"severity: a red-list entry has no severity class, got {echo(str(severity))}")
        return
    bounds = policy.severities.get(severity)
    if bounds is None:
        raise RowError(
            f"severity: {echo(str(severity))} is not one of {', '.join(sorted(policy.severities))}"
        )
    latest = add_months(dates["decision_date"], bounds.max_months)
    if dates["punish_until"] > latest:
        raise RowError(
            f"punish_until: a {severity} record lasts at most {bounds.max_months} months from its decision "
            f"date, so until {latest.date().isoformat()} at the latest (NDRC order No. 36)"
        )


def _persons(raw: Iterable[Mapping[str, Any]]) -> Iterator[ResponsiblePerson]:
    for index, person in enumerate(raw):
        try:
            number = validate_subject(str(person["id"]), kind=SubjectKind.PERSON).code
            role = PersonRole(person["role"])
        except (KeyError, TypeError):
            raise RowError(f"responsible_persons[{index}]: needs id, name and role") from None
        except IdentifierError as error:
            raise RowError(f"responsible_persons[{index}].id: {error.message} [{error.rule}]") from None
        except ValueError:
            roles = ", ".join(role.value for role in PersonRole)
            raise RowError(
                f"responsible_persons[{index}].role: {person['role']!r} is not one of {roles}"
            ) from None
        yield ResponsiblePerson(number, str(person.get("name") or ""), role)


def write_jsonl(rows: Iterable[Mapping[str, Any]], out: TextIO) -> int:
    count = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")
        count += 1
    return count


def load_rows(
    store: ListStore, rows: Iterable[Mapping[str, Any]], policy: PolicySet, *, actor: str, action: str
) -> tuple[int, int]:
    """Validate every row and write them in one transaction; returns (entries, data version).

    A bad row raises :class:`RowError` naming its position, and nothing is written.
    """
    entries = []
    for position, row in enumerate(rows, start=1):
        try:
            entries.append(entry_from_row(row, policy))
        except RowError as error:
            raise RowError(f"row {position}: {error}") from None
    return len(entries), store.write_entries(entries, actor=actor, action=action)
