"""Does the caller's grant allow this check? (R8)

Each refusal raises ``PermissionDenied`` saying what is missing — the matter, the
subject kind, the purpose, the authorisation reference, the validity window — and
never anything about the subject's records.
"""

from __future__ import annotations

import datetime as dt

from mustcheck.identifiers import SubjectKind

from ..errors import PermissionDenied
from ..policy.model import Matter
from .model import Caller, Grant


def grant_for_matter(
    caller: Caller, grant: Grant | None, matter: Matter, purpose: str, at: dt.datetime
) -> Grant:
    if grant is None:
        raise PermissionDenied(f"caller {caller.caller_id} has no grant", reason="grant.missing")
    if not grant.valid_at(at):
        window = f"{_show(grant.valid_from)} to {_show(grant.valid_until)}"
        raise PermissionDenied(
            f"caller {caller.caller_id}'s grant is valid from {window}", reason="grant.expired"
        )
    if not grant.covers_matter(matter):
        raise PermissionDenied(
            f"caller {caller.caller_id} has no grant for matter {matter.code}", reason="grant.matter"
        )
    if grant.purpose_required and not purpose.strip():
        raise PermissionDenied(
            f"caller {caller.caller_id} must state a purpose for every check", reason="grant.purpose"
        )
    return grant


def check_subject(caller: Caller, grant: Grant, kind: SubjectKind, authorization_ref: str) -> None:
    if kind not in grant.subject_kinds:
        raise PermissionDenied(
            f"caller {caller.caller_id} has no grant for {kind.value} subjects", reason="grant.subject_kind"
        )
    if (
        kind is SubjectKind.PERSON
        and grant.authorization_ref_required_for_persons
        and not authorization_ref.strip()
    ):
        raise PermissionDenied(
            f"caller {caller.caller_id} must give an authorisation reference for person lookups (98号 §4(1))",
            reason="grant.authorization_ref",
        )


def _show(instant: dt.datetime | None) -> str:
    return "(open)" if instant is None else instant.isoformat()
