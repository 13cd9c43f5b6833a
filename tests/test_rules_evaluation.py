"""R2–R7 and R13 with dates that differ: decision ≠ effective ≠ punishment end ≠ display end.

Each test names the seeded bug it kills (docs/testing.md lists them). The expected instants are
computed here from the rule's text (calendar months added by hand), not by the module's helpers.
"""

from __future__ import annotations

import datetime as dt

import pytest

from mustcheck.identifiers import SubjectKind, ValidSubject
from mustcheck_gateway.evaluation import (
    REVIEW_NOTICE,
    Evaluation,
    Outcome,
    add_months,
    bad_period,
    display_end,
    evaluate,
    green_channel,
    is_in_force,
    is_shown,
)
from mustcheck_gateway.policy import PolicySet
from mustcheck_gateway.policy.model import ListKind, MeasureKind
from mustcheck_gateway.store import EntryStatus, ListEntry, PersonRole

from factories import days, make_entry, new_citizen_id, new_uscc

CST = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2026, 4, 1, 9, 30, tzinfo=CST)
TICK = dt.timedelta(microseconds=1)
COMPLETE_SINCE = dt.datetime(2000, 1, 1, tzinfo=CST)


def check(
    policy: PolicySet,
    entries: list[ListEntry],
    at: dt.datetime,
    *,
    matter: str = "MOF-0001",
    person: str | None = None,
    linked: list[ListEntry] | None = None,
    department: str = "approval",
) -> Evaluation:
    code = person or (entries[0].subject_code if entries else new_uscc())
    kind = SubjectKind.PERSON if person else SubjectKind.ORGANIZATION
    return evaluate(
        subject=ValidSubject(code, kind),
        own_entries=entries,
        linked_entries=linked or [],
        matter=policy.matters[matter],
        department=department,
        policy=policy,
        at=at,
        complete_since=COMPLETE_SINCE,
    )


def test_add_months_against_hand_computed_dates() -> None:
    assert add_months(dt.datetime(2026, 1, 31, 8, tzinfo=CST), 1) == dt.datetime(2026, 2, 28, 8, tzinfo=CST)
    assert add_months(dt.datetime(2024, 1, 31, tzinfo=CST), 1) == dt.datetime(2024, 2, 29, tzinfo=CST)
    assert add_months(dt.datetime(2026, 11, 15, tzinfo=CST), 2) == dt.datetime(2027, 1, 15, tzinfo=CST)
    assert add_months(dt.datetime(2026, 12, 15, tzinfo=CST), 12) == dt.datetime(2027, 12, 15, tzinfo=CST)
    assert add_months(dt.datetime(2026, 3, 31, tzinfo=CST), -36) == dt.datetime(2023, 3, 31, tzinfo=CST)
    assert add_months(dt.datetime(2026, 1, 10, tzinfo=CST), -1) == dt.datetime(2025, 12, 10, tzinfo=CST)


def test_severity_cap_counts_from_the_decision_date_not_the_effective_date(policy: PolicySet) -> None:
    """Kills: the R3 cap counted from the effective date."""
    months = policy.severities["general"].max_months
    assert months == 12  # the hand-computed cap below assumes it
    decision = dt.datetime(2025, 11, 3, 10, tzinfo=CST)  # decided five months before it took effect
    effective = dt.datetime(2026, 4, 1, 0, tzinfo=CST)
    cap = dt.datetime(2026, 11, 3, 10, tzinfo=CST)  # decision + 12 months
    entry = make_entry(
        new_uscc(),
        decision=decision,
        effective=effective,
        severity="general",
        punish_until=dt.datetime(2026, 12, 20, tzinfo=CST),  # after the cap, before the display date
        display_until=dt.datetime(2027, 9, 1, tzinfo=CST),
    )
    assert display_end(entry, policy) == cap
    shown = check(policy, [entry], cap - TICK)
    assert len(shown.memberships) == 1 and shown.memberships[0].display_until == cap
    assert shown.outcome is Outcome.RESTRICTIONS  # still in force up to the cap
    gone = check(policy, [entry], cap)
    assert gone.memberships == () and gone.outcome is Outcome.NO_RECORD


def test_the_cap_applies_only_to_black_entries_with_a_known_severity(policy: PolicySet) -> None:
    display = T0 + days(900)
    red = make_entry(
        new_uscc(),
        memorandum="a-grade-taxpayers",
        list_kind=ListKind.RED,
        effective=T0,
        punish_until=display,
        display_until=display,
    )
    assert display_end(red, policy) == display
    unknown = make_entry(
        new_uscc(), effective=T0, severity="no-such-class", display_until=display, punish_until=display
    )
    assert display_end(unknown, policy) == display


def test_punishment_end_before_display_end_stops_the_measures_only(policy: PolicySet) -> None:
    decision, effective = T0 - days(20), T0
    punish = T0 + days(200)
    entry = make_entry(
        new_uscc(), decision=decision, effective=effective, punish_until=punish, display_until=T0 + days(300)
    )
    assert check(policy, [entry], effective - TICK).memberships == ()  # decided, not yet effective
    assert check(policy, [entry], punish - TICK).outcome is Outcome.RESTRICTIONS
    after = check(policy, [entry], punish)
    assert after.outcome is Outcome.NO_RECORD and len(after.memberships) == 1
    assert not after.memberships[0].in_force and after.measures == ()


def test_a_person_s_own_black_entry_needs_human_review(policy: PolicySet) -> None:
    """Kills: the R13 human-review flag lost for a person's own black-list entry (not via a company)."""
    found = [
        (memo, matter)
        for memo in policy.memoranda.values()
        if memo.list_kind is ListKind.BLACK and SubjectKind.PERSON in memo.subject_kinds
        for matter in policy.matters.values()
        if any(
            SubjectKind.PERSON in policy.measures[m].subject_kinds
            and policy.measures[m].matter_kinds & matter.matter_kinds
            and policy.measures[m].implemented_by("approval")
            for m in memo.measures
        )
    ]
    assert found, "the policy needs a black memorandum with a measure on persons"
    memo, matter = found[0]
    person = new_citizen_id()
    entry = make_entry(person, kind=SubjectKind.PERSON, memorandum=memo.id, effective=T0, name="张三")
    result = check(policy, [entry], T0 + days(1), person=person, matter=matter.code)
    assert result.outcome is Outcome.RESTRICTIONS
    assert result.memberships[0].via is None  # the person's own entry
    assert result.human_review_required
    assert result.review_notice == REVIEW_NOTICE
    assert result.subject_name == "张三"
    # The same person, once the entry is no longer in force: no restriction, no review.
    later = check(policy, [entry], entry.punish_until, person=person, matter=matter.code)
    assert later.outcome is not Outcome.RESTRICTIONS
    assert not later.human_review_required and later.review_notice == ""


def test_a_responsible_person_is_found_among_several_and_only_once(policy: PolicySet) -> None:
    person, other = new_citizen_id(), new_citizen_id()
    company = make_entry(
        new_uscc(),
        effective=T0,
        persons=(
            (other, "甲", PersonRole.PRINCIPAL),
            (person, "乙", PersonRole.DIRECTLY_RESPONSIBLE),
            (person, "乙", PersonRole.LEGAL_REPRESENTATIVE),
        ),
    )
    result = check(policy, [], T0 + days(1), person=person, linked=[company], matter="ORGANIZATION-0001")
    (membership,) = result.memberships
    assert membership.via is not None and membership.via.role is PersonRole.DIRECTLY_RESPONSIBLE
    assert result.subject_name == "乙"
    assert check(policy, [], T0 - TICK, person=person, linked=[company]).memberships == ()


def test_a_person_linked_to_a_shown_entry_after_one_no_longer_shown_is_found(policy: PolicySet) -> None:
    person = new_citizen_id()
    revoked = make_entry(
        new_uscc(),
        effective=T0,
        status=EntryStatus.REVOKED,
        status_changed_at=T0 + days(1),
        persons=((person, "乙", PersonRole.PRINCIPAL),),
    )
    shown = make_entry(new_uscc(), effective=T0, persons=((person, "乙", PersonRole.LEGAL_REPRESENTATIVE),))
    result = check(
        policy, [], T0 + days(2), person=person, linked=[revoked, shown], matter="ORGANIZATION-0001"
    )
    (membership,) = result.memberships
    assert membership.entry == shown
    assert membership.via is not None and membership.via.role is PersonRole.LEGAL_REPRESENTATIVE


def test_black_entries_are_listed_first_then_in_force_then_by_id(policy: PolicySet) -> None:
    code = new_uscc()
    red = make_entry(code, memorandum="a-grade-taxpayers", list_kind=ListKind.RED, effective=T0 - days(5))
    ended = make_entry(code, effective=T0 - days(50), punish_until=T0 - days(1), display_until=T0 + days(90))
    black = make_entry(code, effective=T0 - days(10))
    result = check(policy, [red, ended, black], T0, matter="APPROVAL-0001")
    assert [m.entry.entry_id for m in result.memberships] == [black.entry_id, ended.entry_id, red.entry_id]


def test_measures_are_ordered_mandatory_first_then_by_id(policy: PolicySet) -> None:
    entry = make_entry(new_uscc(), effective=T0)
    for matter, department in ((m, d) for m in policy.matters for d in policy.departments):
        result = check(policy, [entry], T0 + days(1), matter=matter, department=department)
        keys = [(not m.measure.mandatory, m.measure.id) for m in result.measures]
        assert keys == sorted(keys)
        assert len({m.measure.id for m in result.measures}) == len(result.measures)
        if len({flag for flag, _ in keys}) == 2:
            return
    pytest.fail("no matter mixes mandatory and recommended measures")


def test_an_entry_under_objection_still_bars_the_green_channel() -> None:
    entry = make_entry(
        new_uscc(),
        decision=T0 - days(10),
        effective=T0,
        punish_until=T0 + days(100),
        status=EntryStatus.UNDER_OBJECTION,
        status_changed_at=T0 + days(1),
    )
    assert bad_period(entry) == (T0 - days(10), T0 + days(100))
    assert green_channel([entry], T0 + days(2), COMPLETE_SINCE) == (False, "bad_record")


def test_bad_period_starts_at_the_earlier_of_decision_and_effective_date() -> None:
    early_effect = make_entry(new_uscc(), decision=T0, effective=T0 - days(3), punish_until=T0 + days(9))
    assert bad_period(early_effect) == (T0 - days(3), T0 + days(9))
    repaired = make_entry(
        new_uscc(),
        decision=T0,
        effective=T0,
        punish_until=T0 + days(100),
        status=EntryStatus.REPAIRED,
        status_changed_at=T0 + days(40),
    )
    assert bad_period(repaired) == (T0, T0 + days(40))
    repaired_late = make_entry(
        new_uscc(),
        decision=T0,
        effective=T0,
        punish_until=T0 + days(100),
        status=EntryStatus.REPAIRED,
        status_changed_at=T0 + days(400),
    )
    assert bad_period(repaired_late) == (T0, T0 + days(100))
    repaired_before = make_entry(
        new_uscc(),
        decision=T0,
        effective=T0,
        punish_until=T0 + days(100),
        status=EntryStatus.REPAIRED,
        status_changed_at=T0,
    )
    assert bad_period(repaired_before) is None
    red = make_entry(new_uscc(), memorandum="a-grade-taxpayers", list_kind=ListKind.RED, effective=T0)
    assert bad_period(red) is None


def test_the_green_channel_window_edges() -> None:
    """A bad record ending exactly at the window's start no longer counts; one starting after ``at`` does
    not count yet."""
    at = dt.datetime(2026, 4, 1, 12, tzinfo=CST)
    window_start = dt.datetime(2023, 4, 1, 12, tzinfo=CST)
    ended = make_entry(
        new_uscc(),
        decision=window_start - days(99),
        effective=window_start - days(99),
        punish_until=window_start,
    )
    assert green_channel([ended], at, COMPLETE_SINCE) == (True, "")
    just_in = make_entry(
        new_uscc(),
        decision=window_start - days(99),
        effective=window_start - days(99),
        punish_until=window_start + TICK,
    )
    assert green_channel([just_in], at, COMPLETE_SINCE) == (False, "bad_record")
    future = make_entry(new_uscc(), decision=at + TICK, effective=at + days(1))
    assert green_channel([future], at, COMPLETE_SINCE) == (True, "")
    today = make_entry(new_uscc(), decision=at, effective=at + days(1))
    assert green_channel([today], at, COMPLETE_SINCE) == (False, "bad_record")
    assert green_channel([], at, window_start) == (True, "")
    assert green_channel([], at, window_start + TICK) == (False, "data.too_short")


def test_incentives_need_no_black_entry_in_force(policy: PolicySet) -> None:
    code = new_uscc()
    red = make_entry(code, memorandum="a-grade-taxpayers", list_kind=ListKind.RED, effective=T0)
    expired_black = make_entry(code, effective=T0 - days(400), punish_until=T0, display_until=T0 + days(30))
    result = check(policy, [red, expired_black], T0 + days(1), matter="APPROVAL-0001")
    assert result.outcome is Outcome.INCENTIVES
    assert result.measures and all(m.measure.kind is MeasureKind.INCENTIVE for m in result.measures)
    assert not result.human_review_required


def test_an_entry_is_in_force_only_while_active_and_before_both_ends(policy: PolicySet) -> None:
    cap_first = make_entry(
        new_uscc(),
        decision=T0,
        effective=T0,
        severity="general",
        punish_until=T0 + days(900),
        display_until=T0 + days(950),
    )
    cap = add_months(T0, 12)
    assert is_in_force(cap_first, policy, cap - TICK) and not is_in_force(cap_first, policy, cap)
    objected = make_entry(new_uscc(), effective=T0, status=EntryStatus.UNDER_OBJECTION, status_changed_at=T0)
    assert is_shown(objected, policy, T0) and not is_in_force(objected, policy, T0)
    assert not is_in_force(objected, policy, T0 - TICK)


def test_entries_of_unknown_memoranda_are_ignored(policy: PolicySet) -> None:
    code = new_uscc()
    unknown = make_entry(code, memorandum="no-such-memorandum", effective=T0)
    result = check(policy, [unknown], T0 + days(1))
    assert result.memberships == () and result.outcome is Outcome.NO_RECORD
    person = new_citizen_id()
    linked = make_entry(
        new_uscc(),
        memorandum="no-such-memorandum",
        effective=T0,
        persons=((person, "丙", PersonRole.PRINCIPAL),),
    )
    assert check(policy, [], T0 + days(1), person=person, linked=[linked]).memberships == ()


def test_an_organisation_carries_no_linked_entries(policy: PolicySet) -> None:
    code = new_uscc()
    linked = make_entry(new_uscc(), effective=T0, persons=((code, "x", PersonRole.PRINCIPAL),))
    result = evaluate(
        subject=ValidSubject(code, SubjectKind.ORGANIZATION),
        own_entries=[],
        linked_entries=[linked],
        matter=policy.matters["MOF-0001"],
        department="approval",
        policy=policy,
        at=T0 + days(1),
        complete_since=COMPLETE_SINCE,
    )
    assert result.memberships == () and result.outcome is Outcome.NO_RECORD


def test_a_person_s_green_channel_counts_linked_black_entries_only(policy: PolicySet) -> None:
    person = new_citizen_id()
    red = make_entry(
        new_uscc(),
        memorandum="a-grade-taxpayers",
        list_kind=ListKind.RED,
        effective=T0,
        persons=((person, "丁", PersonRole.LEGAL_REPRESENTATIVE),),
    )
    assert check(policy, [], T0 + days(1), person=person, linked=[red]).green_channel
    black = make_entry(new_uscc(), effective=T0, persons=((person, "丁", PersonRole.LEGAL_REPRESENTATIVE),))
    barred = check(policy, [], T0 + days(1), person=person, linked=[black])
    assert not barred.green_channel and barred.green_channel_reason == "bad_record"


def test_an_objection_outranks_incentives(policy: PolicySet) -> None:
    code = new_uscc()
    red = make_entry(code, memorandum="a-grade-taxpayers", list_kind=ListKind.RED, effective=T0)
    objected = make_entry(code, effective=T0, status=EntryStatus.UNDER_OBJECTION, status_changed_at=T0)
    result = check(policy, [red, objected], T0 + days(1), matter="APPROVAL-0001")
    assert result.outcome is Outcome.UNDER_OBJECTION
    assert result.measures and all(m.measure.kind is MeasureKind.INCENTIVE for m in result.measures)


def test_two_entries_of_one_memorandum_apply_each_measure_once_from_the_first(policy: PolicySet) -> None:
    code = new_uscc()
    first = make_entry(code, effective=T0 - days(2))
    second = make_entry(code, effective=T0 - days(1))
    result = check(policy, [second, first], T0)
    ids = [m.measure.id for m in result.measures]
    assert ids and len(ids) == len(set(ids))
    earliest = min(first.entry_id, second.entry_id)
    assert all(m.entry_id == earliest and m.memorandum_id == "judgment-defaulters" for m in result.measures)


def test_the_subject_name_is_the_first_one_given(policy: PolicySet) -> None:
    code = new_uscc()
    unnamed = make_entry(code, effective=T0, name="")
    named = make_entry(code, effective=T0, name="某某公司")
    assert check(policy, [unnamed, named], T0 + days(1)).subject_name == "某某公司"
    person = new_citizen_id()
    company = make_entry(new_uscc(), effective=T0, persons=((person, "", PersonRole.PRINCIPAL),))
    assert check(policy, [], T0 + days(1), person=person, linked=[company]).subject_name == ""


def test_an_answer_cannot_be_changed_after_it_is_made(policy: PolicySet) -> None:
    result = check(policy, [make_entry(new_uscc(), effective=T0)], T0 + days(1))
    with pytest.raises(AttributeError):
        result.outcome = Outcome.NO_RECORD  # type: ignore[misc]
    with pytest.raises(AttributeError):
        result.measures[0].entry_id = "other"  # type: ignore[misc]
