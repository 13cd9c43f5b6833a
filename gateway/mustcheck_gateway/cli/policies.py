"""``mustcheck policies check|show [DIR]``: validate or list a policy folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..i18n import _
from ..policy import PolicyError, PolicySet, default_policy_dir, load_policies
from .common import EXIT_FAILURE, EXIT_OK, Subparsers, print_json
from .names import beside


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "policies",
        help=_("validate or list the policy set"),
        description=_("Validate or list a policy folder (memoranda, measures, catalog)."),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help=_("validate a policy folder; exit 1 listing every problem"),
        description=_(
            "Validate a policy folder: exit 0 if valid, 1 listing every problem (file, key, problem)."
        ),
    )
    check.add_argument(
        "directory", nargs="?", type=Path, metavar="DIR", help=_("policy folder (default: bundled)")
    )
    check.set_defaults(run=run_check)
    show = actions.add_parser(
        "show",
        help=_("list memoranda, measures and matters"),
        description=_("List memoranda, measures and matters with their codes."),
    )
    show.add_argument(
        "directory", nargs="?", type=Path, metavar="DIR", help=_("policy folder (default: bundled)")
    )
    show.add_argument("--json", action="store_true", help=_("print one JSON object"))
    show.set_defaults(run=run_show)


def _load(directory: Path | None) -> PolicySet | None:
    try:
        return load_policies(directory or default_policy_dir())
    except PolicyError as error:
        print(str(error), file=sys.stderr)
        return None


def run_check(options: argparse.Namespace) -> int:
    directory = options.directory or default_policy_dir()
    policy = _load(directory)
    if policy is None:
        return EXIT_FAILURE
    print(
        _(
            "{directory}: valid — {memoranda} memoranda, {measures} measures, {matters} matters, "
            "{departments} departments"
        ).format(
            directory=directory,
            memoranda=len(policy.memoranda),
            measures=len(policy.measures),
            matters=len(policy.matters),
            departments=len(policy.departments),
        )
    )
    return EXIT_OK


def run_show(options: argparse.Namespace) -> int:
    policy = _load(options.directory)
    if policy is None:
        return EXIT_FAILURE
    if options.json:
        print_json(policy_as_json(policy))
        return EXIT_OK
    print(_("Memoranda"))
    for memo in sorted(policy.memoranda.values(), key=lambda m: (m.number, m.id)):
        print(f"  {memo.number:>2} {memo.id:34} {memo.list_kind.value:5} {memo.title}")
    print(_("Measures"))
    for measure in policy.measures.values():
        tag = _("mandatory") if measure.mandatory else _("recommended")
        print(f"  {measure.id:28} {measure.kind.value:10} {tag:11} {measure.text}  ({measure.legal_basis})")
    print(_("Matters"))
    for matter in policy.matters.values():
        must = _("must-check") if matter.must_check else _("optional")
        department = policy.departments.get(matter.department)
        print(
            f"  {matter.code:22} {must:10} {matter.name}  "
            f"{beside(department.name if department else '', matter.department)}"
        )
    return EXIT_OK


def policy_as_json(policy: PolicySet) -> dict[str, Any]:
    return {
        "memoranda": [
            {
                "id": m.id,
                "number": m.number,
                "title": m.title,
                "list": m.list_kind.value,
                "initiating_department": m.initiating_department,
                "severity": m.severity,
                "subject_kinds": sorted(k.value for k in m.subject_kinds),
                "punish_months": m.punish_months,
                "display_months": m.display_months,
                "measures": list(m.measures),
            }
            for m in sorted(policy.memoranda.values(), key=lambda m: (m.number, m.id))
        ],
        "measures": [
            {
                "id": m.id,
                "kind": m.kind.value,
                "text": m.text,
                "mandatory": m.mandatory,
                "matter_kinds": sorted(m.matter_kinds),
                "implementing_departments": list(m.implementing_departments),
                "subject_kinds": sorted(k.value for k in m.subject_kinds),
                "reaches_responsible_persons": m.reaches_responsible_persons,
                "issuer": m.issuer.value,
                "legal_basis": {"document": m.legal_basis.document, "section": m.legal_basis.section}
                if m.legal_basis
                else None,
            }
            for m in policy.measures.values()
        ],
        "matters": [
            {
                "code": m.code,
                "name": m.name,
                "department": m.department,
                "matter_kinds": sorted(m.matter_kinds),
                "must_check": m.must_check,
                "freshness_tolerance_s": m.freshness_tolerance_s,
                "fail_mode": m.fail_mode.value,
                "decision_tolerance_s": m.decision_tolerance_s,
            }
            for m in policy.matters.values()
        ],
    }
