"""Policies as data: the real set loads; the validator names file, key and problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mustcheck_gateway.cli import main
from mustcheck_gateway.policy import PolicyError, PolicySet, load_policies
from mustcheck_gateway.policy.model import Issuer, ListKind, MeasureKind

from conftest import POLICY_DIR


def test_the_national_memoranda_are_all_there(policy: PolicySet) -> None:
    numbers = sorted(m.number for m in policy.memoranda.values() if m.number)
    assert numbers == list(range(1, 21))
    integrity = policy.memoranda["government-integrity"]
    assert integrity.list_kind is ListKind.BLACK
    assert "76号" in str(integrity.basis)
    assert all("76号" in str(policy.measures[m].legal_basis) for m in integrity.measures)


def test_catalog_spans_departments_and_matter_kinds(policy: PolicySet) -> None:
    assert len(policy.matters) >= 20
    assert len({m.department for m in policy.matters.values()}) >= 8
    kinds = set().union(*(m.matter_kinds for m in policy.matters.values()))
    for needed in (
        "administrative_licensing",
        "government_procurement",
        "public_resource_trading",
        "fiscal_funds",
        "honours",
        "civil_service_recruitment",
        "financing",
    ):
        assert needed in kinds


def test_every_punishment_has_a_legal_basis(policy: PolicySet) -> None:
    punishments = [m for m in policy.measures.values() if m.kind is MeasureKind.PUNISHMENT]
    assert punishments
    assert all(m.legal_basis and m.legal_basis.document and m.legal_basis.section for m in punishments)


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, target)
    return target


def _problems(directory: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policies(directory)
    return [str(problem) for problem in caught.value.problems]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_unknown_reference_is_named(policy_copy: Path) -> None:
    _edit(policy_copy / "catalog.toml", 'department = "mof"', 'department = "treasury"')
    problems = _problems(policy_copy)
    assert any(
        p.startswith("catalog.toml: matter (MOF-") and "unknown department 'treasury'" in p for p in problems
    )


def test_unknown_measure_in_a_memorandum_is_named(policy_copy: Path) -> None:
    _edit(policy_copy / "memoranda.toml", '"P-PUBLIC-RESOURCE"', '"P-NO-SUCH-MEASURE"')
    problems = _problems(policy_copy)
    assert any("memoranda.toml" in p and "unknown measure 'P-NO-SUCH-MEASURE'" in p for p in problems)


def test_punishment_without_legal_basis_is_refused(policy_copy: Path) -> None:
    path = policy_copy / "measures.toml"
    text = path.read_text(encoding="utf-8")
    start = text.index('id = "P-PUBLIC-RESOURCE"')
    basis = text.index("legal_basis", start)
    path.write_text(text[:basis] + "# " + text[basis:], encoding="utf-8")
    problems = _problems(policy_copy)
    assert (
        "measures.toml: measure (P-PUBLIC-RESOURCE).legal_basis: punishment measure has no legal basis (R13)"
        in problems
    )


def test_duplicate_ids_are_refused(policy_copy: Path) -> None:
    path = policy_copy / "catalog.toml"
    text = path.read_text(encoding="utf-8")
    block = text[text.index("[[matter]]") : text.index("[[matter]]", text.index("[[matter]]") + 1)]
    path.write_text(text + "\n" + block, encoding="utf-8")
    problems = _problems(policy_copy)
    assert any("catalog.toml" in p and "duplicate matter" in p for p in problems)


@pytest.mark.parametrize("issuer", [Issuer.INDUSTRY, Issuer.MARKET])
def test_industry_measures_cannot_be_mandatory(policy: PolicySet, policy_copy: Path, issuer: Issuer) -> None:
    """R13: neither an industry body's nor a market body's measure may be mandatory (each issuer on its
    own: the test once took the first non-government measure, a market one, and let industry through)."""
    measure = next(m for m in policy.measures.values() if m.issuer is issuer and not m.mandatory)
    path = policy_copy / "measures.toml"
    text = path.read_text(encoding="utf-8")
    start = text.index(f'id = "{measure.id}"')
    flag = text.index("mandatory = false", start)
    assert flag < text.index("[[measure]]", start)  # the flag edited is this measure's own
    path.write_text(
        text[:flag] + "mandatory = true" + text[flag + len("mandatory = false") :], encoding="utf-8"
    )
    problems = _problems(policy_copy)
    expected = f"a measure issued by a {issuer.value} body can only be recommended (R13)"
    assert f"measures.toml: measure ({measure.id}).mandatory: {expected}" in problems


def test_broken_toml_is_reported_with_its_file(policy_copy: Path) -> None:
    (policy_copy / "severity.toml").write_text("[[severity]\nclass = ", encoding="utf-8")
    problems = _problems(policy_copy)
    assert any(p.startswith("severity.toml: : not valid TOML") for p in problems)


def test_gateway_refuses_to_start_on_invalid_policies(policy_copy: Path, tmp_path: Path) -> None:
    from mustcheck_gateway.server import GatewayConfig, GatewayThread

    _edit(policy_copy / "catalog.toml", 'department = "mof"', 'department = "treasury"')
    thread = GatewayThread(
        GatewayConfig(data_dir=tmp_path / "data", listen="127.0.0.1:0", policy_dir=policy_copy)
    )
    with pytest.raises(PolicyError):
        thread.start()
    thread.loop.close()


def test_policies_check_command(policy_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policies", "check", str(policy_copy)]) == 0
    assert "valid" in capsys.readouterr().out
    _edit(policy_copy / "catalog.toml", 'department = "mof"', 'department = "treasury"')
    assert main(["policies", "check", str(policy_copy)]) == 1
    assert "unknown department 'treasury'" in capsys.readouterr().err


def test_policies_show_lists_codes(policy: PolicySet, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policies", "show", str(POLICY_DIR), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {m["code"] for m in shown["matters"]} == set(policy.matters)
    assert {m["id"] for m in shown["measures"]} == set(policy.measures)
    assert len(shown["memoranda"]) == len(policy.memoranda)
    assert main(["policies", "show", str(POLICY_DIR)]) == 0
    text = capsys.readouterr().out
    assert "MOF-0001" in text and "judgment-defaulters" in text
