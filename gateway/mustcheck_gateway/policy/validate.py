"""Cross-file rules of a policy set: every reference resolves, and R13 holds.

* every department, matter kind, severity class and measure referenced exists;
* a punishment measure has a legal basis (the national basic list of punishment
  measures admits none outside the law, R13);
* a measure issued by an industry or market body is never mandatory (R13);
* red memoranda carry only incentives, black ones only punishments;
* the subject kinds of a memorandum's measures fit the memorandum;
* legacy codes are well-formed credit codes that really fail a checksum (R1).
"""

from __future__ import annotations

from mustcheck.identifiers import IdentifierError, validate_uscc

from .files import FILES, Problem
from .model import ALL_DEPARTMENTS, Issuer, ListKind, MeasureKind, PolicySet

NO_SEVERITY = "none"


def validate(policy: PolicySet) -> list[Problem]:
    problems: list[Problem] = []
    problems += _check_measures(policy)
    problems += _check_memoranda(policy)
    problems += _check_matters(policy)
    problems += _check_legacy_codes(policy)
    return problems


def _where(name: str, ident: str) -> tuple[str, str]:
    file, table = FILES[name]
    return file, f"{table} ({ident})"


def _check_measures(policy: PolicySet) -> list[Problem]:
    problems = []
    for measure in policy.measures.values():
        file, key = _where("measures", measure.id)
        if measure.kind is MeasureKind.PUNISHMENT and measure.legal_basis is None:
            problems.append(
                Problem(file, f"{key}.legal_basis", "punishment measure has no legal basis (R13)")
            )
        if measure.issuer is not Issuer.GOVERNMENT and measure.mandatory:
            problems.append(
                Problem(
                    file,
                    f"{key}.mandatory",
                    f"a measure issued by a {measure.issuer.value} body can only be recommended (R13)",
                )
            )
        for kind in sorted(measure.matter_kinds - set(policy.matter_kinds)):
            problems.append(Problem(file, f"{key}.matter_kinds", f"unknown matter kind {kind!r}"))
        for department in measure.implementing_departments:
            if department != ALL_DEPARTMENTS and department not in policy.departments:
                problems.append(
                    Problem(file, f"{key}.implementing_departments", f"unknown department {department!r}")
                )
    return problems


def _check_memoranda(policy: PolicySet) -> list[Problem]:
    problems = []
    numbers: dict[int, str] = {}
    for memo in policy.memoranda.values():
        file, key = _where("memoranda", memo.id)
        if memo.number and memo.number in numbers:
            problems.append(
                Problem(file, f"{key}.number", f"number {memo.number} also used by {numbers[memo.number]}")
            )
        numbers.setdefault(memo.number, memo.id)
        if memo.initiating_department not in policy.departments:
            problems.append(
                Problem(
                    file, f"{key}.initiating_department", f"unknown department {memo.initiating_department!r}"
                )
            )
        if memo.list_kind is ListKind.RED and memo.severity != NO_SEVERITY:
            problems.append(
                Problem(file, f"{key}.severity", f"a red list has no severity class; use {NO_SEVERITY!r}")
            )
        if memo.list_kind is ListKind.BLACK and memo.severity not in policy.severities:
            problems.append(Problem(file, f"{key}.severity", f"unknown severity class {memo.severity!r}"))
        wanted = MeasureKind.INCENTIVE if memo.list_kind is ListKind.RED else MeasureKind.PUNISHMENT
        for measure_id in memo.measures:
            measure = policy.measures.get(measure_id)
            if measure is None:
                problems.append(Problem(file, f"{key}.measures", f"unknown measure {measure_id!r}"))
            elif measure.kind is not wanted:
                problems.append(
                    Problem(
                        file,
                        f"{key}.measures",
                        f"{memo.list_kind.value} list cannot carry "
                        f"{measure.kind.value} measure {measure_id!r}",
                    )
                )
            elif not measure.subject_kinds & memo.subject_kinds:
                problems.append(
                    Problem(
                        file,
                        f"{key}.measures",
                        f"measure {measure_id!r} applies to none of its subject kinds",
                    )
                )
    return problems


def _check_matters(policy: PolicySet) -> list[Problem]:
    problems = []
    for matter in policy.matters.values():
        file, key = _where("matters", matter.code)
        if matter.department not in policy.departments:
            problems.append(Problem(file, f"{key}.department", f"unknown department {matter.department!r}"))
        for kind in sorted(matter.matter_kinds - set(policy.matter_kinds)):
            problems.append(Problem(file, f"{key}.matter_kinds", f"unknown matter kind {kind!r}"))
    return problems


def _check_legacy_codes(policy: PolicySet) -> list[Problem]:
    problems = []
    for legacy in policy.legacy_codes.values():
        file, key = _where("legacy_codes", legacy.code)
        try:
            validate_uscc(legacy.code)
        except IdentifierError as error:
            if not error.checksum_only:
                problems.append(
                    Problem(file, f"{key}.code", f"not a well-formed credit code: {error.message}")
                )
        else:
            problems.append(
                Problem(file, f"{key}.code", "passes every checksum; it needs no allow-list entry")
            )
    return problems
