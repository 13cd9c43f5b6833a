"""R8 rule by rule: a grant's matters, validity window, purpose and subject kinds; the caller's roles;
authentication's refusals. Each test names the seeded bug it kills (docs/testing.md lists them).

The grant and caller are the real records; the gateway end of the same rules is in tests/test_access.py.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from mustcheck.identifiers import SubjectKind
from mustcheck_gateway.auth.authorize import check_subject, grant_for_matter
from mustcheck_gateway.auth.model import Caller, Grant, TokenRecord
from mustcheck_gateway.errors import PermissionDenied
from mustcheck_gateway.policy import PolicySet
from mustcheck_gateway.policy.model import Matter

UTC = dt.UTC
T0 = dt.datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
TICK = dt.timedelta(microseconds=1)
CALLER = Caller("approval-system", "approval")


def siblings(policy: PolicySet) -> tuple[Matter, Matter]:
    """Two matters of the same department whose codes share all but the last character."""
    codes = sorted(policy.matters)
    for first, second in itertools.pairwise(codes):
        if (
            first[:-1] == second[:-1]
            and policy.matters[first].department == policy.matters[second].department
        ):
            return policy.matters[first], policy.matters[second]
    raise AssertionError("the catalogue has no sibling matters")


def refusal(grant: Grant | None, matter: Matter, purpose: str = "审批", at: dt.datetime = T0) -> str:
    with pytest.raises(PermissionDenied) as caught:
        grant_for_matter(CALLER, grant, matter, purpose, at)
    return caught.value.reason


def test_a_grant_for_one_matter_does_not_cover_its_sibling_matters(policy: PolicySet) -> None:
    """Kills: a grant for one matter also covering its sibling matters (R8)."""
    granted, sibling = siblings(policy)
    grant = Grant(CALLER.caller_id, matters=(granted.code,))
    assert grant_for_matter(CALLER, grant, granted, "审批", T0) is grant
    assert refusal(grant, sibling) == "grant.matter"
    # Nor does a code's prefix, nor a matter kind the matter lacks, cover it.
    assert refusal(Grant(CALLER.caller_id, matters=(granted.code[:-1],)), granted) == "grant.matter"
    other_kinds = sorted(set(policy.matter_kinds) - set(granted.matter_kinds))
    assert refusal(Grant(CALLER.caller_id, matters=(f"kind:{other_kinds[0]}",)), granted) == "grant.matter"
    assert refusal(Grant(CALLER.caller_id, matters=()), granted) == "grant.matter"


def test_a_grant_covers_all_matters_or_the_matters_of_a_kind(policy: PolicySet) -> None:
    granted, sibling = siblings(policy)
    everything = Grant(CALLER.caller_id, matters=("*",))
    assert grant_for_matter(CALLER, everything, sibling, "审批", T0) is everything
    kind = sorted(granted.matter_kinds)[0]
    by_kind = Grant(CALLER.caller_id, matters=("MOF-9999", f"kind:{kind}"))
    assert grant_for_matter(CALLER, by_kind, granted, "审批", T0) is by_kind
    assert refusal(Grant(CALLER.caller_id, matters=(kind,)), granted) == "grant.matter"  # no "kind:" prefix
    # Only "*" itself means every matter: not an empty code, nor a code that sorts before "*".
    assert refusal(Grant(CALLER.caller_id, matters=("", "!", "(")), granted) == "grant.matter"


def test_a_grant_is_valid_from_its_first_instant_until_just_before_valid_until(policy: PolicySet) -> None:
    """Kills: a grant's ``valid_until`` ignored (and ``valid_from`` with it)."""
    matter = next(iter(policy.matters.values()))
    grant = Grant(CALLER.caller_id, matters=("*",), valid_from=T0, valid_until=T0 + dt.timedelta(days=30))
    assert grant_for_matter(CALLER, grant, matter, "审批", T0) is grant
    assert grant_for_matter(CALLER, grant, matter, "审批", T0 + dt.timedelta(days=30) - TICK) is grant
    assert refusal(grant, matter, at=T0 + dt.timedelta(days=30)) == "grant.expired"
    assert refusal(grant, matter, at=T0 + dt.timedelta(days=400)) == "grant.expired"
    assert refusal(grant, matter, at=T0 - TICK) == "grant.expired"
    open_ended = Grant(CALLER.caller_id, matters=("*",), valid_until=T0)
    assert refusal(open_ended, matter, at=T0) == "grant.expired"
    assert grant_for_matter(CALLER, open_ended, matter, "审批", T0 - dt.timedelta(days=3650)) is open_ended
    with pytest.raises(PermissionDenied, match=r"valid from \(open\) to 2026-06-01T08:00:00\+00:00"):
        grant_for_matter(CALLER, open_ended, matter, "审批", T0)


def test_an_expired_grant_is_refused_before_its_matters_are_looked_at(policy: PolicySet) -> None:
    granted, sibling = siblings(policy)
    grant = Grant(CALLER.caller_id, matters=(granted.code,), valid_until=T0)
    assert refusal(grant, sibling) == "grant.expired"
    assert refusal(None, granted) == "grant.missing"


@pytest.mark.parametrize("purpose", ["", " ", "\t\n", "\u3000", " \u3000 "])
def test_a_purpose_of_only_white_space_is_refused(policy: PolicySet, purpose: str) -> None:
    """Kills: a purpose of only white space accepted."""
    matter = next(iter(policy.matters.values()))
    assert refusal(Grant(CALLER.caller_id, matters=("*",)), matter, purpose=purpose) == "grant.purpose"
    relaxed = Grant(CALLER.caller_id, matters=("*",), purpose_required=False)
    assert grant_for_matter(CALLER, relaxed, matter, purpose, T0) is relaxed
    required = Grant(CALLER.caller_id, matters=("*",))
    assert grant_for_matter(CALLER, required, matter, f"{purpose}审批{purpose}", T0) is required


def test_subject_kinds_and_the_authorisation_reference_for_persons() -> None:
    organisations_only = Grant(CALLER.caller_id, matters=("*",))
    check_subject(CALLER, organisations_only, SubjectKind.ORGANIZATION, "")
    with pytest.raises(PermissionDenied) as caught:
        check_subject(CALLER, organisations_only, SubjectKind.PERSON, "授权书-1")
    assert caught.value.reason == "grant.subject_kind" and "person subjects" in str(caught.value)
    both = Grant(CALLER.caller_id, subject_kinds=frozenset(SubjectKind))
    check_subject(CALLER, both, SubjectKind.PERSON, "授权书-1")
    check_subject(CALLER, both, SubjectKind.ORGANIZATION, "")  # no reference needed for organisations
    for blank in ("", "  ", "\u3000"):
        with pytest.raises(PermissionDenied) as caught:
            check_subject(CALLER, both, SubjectKind.PERSON, blank)
        assert caught.value.reason == "grant.authorization_ref"
    relaxed = Grant(
        CALLER.caller_id, subject_kinds=frozenset(SubjectKind), authorization_ref_required_for_persons=False
    )
    check_subject(CALLER, relaxed, SubjectKind.PERSON, "")


def test_a_grant_s_defaults_are_the_strict_ones() -> None:
    grant = Grant(CALLER.caller_id)
    assert grant.matters == () and grant.subject_kinds == {SubjectKind.ORGANIZATION}
    assert grant.visible_fields == frozenset()
    assert grant.purpose_required and grant.authorization_ref_required_for_persons
    assert (grant.rate_per_second, grant.burst, grant.daily_person_quota) == (50.0, 100, 0)
    assert grant.valid_from is None and grant.valid_until is None
    assert grant.max_watch_streams == 4


def test_a_grant_cannot_be_changed_once_made() -> None:
    import dataclasses

    grant = Grant(CALLER.caller_id)
    with pytest.raises(dataclasses.FrozenInstanceError):
        grant.purpose_required = False  # type: ignore[misc]
    assert grant.purpose_required
    at = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
    token = TokenRecord("t-1", CALLER.caller_id, "0" * 64, at, at + dt.timedelta(days=1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        token.revoked_at = at  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        CALLER.department = "other"  # type: ignore[misc]
    assert token.active_at(at) and not token.active_at(at + dt.timedelta(days=1))
