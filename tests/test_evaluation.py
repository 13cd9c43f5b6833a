"""R2–R7 and R13 at the instants that decide them (the evaluation is a pure function of time)."""

from __future__ import annotations

import datetime as dt

import pytest

from mustcheck.identifiers import SubjectKind, ValidSubject
from mustcheck_gateway.evaluation import Evaluation, Outcome, add_months, evaluate
from mustcheck_gateway.policy import PolicySet
from mustcheck_gateway.policy.model import ListKind, MeasureKind
from mustcheck_gateway.store import EntryStatus, ListEntry, PersonRole

from factories import days, make_entry, new_citizen_id, new_uscc

T0 = dt.datetime(2026, 4, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
TICK = dt.timedelta(microseconds=1)
# The store attests complete list data since long before every instant these tests check at (R6).
COMPLETE_SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def check(
    policy: PolicySet,
    entries: list[ListEntry],
    at: dt.datetime,
    *,
    matter: str = "MOF-0001",
    department: str = "approval",
    person: str | None = None,
    linked: list[ListEntry] | None = None,
    complete_since: dt.datetime | None = COMPLETE_SINCE,
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
        complete_since=complete_since,
    )


# R3: time decides membership ----------------------------------------------------------


def test_effective_date_boundary(policy: PolicySet) -> None:
    entry = make_entry(new_uscc(), effective=T0, decision=T0 - days(3))
    before = check(policy, [entry], T0 - TICK)
    at = check(policy, [entry], T0)
    assert before.outcome is Outcome.NO_RECORD and not before.memberships and not before.measures
    assert at.outcome is Outcome.RESTRICTIONS and at.memberships[0].in_force and at.measures


def test_end_of_punishment_period(policy: PolicySet) -> None:
    end = T0 + days(365)
    entry = make_entry(new_uscc(), effective=T0, punish_until=end, display_until=end + days(180))
    last = check(policy, [entry], end - TICK)
    after = check(policy, [entry], end)
    assert last.outcome is Outcome.RESTRICTIONS and last.measures
    # Still shown (display period), but no longer counts and no measure applies.
    assert after.outcome is Outcome.NO_RECORD
    assert len(after.memberships) == 1 and not after.memberships[0].in_force
    assert after.measures == ()


def test_end_of_display_period(policy: PolicySet) -> None:
    punish, display = T0 + days(365), T0 + days(545)
    entry = make_entry(new_uscc(), effective=T0, punish_until=punish, display_until=display)
    assert len(check(policy, [entry], display - TICK).memberships) == 1
    assert check(policy, [entry], display).memberships == ()


def test_publication_stops_at_the_severity_maximum(policy: PolicySet) -> None:
    # A general-class record (at most 12 months) that claims a longer display period.
    decision = T0
    entry = make_entry(
        new_uscc(),
        effective=T0,
        decision=decision,
        severity="general",
        punish_until=T0 + days(200),
        display_until=T0 + days(900),
    )
    cap = add_months(decision, policy.severities["general"].max_months)
    assert len(check(policy, [entry], cap - TICK).memberships) == 1
    assert check(policy, [entry], cap).memberships == ()


# R2: measures for the matter and the caller's department ------------------------------


def test_measures_follow_the_matter_kinds(policy: PolicySet) -> None:
    entry = make_entry(new_uscc(), effective=T0)
    procurement = check(policy, [entry], T0 + days(1), matter="MOF-0001")
    matter = policy.matters["MOF-0001"]
    assert procurement.measures
    for applied in procurement.measures:
        assert applied.measure.matter_kinds & matter.matter_kinds
        assert applied.measure.kind is MeasureKind.PUNISHMENT
        assert applied.measure.id in policy.memoranda["judgment-defaulters"].measures
    licensing = check(policy, [entry], T0 + days(1), matter="MOHURD-0001")
    assert {m.measure.id for m in procurement.measures} != {m.measure.id for m in licensing.measures}


def test_measures_follow_the_callers_department(policy: PolicySet) -> None:
    entry = make_entry(new_uscc(), effective=T0)
    memo = policy.memoranda["judgment-defaulters"]
    specific = [
        (policy.measures[m], matter)
        for m in memo.measures
        if "*" not in policy.measures[m].implementing_departments
        and SubjectKind.ORGANIZATION in policy.measures[m].subject_kinds
        for matter in policy.matters.values()
        if matter.matter_kinds & policy.measures[m].matter_kinds
    ]
    assert specific, "the test needs a measure with named implementing departments"
    measure, matter = specific[0]
    implementing = measure.implementing_departments[0]
    other = next(d for d in policy.departments if d not in measure.implementing_departments)
    with_dept = check(policy, [entry], T0 + days(1), matter=matter.code, department=implementing)
    without = check(policy, [entry], T0 + days(1), matter=matter.code, department=other)
    assert measure.id in {m.measure.id for m in with_dept.measures}
    assert measure.id not in {m.measure.id for m in without.measures}


def test_mandatory_measures_come_first_with_their_basis(policy: PolicySet) -> None:
    result = check(
        policy, [make_entry(new_uscc(), effective=T0)], T0 + days(1), matter="PUBLIC_RESOURCES-0001"
    )
    flags = [m.measure.mandatory for m in result.measures]
    assert flags == sorted(flags, reverse=True)
    assert all(m.measure.legal_basis for m in result.measures)


def test_red_list_gives_incentives(policy: PolicySet) -> None:
    entry = make_entry(new_uscc(), memorandum="a-grade-taxpayers", list_kind=ListKind.RED, effective=T0)
    result = check(policy, [entry], T0 + days(1), matter="APPROVAL-0001")
    assert result.outcome is Outcome.INCENTIVES
    assert result.measures and all(m.measure.kind is MeasureKind.INCENTIVE for m in result.measures)


def test_incentives_are_withheld_while_a_black_entry_is_in_force(policy: PolicySet) -> None:
    code = new_uscc()
    red = make_entry(code, memorandum="a-grade-taxpayers", list_kind=ListKind.RED, effective=T0)
    black = make_entry(code, effective=T0)
    result = check(policy, [red, black], T0 + days(1), matter="APPROVAL-0001")
    assert result.outcome is Outcome.RESTRICTIONS
    assert len(result.memberships) == 2
    assert all(m.measure.kind is MeasureKind.PUNISHMENT for m in result.measures)


# R4: objection --------------------------------------------------------------------------


def test_objection_suspends_measures(policy: PolicySet) -> None:
    entry = make_entry(
        new_uscc(), effective=T0, status=EntryStatus.UNDER_OBJECTION, status_changed_at=T0 + days(2)
    )
    result = check(policy, [entry], T0 + days(3))
    assert result.outcome is Outcome.UNDER_OBJECTION
    assert result.memberships[0].entry.status is EntryStatus.UNDER_OBJECTION
    assert not result.memberships[0].in_force
    assert result.measures == ()


# R5: repair and revocation --------------------------------------------------------------


@pytest.mark.parametrize("status", [EntryStatus.REPAIRED, EntryStatus.REVOKED])
def test_repaired_and_revoked_entries_no_longer_count(policy: PolicySet, status: EntryStatus) -> None:
    entry = make_entry(new_uscc(), effective=T0, status=status, status_changed_at=T0 + days(400))
    result = check(policy, [entry], T0 + days(401))
    assert result.outcome is Outcome.NO_RECORD and result.memberships == () and result.measures == ()


# R6: green channel ----------------------------------------------------------------------


def test_green_channel_after_three_clean_years(policy: PolicySet) -> None:
    end = T0 + days(365)
    entry = make_entry(new_uscc(), effective=T0, punish_until=end)
    three_years_later = add_months(end, 36)
    assert not check(policy, [entry], three_years_later - TICK).green_channel
    assert check(policy, [entry], three_years_later).green_channel


def test_repair_ends_the_bad_record_for_the_green_channel(policy: PolicySet) -> None:
    repaired_at = T0 + days(400)
    entry = make_entry(
        new_uscc(),
        effective=T0,
        punish_until=T0 + days(1000),
        status=EntryStatus.REPAIRED,
        status_changed_at=repaired_at,
    )
    assert not check(policy, [entry], add_months(repaired_at, 36) - TICK).green_channel
    assert check(policy, [entry], add_months(repaired_at, 36)).green_channel


def test_revoked_records_never_were_bad(policy: PolicySet) -> None:
    entry = make_entry(new_uscc(), effective=T0, status=EntryStatus.REVOKED, status_changed_at=T0 + days(10))
    assert check(policy, [entry], T0 + days(20)).green_channel


def test_a_subject_with_no_history_qualifies(policy: PolicySet) -> None:
    result = check(policy, [], T0)
    assert result.green_channel and result.green_channel_reason == ""
    assert result.data_complete_since == COMPLETE_SINCE


def test_without_attested_complete_data_nobody_qualifies(policy: PolicySet) -> None:
    result = check(policy, [], T0, complete_since=None)
    assert not result.green_channel
    assert result.green_channel_reason == "data.not_attested"


def test_less_than_three_complete_years_grants_nobody(policy: PolicySet) -> None:
    since = add_months(T0, -36)
    assert check(policy, [], T0, complete_since=since).green_channel
    short = check(policy, [], T0, complete_since=since + TICK)
    assert not short.green_channel and short.green_channel_reason == "data.too_short"


def test_a_decision_effective_tomorrow_is_a_bad_record_today(policy: PolicySet) -> None:
    entry = make_entry(new_uscc(), decision=T0 - days(1), effective=T0 + days(1))
    assert check(policy, [entry], T0 - days(1) - TICK).green_channel
    today = check(policy, [entry], T0)
    assert not today.green_channel and today.green_channel_reason == "bad_record"
    assert today.outcome is Outcome.NO_RECORD  # not in force yet: no measure applies before it takes effect


# R7 and R13: persons ---------------------------------------------------------------------


def test_person_carries_the_black_entry_of_their_company(policy: PolicySet) -> None:
    person = new_citizen_id()
    company = make_entry(
        new_uscc(),
        effective=T0,
        name="某某建设有限公司",
        persons=((person, "李四", PersonRole.LEGAL_REPRESENTATIVE),),
    )
    result = check(policy, [], T0 + days(1), person=person, linked=[company], matter="ORGANIZATION-0001")
    assert result.outcome is Outcome.RESTRICTIONS
    (membership,) = result.memberships
    assert membership.via is not None
    assert membership.via.organization_code == company.subject_code
    assert membership.via.role is PersonRole.LEGAL_REPRESENTATIVE
    assert result.measures
    assert all(m.measure.reaches_responsible_persons for m in result.measures)
    assert result.human_review_required and "个人信息保护法" in result.review_notice
    assert result.subject_name == "李四"


def test_persons_own_red_entry_needs_no_human_review(policy: PolicySet) -> None:
    person = new_citizen_id()
    entry = make_entry(
        person, kind=SubjectKind.PERSON, memorandum="young-volunteers", list_kind=ListKind.RED, effective=T0
    )
    result = check(policy, [entry], T0 + days(1), person=person, matter="MOHRSS-0001")
    assert result.outcome is Outcome.INCENTIVES
    assert not result.human_review_required and result.review_notice == ""


def test_organisations_never_need_human_review(policy: PolicySet) -> None:
    result = check(policy, [make_entry(new_uscc(), effective=T0)], T0 + days(1))
    assert result.outcome is Outcome.RESTRICTIONS and not result.human_review_required


def test_red_list_of_a_company_does_not_reach_its_representative(policy: PolicySet) -> None:
    person = new_citizen_id()
    company = make_entry(
        new_uscc(),
        memorandum="a-grade-taxpayers",
        list_kind=ListKind.RED,
        effective=T0,
        persons=((person, "王五", PersonRole.LEGAL_REPRESENTATIVE),),
    )
    result = check(policy, [], T0 + days(1), person=person, linked=[company])
    assert result.outcome is Outcome.NO_RECORD and result.memberships == ()


def test_listed_with_no_measure_the_callers_department_implements(policy: PolicySet) -> None:
    """R2: a subject listed for the matter's kinds whose measures none apply to this caller gets its own
    outcome, never "restrictions" with no measure."""
    for memo in policy.memoranda.values():
        if memo.list_kind is not ListKind.BLACK:
            continue
        for matter in policy.matters.values():
            relevant = [
                policy.measures[m]
                for m in memo.measures
                if policy.measures[m].matter_kinds & matter.matter_kinds
                and SubjectKind.ORGANIZATION in policy.measures[m].subject_kinds
            ]
            if not relevant or any("*" in m.implementing_departments for m in relevant):
                continue
            other = next(
                (d for d in policy.departments if not any(m.implemented_by(d) for m in relevant)), None
            )
            if other is None:
                continue
            entry = make_entry(new_uscc(), memorandum=memo.id, effective=T0)
            result = check(policy, [entry], T0 + days(1), matter=matter.code, department=other)
            assert result.outcome is Outcome.LISTED_NO_MEASURES
            assert result.measures == () and result.memberships[0].in_force
            implementing = relevant[0].implementing_departments[0]
            applied = check(policy, [entry], T0 + days(1), matter=matter.code, department=implementing)
            assert applied.outcome is Outcome.RESTRICTIONS and applied.measures
            return
    pytest.fail("the policy has no black memorandum whose measures for a matter name their departments")
