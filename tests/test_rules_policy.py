"""Policy validation, rule by rule: each cross-file rule broken on its own in an otherwise valid set,
and the loader's per-key checks at their limits. Each expected problem is written out in full."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from mustcheck.identifiers import SubjectKind
from mustcheck_gateway.policy import PolicyError, PolicySet, load_policies
from mustcheck_gateway.policy.model import Issuer, LegacyCode, ListKind, MeasureKind
from mustcheck_gateway.policy.validate import validate

from conftest import POLICY_DIR


def with_measure(policy: PolicySet, measure_id: str, **changes: object) -> PolicySet:
    measures = dict(policy.measures)
    measures[measure_id] = dataclasses.replace(measures[measure_id], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(policy, measures=measures)


def with_memo(policy: PolicySet, memo_id: str, **changes: object) -> PolicySet:
    memoranda = dict(policy.memoranda)
    memoranda[memo_id] = dataclasses.replace(memoranda[memo_id], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(policy, memoranda=memoranda)


def problems(policy: PolicySet) -> list[str]:
    return [str(problem) for problem in validate(policy)]


def test_the_real_policy_set_has_no_problem(policy: PolicySet) -> None:
    assert problems(policy) == []


@pytest.mark.parametrize("issuer", [Issuer.INDUSTRY, Issuer.MARKET])
def test_an_industry_or_market_measure_cannot_be_mandatory(policy: PolicySet, issuer: Issuer) -> None:
    """Kills: industry bodies' measures allowed to be mandatory (R13) — each issuer on its own."""
    measure = next(m for m in policy.measures.values() if m.issuer is issuer)
    assert problems(with_measure(policy, measure.id, mandatory=True)) == [
        f"measures.toml: measure ({measure.id}).mandatory: a measure issued by a {issuer.value} body "
        "can only be recommended (R13)"
    ]
    assert problems(with_measure(policy, measure.id, mandatory=False)) == []


def test_a_government_measure_may_be_mandatory(policy: PolicySet) -> None:
    measure = next(m for m in policy.measures.values() if m.issuer is Issuer.GOVERNMENT and not m.mandatory)
    assert problems(with_measure(policy, measure.id, mandatory=True)) == []


def test_a_punishment_needs_a_legal_basis_an_incentive_does_not(policy: PolicySet) -> None:
    punishment = next(m for m in policy.measures.values() if m.kind is MeasureKind.PUNISHMENT)
    incentive = next(m for m in policy.measures.values() if m.kind is MeasureKind.INCENTIVE)
    assert problems(with_measure(policy, punishment.id, legal_basis=None)) == [
        f"measures.toml: measure ({punishment.id}).legal_basis: punishment measure has no legal basis (R13)"
    ]
    assert problems(with_measure(policy, incentive.id, legal_basis=None)) == []


def test_a_measures_unknown_matter_kinds_and_departments_are_each_named(policy: PolicySet) -> None:
    measure = next(m for m in policy.measures.values() if "*" not in m.implementing_departments)
    broken = with_measure(
        policy,
        measure.id,
        matter_kinds=measure.matter_kinds | {"zz-kind", "aa-kind"},
        implementing_departments=(*measure.implementing_departments, "nowhere", "*"),
    )
    key = f"measures.toml: measure ({measure.id})"
    assert problems(broken) == [
        f"{key}.matter_kinds: unknown matter kind 'aa-kind'",
        f"{key}.matter_kinds: unknown matter kind 'zz-kind'",
        f"{key}.implementing_departments: unknown department 'nowhere'",
    ]


def test_memorandum_numbers_must_be_unique_but_zero_means_unnumbered(policy: PolicySet) -> None:
    first, second = list(policy.memoranda.values())[:2]
    assert first.number
    assert problems(with_memo(policy, second.id, number=first.number)) == [
        f"memoranda.toml: memorandum ({second.id}).number: number {first.number} also used by {first.id}"
    ]
    unnumbered = with_memo(with_memo(policy, first.id, number=0), second.id, number=0)
    assert problems(unnumbered) == []


def test_a_memorandum_names_known_department_and_severity(policy: PolicySet) -> None:
    black = next(m for m in policy.memoranda.values() if m.list_kind is ListKind.BLACK)
    red = next(m for m in policy.memoranda.values() if m.list_kind is ListKind.RED)
    key = f"memoranda.toml: memorandum ({black.id})"
    assert problems(with_memo(policy, black.id, initiating_department="nowhere")) == [
        f"{key}.initiating_department: unknown department 'nowhere'"
    ]
    assert problems(with_memo(policy, black.id, severity="awful")) == [
        f"{key}.severity: unknown severity class 'awful'"
    ]
    assert problems(with_memo(policy, black.id, severity="none")) == [
        f"{key}.severity: unknown severity class 'none'"
    ]
    assert problems(with_memo(policy, red.id, severity="serious")) == [
        f"memoranda.toml: memorandum ({red.id}).severity: a red list has no severity class; use 'none'"
    ]


def test_a_memorandum_carries_measures_of_its_own_kind_for_its_subjects(policy: PolicySet) -> None:
    black = next(m for m in policy.memoranda.values() if m.list_kind is ListKind.BLACK)
    red = next(m for m in policy.memoranda.values() if m.list_kind is ListKind.RED)
    key = f"memoranda.toml: memorandum ({black.id}).measures"
    assert problems(with_memo(policy, black.id, measures=(*black.measures, "NOPE"))) == [
        f"{key}: unknown measure 'NOPE'"
    ]
    assert problems(with_memo(policy, black.id, measures=(red.measures[0],))) == [
        f"{key}: black list cannot carry incentive measure {red.measures[0]!r}"
    ]
    assert problems(with_memo(policy, red.id, measures=(black.measures[0],))) == [
        f"memoranda.toml: memorandum ({red.id}).measures: red list cannot carry "
        f"punishment measure {black.measures[0]!r}"
    ]
    person_only = next(
        m for m in black.measures if policy.measures[m].subject_kinds == frozenset({SubjectKind.ORGANIZATION})
    )
    assert problems(
        with_memo(policy, black.id, measures=(person_only,), subject_kinds=frozenset({SubjectKind.PERSON}))
    ) == [f"{key}: measure {person_only!r} applies to none of its subject kinds"]


def test_a_matter_names_known_department_and_kinds(policy: PolicySet) -> None:
    code, matter = next(iter(policy.matters.items()))
    matters = dict(policy.matters)
    matters[code] = dataclasses.replace(
        matter, department="nowhere", matter_kinds=matter.matter_kinds | {"b-kind", "a-kind"}
    )
    assert problems(dataclasses.replace(policy, matters=matters)) == [
        f"catalog.toml: matter ({code}).department: unknown department 'nowhere'",
        f"catalog.toml: matter ({code}).matter_kinds: unknown matter kind 'a-kind'",
        f"catalog.toml: matter ({code}).matter_kinds: unknown matter kind 'b-kind'",
    ]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("91350203M0001QAY9B", None),  # the real pilot-era code: fails only a checksum
        ("914403001922038216", "passes every checksum; it needs no allow-list entry"),
        (
            "9144030019220382",
            "not a well-formed credit code: unified social credit code must have 18 characters, got 16",
        ),
    ],
)
def test_legacy_codes_must_fail_a_checksum_and_only_a_checksum(
    policy: PolicySet, code: str, expected: str | None
) -> None:
    changed = dataclasses.replace(policy, legacy_codes={code: LegacyCode(code, "test")})
    assert problems(changed) == (
        [] if expected is None else [f"legacy_codes.toml: legacy_code ({code}).code: {expected}"]
    )


# -- the loader's per-key checks --------------------------------------------------------------


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, target)
    return target


def load_problems(directory: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policies(directory)
    assert str(len(caught.value.problems)) in str(caught.value)
    return [str(problem) for problem in caught.value.problems]


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_severity_bounds(copy: Path) -> None:
    replace_in(copy / "severity.toml", "min_months = 3\nmax_months = 12", "min_months = 13\nmax_months = 12")
    assert "severity.toml: severity[1] (general).min_months: exceeds max_months (12)" in load_problems(copy)


def test_severity_bounds_may_be_equal_and_max_at_least_one(copy: Path) -> None:
    replace_in(copy / "severity.toml", "min_months = 3\nmax_months = 12", "min_months = 12\nmax_months = 12")
    assert load_policies(copy).severities["general"].min_months == 12
    replace_in(copy / "severity.toml", "min_months = 0\nmax_months = 3", "min_months = 0\nmax_months = 0")
    assert load_problems(copy) == ["severity.toml: severity[0] (minor).max_months: must be at least 1, got 0"]


def test_a_memorandum_shown_shorter_than_it_punishes_is_refused(copy: Path) -> None:
    policy = load_policies(copy)
    memo = policy.memoranda["judgment-defaulters"]
    text = (copy / "memoranda.toml").read_text(encoding="utf-8")
    start = text.index('id = "judgment-defaulters"')
    old = f"display_months = {memo.display_months}"
    at = text.index(old, start)
    (copy / "memoranda.toml").write_text(
        text[:at] + f"display_months = {memo.punish_months - 1}" + text[at + len(old) :], encoding="utf-8"
    )
    assert any(
        p.endswith(
            f"(judgment-defaulters).display_months: is shorter than punish_months ({memo.punish_months})"
        )
        for p in load_problems(copy)
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('name = "一般失信"', 'name = "  "', "severity.toml: severity[1] (general).name: is empty"),
        ('name = "一般失信"', "name = 3", "severity.toml: severity[1] (general).name: must be str, got int"),
        (
            "published = true",
            "published = 1",
            "severity.toml: severity[1] (general).published: must be bool, got int",
        ),
        (
            "max_months = 12",
            "max_months = true",
            "severity.toml: severity[1] (general).max_months: must be int, got bool",
        ),
        ("max_months = 12", "", "severity.toml: severity[1] (general).max_months: missing"),
        (
            'class = "general"',
            'class = "general"\nextra = 1\n[[unknown]]\nx = 1\n[[severity]]\nclass = "g2"',
            "severity.toml: : unknown table(s) unknown; expected [[severity]]",
        ),
    ],
)
def test_a_bad_key_is_named_with_its_file_row_and_id(copy: Path, old: str, new: str, expected: str) -> None:
    replace_in(copy / "severity.toml", old, new)
    assert expected in load_problems(copy)


def test_lists_of_strings_are_checked(copy: Path) -> None:
    replace_in(copy / "measures.toml", 'matter_kinds = ["honours"]', 'matter_kinds = ["honours", "honours"]')
    assert (
        "measures.toml: measure[0] (I-EXEMPLAR).matter_kinds: lists honours more than once"
        in load_problems(copy)
    )
    replace_in(copy / "measures.toml", 'matter_kinds = ["honours", "honours"]', "matter_kinds = []")
    assert "measures.toml: measure[0] (I-EXEMPLAR).matter_kinds: is empty" in load_problems(copy)
    replace_in(copy / "measures.toml", "matter_kinds = []", 'matter_kinds = ["honours", " "]')
    assert (
        "measures.toml: measure[0] (I-EXEMPLAR).matter_kinds: must be a list of non-empty strings"
        in load_problems(copy)
    )
    replace_in(copy / "measures.toml", 'matter_kinds = ["honours", " "]', 'matter_kinds = [" honours "]')
    assert load_policies(copy).measures["I-EXEMPLAR"].matter_kinds == {"honours"}


def test_choices_and_subject_kinds_are_checked(copy: Path) -> None:
    replace_in(copy / "measures.toml", 'kind = "incentive"', 'kind = "reward"')
    replace_in(
        copy / "measures.toml", 'subject_kinds = ["organization", "person"]', 'subject_kinds = ["robot"]'
    )
    found = load_problems(copy)
    assert (
        "measures.toml: measure[0] (I-EXEMPLAR).kind: 'reward' is not one of: punishment, incentive" in found
        or (
            "measures.toml: measure[0] (I-EXEMPLAR).kind: 'reward' is not one of: incentive, punishment"
            in found
        )
    )
    assert (
        "measures.toml: measure[0] (I-EXEMPLAR).subject_kinds: 'robot' is not one of: organization, person"
        in found
    )


def test_the_issuer_defaults_to_government_and_a_basis_needs_both_parts(copy: Path) -> None:
    replace_in(copy / "measures.toml", 'issuer = "government"', "")
    assert load_policies(copy).measures["I-EXEMPLAR"].issuer is Issuer.GOVERNMENT
    replace_in(copy / "measures.toml", 'section = "§3" }', 'section = " " }')
    assert (
        "measures.toml: measure[0] (I-EXEMPLAR).legal_basis: needs a non-empty document and section"
        in load_problems(copy)
    )
    replace_in(
        copy / "measures.toml",
        'legal_basis = { document = "国发〔2016〕33号", section = " " }',
        'legal_basis = "33号"',
    )
    assert (
        "measures.toml: measure[0] (I-EXEMPLAR).legal_basis: must be a table { document = …, section = … }"
        in load_problems(copy)
    )


def test_missing_and_empty_files(copy: Path) -> None:
    (copy / "legacy_codes.toml").write_text("", encoding="utf-8")
    assert load_policies(copy).legacy_codes == {}  # the one optional table
    (copy / "severity.toml").write_text("", encoding="utf-8")
    (copy / "departments.toml").unlink()
    found = load_problems(copy)
    assert "severity.toml: severity: expected one or more [[severity]] entries" in found
    assert f"departments.toml: : file not found in {copy}" in found


@pytest.mark.parametrize("severity", ["general", "minor", "serious"])
def test_a_red_memorandum_may_name_no_severity_class(policy: PolicySet, severity: str) -> None:
    red = next(m for m in policy.memoranda.values() if m.list_kind is ListKind.RED)
    assert problems(with_memo(policy, red.id, severity=severity)) == [
        f"memoranda.toml: memorandum ({red.id}).severity: a red list has no severity class; use 'none'"
    ]


def test_counts_may_not_be_negative(copy: Path) -> None:
    replace_in(copy / "severity.toml", "min_months = 0", "min_months = -1")
    assert "severity.toml: severity[0] (minor).min_months: must be at least 0, got -1" in load_problems(copy)


def test_a_decision_tolerance_of_one_second_is_the_least(copy: Path) -> None:
    text = (copy / "catalog.toml").read_text(encoding="utf-8")
    start = text.index("decision_tolerance_s = ")
    end = text.index("\n", start)
    (copy / "catalog.toml").write_text(
        text[:start] + "decision_tolerance_s = 1" + text[end:], encoding="utf-8"
    )
    first = min(load_policies(copy).matters.values(), key=lambda m: m.decision_tolerance_s)
    assert first.decision_tolerance_s == 1
    text = (copy / "catalog.toml").read_text(encoding="utf-8")
    (copy / "catalog.toml").write_text(
        text.replace("decision_tolerance_s = 1\n", "decision_tolerance_s = 0\n", 1), encoding="utf-8"
    )
    assert any(p.endswith("decision_tolerance_s: must be at least 1, got 0") for p in load_problems(copy))


def test_a_freshness_tolerance_of_one_second_is_the_least(copy: Path) -> None:
    text = (copy / "catalog.toml").read_text(encoding="utf-8")
    start = text.index("freshness_tolerance_s = ")
    end = text.index("\n", start)
    (copy / "catalog.toml").write_text(
        text[:start] + "freshness_tolerance_s = 1" + text[end:], encoding="utf-8"
    )
    least = min(load_policies(copy).matters.values(), key=lambda m: m.freshness_tolerance_s)
    assert least.freshness_tolerance_s == 1
    text = (copy / "catalog.toml").read_text(encoding="utf-8")
    (copy / "catalog.toml").write_text(
        text.replace("freshness_tolerance_s = 1\n", "freshness_tolerance_s = 0\n", 1), encoding="utf-8"
    )
    assert any(p.endswith("freshness_tolerance_s: must be at least 1, got 0") for p in load_problems(copy))


def test_a_punishment_of_zero_months_is_refused_and_every_bad_row_is_named(copy: Path) -> None:
    text = (copy / "memoranda.toml").read_text(encoding="utf-8")
    (copy / "memoranda.toml").write_text(
        text.replace("punish_months = 24\n", "punish_months = 0\n", 1).replace(
            "punish_months = 36\n", "punish_months = -1\n", 1
        ),
        encoding="utf-8",
    )
    problems = load_problems(copy)
    assert any(p.endswith("punish_months: must be at least 1, got 0") for p in problems), problems
    assert any(p.endswith("punish_months: must be at least 1, got -1") for p in problems), problems


def test_a_duplicate_row_does_not_hide_the_problems_of_the_rows_after_it(copy: Path) -> None:
    text = (copy / "catalog.toml").read_text(encoding="utf-8")
    first = text.index("[[matter]]")
    second = text.index("[[matter]]", first + 1)
    duplicated = text[:second] + text[first:second] + text[second:]
    last = duplicated.rindex("freshness_tolerance_s = ")
    end = duplicated.index("\n", last)
    (copy / "catalog.toml").write_text(
        duplicated[:last] + "freshness_tolerance_s = 0" + duplicated[end:], encoding="utf-8"
    )
    problems = load_problems(copy)
    assert any("duplicate matter 'MOHURD-0001'" in p for p in problems), problems
    assert any(p.endswith("freshness_tolerance_s: must be at least 1, got 0") for p in problems), problems


def test_a_row_with_a_problem_is_left_out_and_its_stand_in_values_raise_nothing_more(copy: Path) -> None:
    """A missing department is named once: the row is not added to the set, so the empty stand-in the
    loader returned for it is never checked against the departments ("unknown department ''")."""
    replace_in(copy / "catalog.toml", 'department = "mohurd"\n', "")
    assert load_problems(copy) == ["catalog.toml: matter[0] (MOHURD-0001).department: missing"]


@pytest.mark.parametrize(
    ("new", "expected"),
    [("", "missing"), ("name = 3\n", "must be str, got int"), ('name = " "\n', "is empty")],
)
def test_a_missing_or_mistyped_text_is_named_once_not_also_as_empty(
    copy: Path, new: str, expected: str
) -> None:
    """Fixed: a missing or mistyped text key was also reported as "is empty" (the loader's stand-in)."""
    replace_in(copy / "catalog.toml", 'name = "建筑工程施工许可证核发"\n', new)
    assert load_problems(copy) == [f"catalog.toml: matter[0] (MOHURD-0001).name: {expected}"]


def test_a_memorandum_may_be_shown_exactly_as_long_as_it_punishes_or_longer(copy: Path) -> None:
    """display_months ≥ punish_months ≥ 1: one month each is the least; a longer display is allowed;
    a display of 0 months is named as such (and as shorter than the punishment)."""
    memoranda = copy / "memoranda.toml"
    replace_in(memoranda, "punish_months = 12\ndisplay_months = 12", "punish_months = 1\ndisplay_months = 1")
    replace_in(
        memoranda, "punish_months = 24\ndisplay_months = 24", "punish_months = 24\ndisplay_months = 30"
    )
    loaded = load_policies(copy)
    months = sorted((m.punish_months, m.display_months) for m in loaded.memoranda.values())
    assert (1, 1) in months and (24, 30) in months
    replace_in(memoranda, "punish_months = 1\ndisplay_months = 1", "punish_months = 1\ndisplay_months = 0")
    found = [p.split(".", 2)[-1] for p in load_problems(copy)]
    assert found == [
        "display_months: must be at least 1, got 0",
        "display_months: is shorter than punish_months (1)",
    ]


@pytest.mark.parametrize("department", ["!nowhere", "(none)", "**", "nowhere"])
def test_an_unknown_implementing_department_is_named_however_it_sorts(
    policy: PolicySet, department: str
) -> None:
    """Only "*" itself means every department; any other unknown name is named, whether it sorts before
    "*" or after it."""
    measure = next(m for m in policy.measures.values() if "*" not in m.implementing_departments)
    broken = with_measure(
        policy, measure.id, implementing_departments=(*measure.implementing_departments, department)
    )
    assert problems(broken) == [
        f"measures.toml: measure ({measure.id}).implementing_departments: unknown department {department!r}"
    ]


def test_an_item_that_is_not_a_table_does_not_hide_the_rows_after_it(copy: Path) -> None:
    """severity.toml written as an inline array whose first item is not a table: that item is named,
    and every row after it is still read (its own problem named, the rest indexed)."""
    (copy / "severity.toml").write_text(
        'severity = [\n  "not a table",\n'
        '  { class = "minor", name = "轻微失信", published = false, min_months = 0, max_months = 3 },\n'
        '  { class = "general", name = "一般失信", published = true, min_months = 3, max_months = 12 },\n'
        '  { class = "serious", name = "严重失信", published = true, min_months = 12, max_months = 0 },\n'
        "]\n",
        encoding="utf-8",
    )
    found = load_problems(copy)
    assert found[:3] == [
        "severity.toml: severity[0]: expected a table",
        "severity.toml: severity[3] (serious).max_months: must be at least 1, got 0",
        "severity.toml: severity[3] (serious).min_months: exceeds max_months (0)",
    ]
    unknown = {p.rsplit(": ", 1)[-1] for p in found if "unknown severity class" in p}
    assert unknown == {"unknown severity class 'serious'"}  # only the bad row is left out


def test_a_measure_reaches_responsible_persons_only_when_it_says_so(copy: Path) -> None:
    replace_in(copy / "measures.toml", "reaches_responsible_persons = false\n", "")
    loaded = load_policies(copy)
    assert loaded.measures["I-EXEMPLAR"].reaches_responsible_persons is False
