"""R8's gatekeeping on a real store and registry: who is calling (token, certificate, both), which
role, how fast, how many person lookups. The call's context is a stand-in for gRPC's servicer context
(its metadata, its peer and its certificate's common name); everything of the gateway's is real."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mustcheck.identifiers import SubjectKind, ValidSubject
from mustcheck_gateway.auth.access import AccessControl
from mustcheck_gateway.auth.authenticate import Authenticator
from mustcheck_gateway.auth.model import Caller, Grant, TokenRecord
from mustcheck_gateway.auth.peers import FailedAuthLimit
from mustcheck_gateway.auth.registry import AuthRegistry
from mustcheck_gateway.auth.tokens import new_token, token_hash
from mustcheck_gateway.errors import AuthThrottled, PermissionDenied, ResourceExhausted, Unauthenticated
from mustcheck_gateway.store import SqliteStore

NOW = dt.datetime(2026, 6, 1, 8, 0, tzinfo=dt.UTC)
TICK = dt.timedelta(microseconds=1)


class Context:
    """What the authenticator reads of a call: metadata, peer, certificate common names."""

    def __init__(
        self, metadata: tuple[tuple[str, Any], ...] = (), cn: Any = None, peer: str = "ipv4:10.0.0.9:5"
    ) -> None:
        self.metadata = metadata
        self.cn = cn
        self.address = peer

    def invocation_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self.metadata

    def auth_context(self) -> dict[str, list[Any]]:
        return {"x509_common_name": [self.cn]} if self.cn is not None else {}

    def peer(self) -> str:
        return self.address


def bearer(token: str, word: str = "Bearer ") -> Context:
    return Context((("authorization", word + token),))


class World:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.clock = NOW
        self.registry = AuthRegistry(store, refresh_interval=0)
        self.authenticator = Authenticator(self.registry, lambda: self.clock)

    def caller(self, caller_id: str, **fields: Any) -> Caller:
        caller = Caller(caller_id, "approval", created_at=NOW - dt.timedelta(days=2), **fields)
        self.store.put_caller(caller)
        return caller

    def token(self, caller_id: str, *, expires: dt.datetime = NOW + dt.timedelta(days=1)) -> tuple[str, str]:
        token, token_id = new_token()
        self.store.put_token(
            TokenRecord(token_id, caller_id, token_hash(token), NOW - dt.timedelta(days=1), expires)
        )
        return token, token_id

    def refused(self, context: Context) -> Unauthenticated:
        with pytest.raises(Unauthenticated) as caught:
            self.authenticator.authenticate(context)  # type: ignore[arg-type]
        return caught.value


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    store = SqliteStore(tmp_path / "store.sqlite3")
    yield World(store)
    store.close()


def test_a_bearer_token_names_its_caller(world: World) -> None:
    caller = world.caller("a")
    token, _ = world.token("a")
    assert world.authenticator.authenticate(bearer(token)) == caller  # type: ignore[arg-type]
    assert world.authenticator.authenticate(bearer(f" {token} ", "bearer ")) == caller  # type: ignore[arg-type]
    as_bytes = Context((("x-other", "1"), ("authorization", f"BEARER {token}".encode())))
    assert world.authenticator.authenticate(as_bytes) == caller  # type: ignore[arg-type]


def test_bad_or_unknown_tokens_are_refused_by_reason(world: World) -> None:
    world.caller("a")
    token, _ = world.token("a")
    wrong = world.refused(Context((("authorization", f"Basic {token}"),)))
    assert wrong.message == "the authorization metadata must be 'Bearer <token>'"
    unknown_token, unknown_id = new_token()
    unknown = world.refused(bearer(unknown_token))
    assert (unknown.reason, unknown.token_id) == ("token.unknown", unknown_id)
    malformed = world.refused(bearer(token + "x"))
    assert (malformed.reason, malformed.token_id) == ("token.unknown", "")
    assert world.refused(Context()).reason == "credentials.missing"


def test_a_token_is_valid_until_just_before_it_expires_and_never_once_revoked(world: World) -> None:
    world.caller("a")
    token, token_id = world.token("a", expires=NOW + dt.timedelta(hours=1))
    world.clock = NOW + dt.timedelta(hours=1) - TICK
    assert world.authenticator.authenticate(bearer(token)).caller_id == "a"  # type: ignore[arg-type]
    world.clock = NOW + dt.timedelta(hours=1)
    expired = world.refused(bearer(token))
    assert (expired.reason, expired.caller_id, expired.token_id) == ("token.expired", "a", token_id)
    world.clock = NOW
    world.store.revoke_token(token_id, NOW)
    revoked = world.refused(bearer(token))
    assert (revoked.reason, revoked.caller_id) == ("token.revoked", "a")


def test_a_disabled_caller_is_refused(world: World) -> None:
    world.caller("off", disabled=True)
    token, _ = world.token("off")
    disabled = world.refused(bearer(token))
    assert (disabled.reason, disabled.caller_id) == ("caller.disabled", "off")


def test_a_client_certificate_names_its_mapped_caller(world: World) -> None:
    caller = world.caller("tls", tls_identity="approval.example")
    assert world.authenticator.authenticate(Context(cn=b"approval.example")) == caller  # type: ignore[arg-type]
    assert world.authenticator.authenticate(Context(cn="approval.example")) == caller  # type: ignore[arg-type]
    assert world.refused(Context(cn="stranger.example")).reason == "certificate.unknown"


def test_token_and_certificate_must_name_one_caller(world: World) -> None:
    world.caller("tls", tls_identity="approval.example")
    world.caller("bound", tls_identity="bound.example")
    plain = world.caller("plain")
    plain_token, _ = world.token("plain")
    bound_token, _ = world.token("bound")
    with_cert = Context((("authorization", f"Bearer {plain_token}"),), cn="approval.example")
    assert world.refused(with_cert).reason == "credentials.mismatch"
    transport = Context((("authorization", f"Bearer {plain_token}"),), cn="transport.example")
    assert world.authenticator.authenticate(transport) == plain  # type: ignore[arg-type]
    other_cert = Context((("authorization", f"Bearer {bound_token}"),), cn="transport.example")
    assert world.refused(other_cert).reason == "credentials.mismatch"
    own_cert = Context((("authorization", f"Bearer {bound_token}"),), cn="bound.example")
    assert world.authenticator.authenticate(own_cert).caller_id == "bound"  # type: ignore[arg-type]


def test_only_the_authorization_key_carries_the_token(world: World) -> None:
    """Other metadata (keys sorting before and after ``authorization``) is not read as credentials."""
    world.caller("m")
    token, _ = world.token("m")
    context = Context(
        (("accept-encoding", "gzip"), ("authorization", f"Bearer {token}"), ("user-agent", "grpc-java"))
    )
    assert world.authenticator.authenticate(context).caller_id == "m"  # type: ignore[arg-type]


def test_a_bound_caller_s_token_with_any_other_certificate_is_refused(world: World) -> None:
    """Whatever the other certificate's name sorts like: before or after the bound one."""
    world.caller("bound", tls_identity="m.example")
    token, _ = world.token("bound")
    for other in ("a.example", "z.example"):
        context = Context((("authorization", f"Bearer {token}"),), cn=other)
        assert world.refused(context).reason == "credentials.mismatch", other


def test_a_certificate_bound_caller_s_token_alone_is_refused(world: World) -> None:
    """RFC 8705's rule for certificate-bound tokens: without its certificate a bound caller's token is
    worthless, so a stolen token cannot be used from anywhere else. An unbound caller's token alone
    still works."""
    world.caller("bound", tls_identity="bound.example")
    world.caller("plain")
    bound_token, bound_id = world.token("bound")
    plain_token, _ = world.token("plain")
    alone = world.refused(bearer(bound_token))
    assert (alone.reason, alone.caller_id, alone.token_id) == ("credentials.mismatch", "bound", bound_id)
    assert "presented none" in alone.message
    assert world.authenticator.authenticate(bearer(plain_token)).caller_id == "plain"  # type: ignore[arg-type]


def access(world: World, limit: FailedAuthLimit | None = None) -> AccessControl:
    return AccessControl(world.registry, world.authenticator, limit)


def test_roles_are_required_by_name(world: World) -> None:
    control = access(world)
    auditor = Caller("x", "approval", roles=frozenset({"auditor"}))
    control.require_role(auditor, "auditor")
    with pytest.raises(PermissionDenied) as caught:
        control.require_role(auditor, "admin")
    assert caught.value.reason == "role.admin" and "does not hold the admin role" in caught.value.message


def test_the_grant_comes_from_the_registry(world: World, policy: Any) -> None:
    caller = world.caller("g")
    matter = policy.matters["MOF-0001"]
    control = access(world)
    with pytest.raises(PermissionDenied) as caught:
        control.grant(caller, matter, "审批", NOW)
    assert caught.value.reason == "grant.missing"
    world.store.put_grant(Grant("g", matters=("MOF-0001",)))
    assert control.grant(caller, matter, "审批", NOW).matters == ("MOF-0001",)


def test_the_rate_limit_says_when_to_retry(world: World) -> None:
    control = access(world)
    caller = Caller("r", "approval")
    grant = Grant("r", rate_per_second=0.5, burst=2)
    control.throttle(caller, grant, 2)
    with pytest.raises(ResourceExhausted) as caught:
        control.throttle(caller, grant)
    assert caught.value.reason == "rate_limited"
    assert caught.value.retry_after_s is not None and 1.9 < caught.value.retry_after_s <= 2.0
    assert "over its rate limit of 0.5/s (burst 2): retry after" in caught.value.message
    never = Grant("n", rate_per_second=0.0, burst=1)
    control.throttle(Caller("n", "approval"), never)
    with pytest.raises(ResourceExhausted) as caught:
        control.throttle(Caller("n", "approval"), never)
    assert caught.value.retry_after_s is None and "never within this grant" in caught.value.message


def test_a_wait_under_a_second_is_still_a_refusal(world: World) -> None:
    control = access(world)
    caller = Caller("fast", "approval")
    grant = Grant("fast", rate_per_second=10.0, burst=1)
    control.throttle(caller, grant)
    with pytest.raises(ResourceExhausted) as caught:
        control.throttle(caller, grant)  # the next token in 0.1 s
    assert caught.value.retry_after_s is not None and 0 < caught.value.retry_after_s <= 0.1


def test_person_lookups_count_against_the_daily_quota_and_organisations_do_not(world: World) -> None:
    control = access(world)
    caller = Caller("q", "approval")
    grant = Grant(
        "q",
        subject_kinds=frozenset(SubjectKind),
        authorization_ref_required_for_persons=False,
        daily_person_quota=1,
    )
    organisation = ValidSubject("91110108551385082Q", SubjectKind.ORGANIZATION)
    person = ValidSubject("11010519491231002X", SubjectKind.PERSON)
    for _ in range(3):
        control.subject(caller, grant, organisation, "", NOW)
    control.subject(caller, grant, person, "", NOW)
    with pytest.raises(ResourceExhausted) as caught:
        control.subject(caller, grant, person, "", NOW)
    assert (
        caught.value.reason == "quota.persons" and "daily quota of 1 person lookups" in caught.value.message
    )
    with pytest.raises(PermissionDenied):
        control.subject(caller, Grant("q"), person, "", NOW)  # the subject kind is checked first


def test_failed_authentications_are_throttled_per_peer(world: World) -> None:
    control = access(world, FailedAuthLimit(burst=2, per_second=0.001))
    unknown, _ = new_token()
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            control.caller(bearer(unknown))  # type: ignore[arg-type]
    with pytest.raises(AuthThrottled) as caught:
        control.caller(bearer(unknown))  # type: ignore[arg-type]
    assert caught.value.retry_after_s is not None and caught.value.retry_after_s > 900
    assert "too many failed authentications from this address" in caught.value.message
    with pytest.raises(AuthThrottled):
        control.caller(bearer(unknown), items=5)  # type: ignore[arg-type]  # a batch of 5 subjects
    aggregates = [event for event in control.peers.due(everything=True) if event.kind == "refused"]
    assert [(event.detail["requests"], event.detail["items"]) for event in aggregates] == [(2, 6)]
    other_peer = Context((("authorization", f"Bearer {unknown}"),), peer="ipv4:10.0.0.10:5")
    with pytest.raises(Unauthenticated) as plain:
        control.caller(other_peer)  # type: ignore[arg-type]
    assert not isinstance(plain.value, AuthThrottled)
    world.caller("ok")
    token, _ = world.token("ok")
    assert control.caller(bearer(token)).caller_id == "ok"  # type: ignore[arg-type]
