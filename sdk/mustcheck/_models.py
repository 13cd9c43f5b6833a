"""Plain typed results: what a check answers, as frozen dataclasses (never protobuf messages)."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from ._errors import MustCheckError
from .identifiers import SubjectKind
from .receipts import Receipt


class Outcome(enum.Enum):
    NO_RECORD = "no_record"
    INCENTIVES = "incentives"
    RESTRICTIONS = "restrictions"
    UNDER_OBJECTION = "under_objection"
    # Listed (an entry in force), but no measure for this matter's kinds that the caller's department
    # implements: the memberships are shown, nothing is for this caller to apply.
    LISTED_NO_MEASURES = "listed_no_measures"


class ListKind(enum.Enum):
    RED = "red"
    BLACK = "black"


class EntryStatus(enum.Enum):
    ACTIVE = "active"
    UNDER_OBJECTION = "under_objection"
    REPAIRED = "repaired"
    REVOKED = "revoked"


class MeasureKind(enum.Enum):
    INCENTIVE = "incentive"
    PUNISHMENT = "punishment"


@dataclass(frozen=True, slots=True)
class LegalBasis:
    document: str
    section: str

    def __str__(self) -> str:
        return f"{self.document} {self.section}".strip()


@dataclass(frozen=True, slots=True)
class Link:
    """How an organisation's entry reaches a person (R7): the organisation and the person's role."""

    organization_code: str
    organization_name: str
    role: str


@dataclass(frozen=True, slots=True)
class Membership:
    entry_id: str
    list: ListKind
    memorandum_id: str
    memorandum_title: str
    initiating_department: str
    status: EntryStatus
    severity: str
    decision_document: str
    reason: str
    decision_date: dt.datetime
    effective_from: dt.datetime
    punish_until: dt.datetime
    display_until: dt.datetime
    in_force: bool
    via: Link | None


@dataclass(frozen=True, slots=True)
class Measure:
    id: str
    kind: MeasureKind
    text: str
    mandatory: bool
    legal_basis: LegalBasis | None
    memorandum_id: str
    implementing_departments: tuple[str, ...]
    entry_id: str


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The answer to one check. ``subject`` is normalised (masked for persons)."""

    subject: str
    subject_kind: SubjectKind
    subject_name: str
    matter: str
    outcome: Outcome
    memberships: tuple[Membership, ...]
    measures: tuple[Measure, ...]
    # No bad record for three consecutive years (R6), attested only where the store holds three complete
    # years of list data; ``green_channel_reason`` says why not ("data.not_attested", "data.too_short",
    # "bad_record"), ``data_complete_since`` since when the data is complete (None: not attested).
    green_channel: bool
    human_review_required: bool
    review_notice: str
    legacy_code: bool
    data_version: int
    checked_at: dt.datetime
    # The gateway's signed receipt (R11): keep ``receipt.compact`` with the approval decision.
    receipt: Receipt | None = None
    # Served from the SDK's cache (the receipt is the original check's); ``as_of`` says when the
    # gateway gave the answer.
    from_cache: bool = False
    # Served from the cache because the gateway could not answer, for a matter that allows it (R12).
    stale: bool = False
    green_channel_reason: str = ""
    data_complete_since: dt.datetime | None = None

    @property
    def as_of(self) -> dt.datetime:
        """When the gateway gave this answer (for a cached answer: when it was first given)."""
        return self.checked_at

    @property
    def restricted(self) -> bool:
        return self.outcome is Outcome.RESTRICTIONS

    @property
    def mandatory_measures(self) -> tuple[Measure, ...]:
        return tuple(measure for measure in self.measures if measure.mandatory)


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One subject of a batch: exactly one of ``result`` and ``error`` is set."""

    index: int
    subject: str
    result: CheckResult | None
    error: MustCheckError | None

    @property
    def ok(self) -> bool:
        return self.result is not None


@dataclass(frozen=True, slots=True)
class BatchResult:
    items: tuple[BatchItem, ...]
    data_version: int

    @property
    def results(self) -> tuple[CheckResult, ...]:
        return tuple(item.result for item in self.items if item.result is not None)

    @property
    def errors(self) -> tuple[BatchItem, ...]:
        return tuple(item for item in self.items if item.error is not None)


@dataclass(frozen=True, slots=True)
class OutcomeAck:
    """The gateway's acknowledgement of execution feedback (执行反馈)."""

    approval_id: str
    backed_by_check: bool
    duplicate: bool
    reported_at: dt.datetime
