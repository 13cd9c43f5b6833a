"""Load ``policies/*.toml`` into a :class:`PolicySet`, reporting every problem found.

Each problem names the file, the key and what is wrong. Loading never stops at the
first problem: an administrator fixing a policy set wants the whole list at once.
Cross-file checks (unknown references, R13) live in ``validate``.
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mustcheck.identifiers import SubjectKind, normalise

from .files import FILES, OPTIONAL_TABLES, PolicyError, Problem
from .model import (
    Department,
    FailMode,
    Issuer,
    LegacyCode,
    LegalBasis,
    ListKind,
    Matter,
    MatterKind,
    Measure,
    MeasureKind,
    Memorandum,
    PolicySet,
    SeverityClass,
)
from .validate import validate

E = TypeVar("E", bound=enum.Enum)
T = TypeVar("T")


class _Row:
    """One ``[[table]]`` item being read; missing or mistyped keys become problems."""

    def __init__(self, file: str, table: str, index: int, data: dict[str, Any], problems: list[Problem]):
        self.file = file
        self.data = data
        self.problems = problems
        ident = data.get("id", data.get("code", data.get("class")))
        self.label = f"{table}[{index}]" + (f" ({ident})" if isinstance(ident, str) else "")
        self.ok = True

    def problem(self, key: str, text: str) -> None:
        self.ok = False
        self.problems.append(Problem(self.file, f"{self.label}.{key}" if key else self.label, text))

    def _get(self, key: str, kind: type[T], default: T | None) -> T:
        value = self.data.get(key, default)
        if value is None:
            self.problem(key, "missing")
            return kind()
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            self.problem(key, f"must be {kind.__name__}, got {type(value).__name__}")
            return kind()
        return value

    def text(self, key: str, default: str | None = None) -> str:
        named = len(self.problems)
        value = self._get(key, str, default)
        if len(self.problems) == named and not value.strip() and default is None:
            self.problem(key, "is empty")  # a missing or mistyped key is named once, not also as empty
        return value.strip()

    def integer(self, key: str, default: int | None = None, *, minimum: int = 0) -> int:
        value = self._get(key, int, default)
        if value < minimum:
            self.problem(key, f"must be at least {minimum}, got {value}")
        return value

    def flag(self, key: str, default: bool | None = None) -> bool:
        return self._get(key, bool, default)

    def choice(self, key: str, kind: type[E], default: str | None = None) -> E:
        raw = self.text(key, default)
        try:
            return kind(raw)
        except ValueError:
            allowed = ", ".join(str(member.value) for member in kind)
            self.problem(key, f"{raw!r} is not one of: {allowed}")
            return next(iter(kind))

    def texts(self, key: str, *, allow_empty: bool = False) -> tuple[str, ...]:
        value = self._get(key, list, None)
        if not all(isinstance(item, str) and item.strip() for item in value):
            self.problem(key, "must be a list of non-empty strings")
            return ()
        if not value and not allow_empty:
            self.problem(key, "is empty")
        duplicates = sorted({item for item in value if value.count(item) > 1})
        if duplicates:
            self.problem(key, f"lists {', '.join(duplicates)} more than once")
        return tuple(item.strip() for item in value)

    def subject_kinds(self, key: str) -> frozenset[SubjectKind]:
        kinds = set()
        for raw in self.texts(key):
            try:
                kinds.add(SubjectKind(raw))
            except ValueError:
                self.problem(key, f"{raw!r} is not one of: organization, person")
        return frozenset(kinds)

    def basis(self, key: str) -> LegalBasis | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(key, "must be a table { document = …, section = … }")
            return None
        document, section = value.get("document"), value.get("section")
        if not (
            isinstance(document, str) and document.strip() and isinstance(section, str) and section.strip()
        ):
            self.problem(key, "needs a non-empty document and section")
            return None
        return LegalBasis(document.strip(), section.strip())


def load_policies(directory: Path) -> PolicySet:
    """Load and validate the folder; raise :class:`PolicyError` listing every problem."""
    documents, problems = read_documents(directory)
    return policies_from_documents(documents, problems, where=str(directory))


def read_documents(directory: Path) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """Every policy file of the folder, parsed (by file name), and the problems reading them."""
    documents: dict[str, dict[str, Any]] = {}
    problems: list[Problem] = []
    for file, _ in FILES.values():
        try:
            with (directory / file).open("rb") as handle:
                documents[file] = tomllib.load(handle)
        except FileNotFoundError:
            continue  # reported as missing when the set is built
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            problems.append(Problem(file, "", f"not valid TOML: {error}"))
    return documents, problems


def policies_from_documents(
    documents: Mapping[str, Any], problems: list[Problem] | None = None, *, where: str
) -> PolicySet:
    """The policy set the parsed files describe (``where``: where they came from, for problems)."""
    problems = [] if problems is None else list(problems)
    unreadable = {problem.file for problem in problems}
    policy = PolicySet(
        departments=_index(documents, unreadable, where, "departments", _department, problems),
        matter_kinds=_index(documents, unreadable, where, "matter_kinds", _matter_kind, problems),
        severities=_index(documents, unreadable, where, "severities", _severity, problems),
        memoranda=_index(documents, unreadable, where, "memoranda", _memorandum, problems),
        measures=_index(documents, unreadable, where, "measures", _measure, problems),
        matters=_index(documents, unreadable, where, "matters", _matter, problems),
        legacy_codes=_index(documents, unreadable, where, "legacy_codes", _legacy_code, problems),
    )
    problems.extend(validate(policy))
    if problems:
        raise PolicyError(problems)
    return policy


def _index(
    documents: Mapping[str, Any],
    unreadable: set[str],
    where: str,
    name: str,
    build: Callable[[_Row], Any],
    problems: list[Problem],
) -> dict[str, Any]:
    file, table = FILES[name]
    items: dict[str, Any] = {}
    for row in _rows(documents, unreadable, where, file, table, problems):
        item = build(row)
        if not row.ok:
            continue
        key = item.id if hasattr(item, "id") else item.code
        if key in items:
            row.problem("", f"duplicate {table} {key!r}")
            continue
        items[key] = item
    return items


def _rows(
    documents: Mapping[str, Any],
    unreadable: set[str],
    where: str,
    file: str,
    table: str,
    problems: list[Problem],
) -> Iterator[_Row]:
    if file in unreadable:
        return
    document = documents.get(file)
    if document is None:
        problems.append(Problem(file, "", f"file not found in {where}"))
        return
    if not isinstance(document, dict):
        problems.append(Problem(file, "", "not a TOML document"))
        return
    unknown_tables = sorted(set(document) - {table})
    if unknown_tables:
        problems.append(
            Problem(file, "", f"unknown table(s) {', '.join(unknown_tables)}; expected [[{table}]]")
        )
    raw_rows = document.get(table, [])
    if not isinstance(raw_rows, list) or not (raw_rows or file in OPTIONAL_TABLES):
        problems.append(Problem(file, table, f"expected one or more [[{table}]] entries"))
        return
    for index, data in enumerate(raw_rows):
        if not isinstance(data, dict):
            problems.append(Problem(file, f"{table}[{index}]", "expected a table"))
            continue
        yield _Row(file, table, index, data, problems)


def _department(row: _Row) -> Department:
    return Department(code=row.text("code"), name=row.text("name"))


def _matter_kind(row: _Row) -> MatterKind:
    return MatterKind(code=row.text("code"), name=row.text("name"))


def _severity(row: _Row) -> SeverityClass:
    severity = SeverityClass(
        code=row.text("class"),
        name=row.text("name"),
        published=row.flag("published"),
        min_months=row.integer("min_months"),
        max_months=row.integer("max_months", minimum=1),
    )
    if severity.min_months > severity.max_months:
        row.problem("min_months", f"exceeds max_months ({severity.max_months})")
    return severity


def _memorandum(row: _Row) -> Memorandum:
    memorandum = Memorandum(
        id=row.text("id"),
        number=row.integer("number"),
        title=row.text("title"),
        list_kind=row.choice("list", ListKind),
        initiating_department=row.text("initiating_department"),
        subject_kinds=row.subject_kinds("subject_kinds"),
        severity=row.text("severity"),
        punish_months=row.integer("punish_months", minimum=1),
        display_months=row.integer("display_months", minimum=1),
        measures=row.texts("measures"),
        basis=row.basis("basis"),
    )
    if memorandum.display_months < memorandum.punish_months:
        row.problem("display_months", f"is shorter than punish_months ({memorandum.punish_months})")
    return memorandum


def _measure(row: _Row) -> Measure:
    return Measure(
        id=row.text("id"),
        kind=row.choice("kind", MeasureKind),
        text=row.text("text"),
        mandatory=row.flag("mandatory"),
        matter_kinds=frozenset(row.texts("matter_kinds")),
        implementing_departments=row.texts("implementing_departments"),
        subject_kinds=row.subject_kinds("subject_kinds"),
        reaches_responsible_persons=row.flag("reaches_responsible_persons", False),
        issuer=row.choice("issuer", Issuer, "government"),
        legal_basis=row.basis("legal_basis"),
    )


def _matter(row: _Row) -> Matter:
    return Matter(
        code=row.text("code"),
        name=row.text("name"),
        department=row.text("department"),
        matter_kinds=frozenset(row.texts("matter_kinds")),
        must_check=row.flag("must_check"),
        freshness_tolerance_s=row.integer("freshness_tolerance_s", minimum=1),
        fail_mode=row.choice("fail_mode", FailMode),
        decision_tolerance_s=row.integer("decision_tolerance_s", minimum=1),
    )


def _legacy_code(row: _Row) -> LegacyCode:
    return LegacyCode(code=normalise(row.text("code")), reason=row.text("reason"))
