"""What a check means: memberships, measures and outcome at one instant (R2–R7, R13).

A pure function of the subject's entries, the policy set, the matter, the caller's
department and the instant — no I/O, no clock — so every rule can be tested at the
instants just before and after its boundaries.

* R3  an entry is shown from its effective date until its display period ends (capped
      at the severity class's maximum, counted from the decision date) and counts
      (``in_force``) only until its punishment period ends.
* R4  an entry under objection is shown as such; its measures are not applied.
* R5  repaired and revoked entries are neither shown nor counted.
* R2  measures come from in-force entries' memoranda, filtered by the matter's kinds,
      the subject's kind and the caller's department as implementing department.
      Incentives are withheld while any black entry is in force. An entry in force that brings
      no measure for this caller and matter gives ``listed_no_measures``, never "restrictions"
      or "incentives" with none.
* R6  green channel: no bad record at any time in the three years up to now, and only where the
      store attests complete list data for all three years (a fresh store grants nobody). A black
      decision already taken counts from its decision date, even if it takes effect later.
* R7  a person also carries the black entries of organisations naming them as legal
      representative, principal or directly responsible person, with the measures
      that reach responsible persons.
* R13 a restriction on a natural person needs a human to confirm it.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mustcheck import Outcome as Outcome  # one definition, shared with the SDK
from mustcheck.identifiers import SubjectKind, ValidSubject

from .policy.model import ListKind, Matter, Measure, MeasureKind, Memorandum, PolicySet
from .store.base import EntryStatus, ListEntry, PersonRole

GREEN_CHANNEL_YEARS = 3
REVIEW_NOTICE = (
    "对自然人的限制措施仅为提示，须经工作人员人工确认后实施；当事人有权要求说明并申请复核"
    "（《个人信息保护法》第二十四条）。"
)
_SHOWN_STATUSES = frozenset({EntryStatus.ACTIVE, EntryStatus.UNDER_OBJECTION})


@dataclass(frozen=True, slots=True)
class Link:
    """How an organisation's entry reaches a person (R7)."""

    organization_code: str
    organization_name: str
    role: PersonRole


@dataclass(frozen=True, slots=True)
class ShownMembership:
    entry: ListEntry
    memorandum: Memorandum
    display_until: dt.datetime
    in_force: bool
    via: Link | None = None


@dataclass(frozen=True, slots=True)
class AppliedMeasure:
    measure: Measure
    memorandum_id: str
    entry_id: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    subject: ValidSubject
    subject_name: str
    matter: Matter
    outcome: Outcome
    memberships: tuple[ShownMembership, ...]
    measures: tuple[AppliedMeasure, ...]
    green_channel: bool
    human_review_required: bool
    review_notice: str
    # Why green_channel is false (GREEN_CHANNEL_* below); empty when eligible.
    green_channel_reason: str = ""
    data_complete_since: dt.datetime | None = None


def add_months(instant: dt.datetime, months: int) -> dt.datetime:
    """``instant`` plus whole calendar months, clamped to the month's last day."""
    month_index = instant.month - 1 + months
    year, month = instant.year + month_index // 12, month_index % 12 + 1
    day = min(instant.day, calendar.monthrange(year, month)[1])
    return instant.replace(year=year, month=month, day=day)


def display_end(entry: ListEntry, policy: PolicySet) -> dt.datetime:
    """When the entry stops being shown: its display date, capped by its severity class (R3)."""
    severity = policy.severities.get(entry.severity)
    if entry.list_kind is ListKind.BLACK and severity is not None:
        return min(
            entry.display_until,
            _months_after(entry.decision_date, entry.decision_date.tzinfo, severity.max_months),
        )
    return entry.display_until


@functools.lru_cache(maxsize=8192)
def _months_after(instant: dt.datetime, zone: dt.tzinfo | None, months: int) -> dt.datetime:
    """:func:`add_months` remembered: an entry's decision date is capped at every check that shows it.
    ``zone`` is in the key because equal instants in other zones have other calendar dates."""
    return add_months(instant, months)


def is_shown(entry: ListEntry, policy: PolicySet, at: dt.datetime) -> bool:
    return entry.status in _SHOWN_STATUSES and entry.effective_from <= at < display_end(entry, policy)


def is_in_force(entry: ListEntry, policy: PolicySet, at: dt.datetime) -> bool:
    return entry.status is EntryStatus.ACTIVE and entry.effective_from <= at < min(
        entry.punish_until, display_end(entry, policy)
    )


def bad_period(entry: ListEntry) -> tuple[dt.datetime, dt.datetime] | None:
    """The span in which a black entry was a bad record; ``None`` if it never was (revoked).

    It starts at the decision date (a decision already taken is a bad record even before it takes
    effect) or at the effective date if that is earlier. An entry under objection still counts: the
    objection is pending, not upheld.
    """
    if entry.list_kind is not ListKind.BLACK or entry.status is EntryStatus.REVOKED:
        return None
    end = entry.punish_until
    if entry.status is EntryStatus.REPAIRED and entry.status_changed_at is not None:
        end = min(end, entry.status_changed_at)
    start = min(entry.decision_date, entry.effective_from)
    return (start, end) if start < end else None


GREEN_CHANNEL_NOT_ATTESTED = "data.not_attested"
GREEN_CHANNEL_TOO_SHORT = "data.too_short"
GREEN_CHANNEL_BAD_RECORD = "bad_record"


def green_channel(
    entries: Iterable[ListEntry], at: dt.datetime, complete_since: dt.datetime | None
) -> tuple[bool, str]:
    """(eligible, reason): no bad record at any time in the three years up to ``at`` (R6, 33号 §4).

    Absence of a record proves something only where the list data is complete: the store must attest
    complete data since the window's start (``complete_since``), else nobody is eligible.
    """
    window_start = add_months(at, -12 * GREEN_CHANNEL_YEARS)
    for entry in entries:
        period = bad_period(entry)
        if period is not None and period[0] <= at and period[1] > window_start:
            return False, GREEN_CHANNEL_BAD_RECORD
    if complete_since is None:
        return False, GREEN_CHANNEL_NOT_ATTESTED
    if complete_since > window_start:
        return False, GREEN_CHANNEL_TOO_SHORT
    return True, ""


def evaluate(
    *,
    subject: ValidSubject,
    own_entries: Sequence[ListEntry],
    linked_entries: Sequence[ListEntry],
    matter: Matter,
    department: str,
    policy: PolicySet,
    at: dt.datetime,
    complete_since: dt.datetime | None = None,
) -> Evaluation:
    """The answer to one check. ``linked_entries`` are organisations' entries naming a person subject;
    ``complete_since``: since when the store attests complete list data (R6)."""
    memberships = [
        ShownMembership(
            entry,
            policy.memoranda[entry.memorandum_id],
            display_end(entry, policy),
            is_in_force(entry, policy, at),
        )
        for entry in own_entries
        if is_shown(entry, policy, at) and entry.memorandum_id in policy.memoranda
    ]
    if subject.kind is SubjectKind.PERSON:
        memberships += _linked_memberships(subject.code, linked_entries, policy, at)
    memberships.sort(key=_membership_order)

    black_in_force = any(m.in_force and m.entry.list_kind is ListKind.BLACK for m in memberships)
    measures = _select_measures(memberships, subject.kind, matter, department, policy, black_in_force)
    outcome = _outcome(memberships, black_in_force, bool(measures))
    history = list(own_entries) + [e for e in linked_entries if e.list_kind is ListKind.BLACK]
    person_restricted = subject.kind is SubjectKind.PERSON and outcome is Outcome.RESTRICTIONS
    eligible, green_reason = green_channel(history, at, complete_since)
    return Evaluation(
        subject=subject,
        subject_name=_subject_name(subject, own_entries, linked_entries),
        matter=matter,
        outcome=outcome,
        memberships=tuple(memberships),
        measures=tuple(measures),
        green_channel=eligible,
        human_review_required=person_restricted,
        review_notice=REVIEW_NOTICE if person_restricted else "",
        green_channel_reason=green_reason,
        data_complete_since=complete_since,
    )


def _linked_memberships(
    person_id: str, entries: Sequence[ListEntry], policy: PolicySet, at: dt.datetime
) -> list[ShownMembership]:
    found = []
    for entry in entries:
        if entry.list_kind is not ListKind.BLACK or entry.memorandum_id not in policy.memoranda:
            continue
        if not is_shown(entry, policy, at):
            continue
        for person in entry.responsible_persons:
            if person.person_id == person_id:
                link = Link(entry.subject_code, entry.subject_name, person.role)
                found.append(
                    ShownMembership(
                        entry,
                        policy.memoranda[entry.memorandum_id],
                        display_end(entry, policy),
                        is_in_force(entry, policy, at),
                        via=link,
                    )
                )
                break
    return found


def _select_measures(
    memberships: Sequence[ShownMembership],
    subject_kind: SubjectKind,
    matter: Matter,
    department: str,
    policy: PolicySet,
    black_in_force: bool,
) -> list[AppliedMeasure]:
    selected: dict[str, AppliedMeasure] = {}
    for membership in memberships:
        if not membership.in_force:
            continue
        for measure_id in membership.memorandum.measures:
            measure = policy.measures[measure_id]
            if measure.id in selected or not measure.matter_kinds & matter.matter_kinds:
                continue
            if not measure.implemented_by(department):
                continue
            if measure.kind is MeasureKind.INCENTIVE and black_in_force:
                continue
            if membership.via is None:
                if subject_kind not in measure.subject_kinds:
                    continue
            elif not measure.reaches_responsible_persons:
                continue
            selected[measure.id] = AppliedMeasure(
                measure, membership.memorandum.id, membership.entry.entry_id
            )
    return sorted(selected.values(), key=lambda applied: (not applied.measure.mandatory, applied.measure.id))


def _outcome(memberships: Sequence[ShownMembership], black_in_force: bool, has_measures: bool) -> Outcome:
    if black_in_force and has_measures:
        return Outcome.RESTRICTIONS
    if any(m.entry.status is EntryStatus.UNDER_OBJECTION for m in memberships):
        return Outcome.UNDER_OBJECTION
    if has_measures:
        return Outcome.INCENTIVES
    if any(m.in_force for m in memberships):
        # Listed, but nothing this caller's department implements for this matter's kinds applies.
        return Outcome.LISTED_NO_MEASURES
    return Outcome.NO_RECORD


def _membership_order(membership: ShownMembership) -> tuple[int, int, str]:
    black_first = 0 if membership.entry.list_kind is ListKind.BLACK else 1
    return (black_first, 0 if membership.in_force else 1, membership.entry.entry_id)


def _subject_name(subject: ValidSubject, own: Sequence[ListEntry], linked: Sequence[ListEntry]) -> str:
    for entry in own:
        if entry.subject_name:
            return entry.subject_name
    for entry in linked:
        for person in entry.responsible_persons:
            if person.person_id == subject.code and person.name:
                return person.name
    return ""
