"""The policy set as typed, immutable objects (what ``policies/*.toml`` describe)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from mustcheck import LegalBasis, ListKind, MeasureKind  # shared with the SDK
from mustcheck.identifiers import SubjectKind

__all__ = [
    "ALL_DEPARTMENTS",
    "Department",
    "FailMode",
    "Issuer",
    "LegacyCode",
    "LegalBasis",
    "ListKind",
    "Matter",
    "MatterKind",
    "Measure",
    "MeasureKind",
    "Memorandum",
    "PolicySet",
    "SeverityClass",
]

ALL_DEPARTMENTS = "*"


class Issuer(enum.Enum):
    GOVERNMENT = "government"
    INDUSTRY = "industry"
    MARKET = "market"


class FailMode(enum.Enum):
    CLOSED = "closed"
    SERVE_STALE = "serve_stale"


@dataclass(frozen=True, slots=True)
class Department:
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class MatterKind:
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class SeverityClass:
    """NDRC order No. 36: publication bounds and the earliest repair, in months."""

    code: str
    name: str
    published: bool
    min_months: int
    max_months: int


@dataclass(frozen=True, slots=True)
class Measure:
    id: str
    kind: MeasureKind
    text: str
    mandatory: bool
    matter_kinds: frozenset[str]
    implementing_departments: tuple[str, ...]
    subject_kinds: frozenset[SubjectKind]
    reaches_responsible_persons: bool
    issuer: Issuer
    legal_basis: LegalBasis | None

    def implemented_by(self, department: str) -> bool:
        return ALL_DEPARTMENTS in self.implementing_departments or department in self.implementing_departments


@dataclass(frozen=True, slots=True)
class Memorandum:
    id: str
    number: int
    title: str
    list_kind: ListKind
    initiating_department: str
    subject_kinds: frozenset[SubjectKind]
    severity: str
    punish_months: int
    display_months: int
    measures: tuple[str, ...]
    basis: LegalBasis | None = None


@dataclass(frozen=True, slots=True)
class Matter:
    code: str
    name: str
    department: str
    matter_kinds: frozenset[str]
    must_check: bool
    freshness_tolerance_s: int
    fail_mode: FailMode
    decision_tolerance_s: int


@dataclass(frozen=True, slots=True)
class LegacyCode:
    code: str
    reason: str


@dataclass(frozen=True)
class PolicySet:
    departments: Mapping[str, Department] = field(default_factory=dict)
    matter_kinds: Mapping[str, MatterKind] = field(default_factory=dict)
    severities: Mapping[str, SeverityClass] = field(default_factory=dict)
    memoranda: Mapping[str, Memorandum] = field(default_factory=dict)
    measures: Mapping[str, Measure] = field(default_factory=dict)
    matters: Mapping[str, Matter] = field(default_factory=dict)
    legacy_codes: Mapping[str, LegacyCode] = field(default_factory=dict)
