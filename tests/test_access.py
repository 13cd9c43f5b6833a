"""R8/R9 over the network: authentication, grants, denials, rate limits, masking, administration."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from mustcheck import (
    AuthenticationFailed,
    CheckResult,
    CheckUnavailable,
    Client,
    Outcome,
    PermissionDenied,
    RateLimited,
    TLSConfig,
)
from mustcheck._channel import auth_metadata
from mustcheck._generated.v1 import admin_pb2, check_pb2, check_pb2_grpc
from mustcheck_gateway.admin_service import issue_token
from mustcheck_gateway.audit import AuditLog
from mustcheck_gateway.audit.backends import is_audit_log
from mustcheck_gateway.auth.certs import init_certificates
from mustcheck_gateway.auth.model import ROLE_ADMIN, Caller, Grant
from mustcheck_gateway.bootstrap import bootstrap_admin
from mustcheck_gateway.server import (
    DEFAULT_ADMIN_DEPARTMENT,
    ConfigError,
    Gateway,
    GatewayConfig,
    GatewayThread,
    TLSFiles,
    check_listener,
)
from mustcheck_gateway.store import PersonRole
from mustcheck_gateway.store.postgres import PostgresStore
from mustcheck_gateway.store.sqlite import SqliteStore

from backends import StoreAt
from conftest import POLICY_DIR
from factories import days, make_entry, new_citizen_id, new_uscc
from provision import admin_stub, provision
from threads import together

_counter = iter(range(1, 1_000_000))


def fresh_id(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


@pytest.fixture
def make_caller(target: str, admin_token: str) -> Callable[..., str]:
    def make(**grant: object) -> str:
        return provision(target, admin_token, fresh_id("caller"), **grant)  # type: ignore[arg-type]

    return make


def check(
    target: str,
    token: str | None,
    subject: str,
    matter: str = "MOF-0001",
    *,
    purpose: str = "",
    authorization_ref: str = "",
) -> CheckResult:
    with Client(target, token=token, timeout=5) as client:
        return client.check(subject, matter, purpose=purpose, authorization_ref=authorization_ref)


# -- authentication --------------------------------------------------------------------------


def test_missing_credentials(target: str) -> None:
    with pytest.raises(AuthenticationFailed, match="no credentials") as caught:
        check(target, None, new_uscc())
    assert caught.value.code is grpc.StatusCode.UNAUTHENTICATED


def test_unknown_token(target: str) -> None:
    with pytest.raises(AuthenticationFailed, match="not known"):
        check(target, "mct_000000000000_" + "A" * 43, new_uscc())
    with pytest.raises(AuthenticationFailed):
        check(target, "not a token at all", new_uscc())


def test_revocation_takes_effect_within_a_second(
    target: str, admin_token: str, make_caller: Callable[..., str]
) -> None:
    token = make_caller()
    assert check(target, token, new_uscc()).outcome is Outcome.NO_RECORD
    admin, channel = admin_stub(target)
    with channel:
        listed = admin.ListTokens(
            admin_pb2.ListTokensRequest(), metadata=auth_metadata(admin_token), timeout=5
        )
        token_id = next(t.token_id for t in listed.tokens if token.startswith(f"mct_{t.token_id}_"))
        admin.RevokeToken(
            admin_pb2.RevokeTokenRequest(token_id=token_id), metadata=auth_metadata(admin_token), timeout=5
        )
    revoked_at = time.monotonic()
    with pytest.raises(AuthenticationFailed, match="revoked"):
        check(target, token, new_uscc())
    assert time.monotonic() - revoked_at < 1.0


def test_expired_token(target: str, admin_token: str, make_caller: Callable[..., str]) -> None:
    caller_token = make_caller()
    caller_id = _caller_of(target, admin_token, caller_token)
    admin, channel = admin_stub(target)
    with channel:
        issued = admin.IssueToken(
            admin_pb2.IssueTokenRequest(caller_id=caller_id, ttl_seconds=1),
            metadata=auth_metadata(admin_token),
            timeout=5,
        )
    check(target, issued.token, new_uscc())
    time.sleep(1.1)
    with pytest.raises(AuthenticationFailed, match="expired"):
        check(target, issued.token, new_uscc())


def test_disabled_caller(target: str, admin_token: str, make_caller: Callable[..., str]) -> None:
    token = make_caller()
    admin, channel = admin_stub(target)
    with channel:
        admin.DisableCaller(
            admin_pb2.CallerRef(caller_id=_caller_of(target, admin_token, token)),
            metadata=auth_metadata(admin_token),
            timeout=5,
        )
    with pytest.raises(AuthenticationFailed, match="disabled"):
        check(target, token, new_uscc())


def _caller_of(target: str, admin_token: str, token: str) -> str:
    admin, channel = admin_stub(target)
    with channel:
        listed = admin.ListTokens(
            admin_pb2.ListTokensRequest(), metadata=auth_metadata(admin_token), timeout=5
        )
    return next(t.caller_id for t in listed.tokens if token.startswith(f"mct_{t.token_id}_"))


# -- grants (R8) ---------------------------------------------------------------------------------


def test_no_grant(make_caller: Callable[..., str], target: str) -> None:
    token = make_caller(grant=False)
    with pytest.raises(PermissionDenied, match="has no grant") as caught:
        check(target, token, new_uscc())
    assert caught.value.code is grpc.StatusCode.PERMISSION_DENIED


def test_matter_outside_the_grant(make_caller: Callable[..., str], target: str) -> None:
    token = make_caller(matters=["MOF-0001", "kind:honours"])
    check(target, token, new_uscc(), "MOF-0001")
    check(target, token, new_uscc(), "MOHRSS-0001")  # a matter of kind honours
    with pytest.raises(PermissionDenied, match="no grant for matter MOHURD-0001"):
        check(target, token, new_uscc(), "MOHURD-0001")


def test_subject_kind_outside_the_grant(make_caller: Callable[..., str], target: str) -> None:
    token = make_caller(subject_kinds=["organization"])
    with pytest.raises(PermissionDenied, match="no grant for person subjects"):
        check(target, token, new_citizen_id())


def test_purpose_and_authorisation_reference(make_caller: Callable[..., str], target: str) -> None:
    token = make_caller(purpose_required=True, authorization_ref_required=True)
    with pytest.raises(PermissionDenied, match="purpose"):
        check(target, token, new_uscc())
    check(target, token, new_uscc(), purpose="资格审查")
    with pytest.raises(PermissionDenied, match="authorisation reference"):
        check(target, token, new_citizen_id(), purpose="资格审查")
    check(target, token, new_citizen_id(), purpose="资格审查", authorization_ref="授权-1")


def test_denials_never_tell_whether_the_subject_is_listed(
    gateway: Gateway, make_caller: Callable[..., str], target: str, now: dt.datetime
) -> None:
    listed = make_entry(new_uscc(), effective=now - days(1))
    gateway.store.write_entries([listed], actor="test", action="add")
    unlisted = new_uscc()
    token = make_caller(matters=["MOHURD-0001"])
    messages = []
    for subject in (listed.subject_code, unlisted):
        with pytest.raises(PermissionDenied) as caught:
            check(target, token, subject, "MOF-0001")
        messages.append(caught.value.message)
    assert messages[0] == messages[1]


def test_rate_limit_gives_retry_advice(make_caller: Callable[..., str], target: str) -> None:
    token = make_caller(rate=0.2, burst=2)
    with Client(target, token=token) as client:
        client.check(new_uscc(), "MOF-0001")
        client.check(new_uscc(), "MOF-0001")
        with pytest.raises(RateLimited) as caught:
            client.check(new_uscc(), "MOF-0001")
    assert caught.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 5.0
    assert "retry after" in caught.value.message


def test_daily_person_quota_denies(make_caller: Callable[..., str], target: str) -> None:
    token = make_caller(daily_person_quota=2)
    with Client(target, token=token) as client:
        client.check(new_citizen_id(), "MOF-0001")
        client.check(new_uscc(), "MOF-0001")  # organisations do not count
        client.check(new_citizen_id(), "MOF-0001")
        with pytest.raises(RateLimited, match="daily quota of 2 person lookups") as caught:
            client.check(new_citizen_id(), "MOF-0001")
    assert caught.value.reason == "quota.persons"


def test_grant_change_takes_effect_within_a_second(
    gateway: Gateway, make_caller: Callable[..., str], target: str, admin_token: str
) -> None:
    token = make_caller(matters=["MOF-0001"])
    caller_id = _caller_of(target, admin_token, token)
    with pytest.raises(PermissionDenied):
        check(target, token, new_uscc(), "MOHURD-0001")
    # Written straight into the shared store, as another gateway on the same store would.
    gateway.store.put_grant(
        Grant(caller_id=caller_id, matters=("*",), purpose_required=False, rate_per_second=1e5, burst=100_000)
    )
    changed = time.monotonic()
    while True:
        try:
            check(target, token, new_uscc(), "MOHURD-0001")
            break
        except PermissionDenied:
            assert time.monotonic() - changed < 1.0, "the grant change did not take effect within one second"
            time.sleep(0.05)


def test_admin_service_needs_the_admin_role(token: str, target: str) -> None:
    admin, channel = admin_stub(target)
    with channel, pytest.raises(grpc.RpcError) as caught:
        admin.ListCallers(admin_pb2.ListCallersRequest(), metadata=auth_metadata(token), timeout=5)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "admin role" in (caught.value.details() or "")


def test_admin_rejects_bad_grants(target: str, admin_token: str, make_caller: Callable[..., str]) -> None:
    caller_id = _caller_of(target, admin_token, make_caller())
    admin, channel = admin_stub(target)
    bad = [
        admin_pb2.Grant(
            caller_id=caller_id,
            matters=["NOPE-1"],
            subject_kinds=["organization"],
            rate_per_second=1,
            burst=1,
        ),
        admin_pb2.Grant(
            caller_id=caller_id, matters=["*"], subject_kinds=["robot"], rate_per_second=1, burst=1
        ),
        admin_pb2.Grant(
            caller_id=caller_id,
            matters=["*"],
            subject_kinds=["person"],
            visible_fields=["reporter"],
            rate_per_second=1,
            burst=1,
        ),
        admin_pb2.Grant(
            caller_id="nobody", matters=["*"], subject_kinds=["person"], rate_per_second=1, burst=1
        ),
    ]
    with channel:
        for grant in bad:
            with pytest.raises(grpc.RpcError) as caught:
                admin.SetGrant(
                    admin_pb2.SetGrantRequest(grant=grant), metadata=auth_metadata(admin_token), timeout=5
                )
            assert caught.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)


# -- masking (R9) --------------------------------------------------------------------------------


@pytest.fixture
def linked_person(gateway: Gateway, now: dt.datetime) -> tuple[str, str]:
    person, name = new_citizen_id(), "欧阳明月"
    company = make_entry(new_uscc(), effective=now - days(2), persons=((person, name, PersonRole.PRINCIPAL),))
    own = make_entry(
        person,
        kind=__import__("mustcheck").SubjectKind.PERSON,
        memorandum="judgment-defaulters",
        effective=now - days(2),
        name=name,
    )
    gateway.store.write_entries([company, own], actor="test", action="add")
    return person, name


def _raw_responses(target: str, token: str, person: str) -> Iterator[bytes]:
    with grpc.insecure_channel(target) as channel:
        stub = check_pb2_grpc.CheckServiceStub(channel)
        metadata = auth_metadata(token)
        yield stub.Check(
            check_pb2.CheckRequest(subject=person, matter="ORGANIZATION-0001"), metadata=metadata, timeout=5
        ).SerializeToString()
        yield stub.BatchCheck(
            check_pb2.BatchCheckRequest(subjects=[person, new_uscc()], matter="ORGANIZATION-0001"),
            metadata=metadata,
            timeout=5,
        ).SerializeToString()


def test_personal_data_is_masked_on_every_check_response(
    make_caller: Callable[..., str], target: str, linked_person: tuple[str, str]
) -> None:
    person, name = linked_person
    token = make_caller()
    for raw in _raw_responses(target, token, person):
        assert person.encode() not in raw and name.encode() not in raw
        assert (person[:6] + "********" + person[-4:]).encode() in raw
        assert "欧***".encode() in raw
        # Nothing of the hidden middle (the birth date) anywhere in the response, in any field.
        assert person[6:14].encode() not in raw


def test_a_grant_widens_visibility_field_by_field(
    make_caller: Callable[..., str], target: str, linked_person: tuple[str, str]
) -> None:
    person, name = linked_person
    ids_only = make_caller(visible_fields=["person_id"])
    for raw in _raw_responses(target, ids_only, person):
        assert person.encode() in raw and name.encode() not in raw
    both = make_caller(visible_fields=["person_id", "person_name"])
    for raw in _raw_responses(target, both, person):
        assert person.encode() in raw and name.encode() in raw


# -- listeners and TLS ------------------------------------------------------------------------------


def test_plaintext_on_a_public_address_needs_insecure(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--insecure"):
        check_listener(GatewayConfig(data_dir=tmp_path, listen="0.0.0.0:0"))
    check_listener(GatewayConfig(data_dir=tmp_path, listen="0.0.0.0:0", insecure=True))
    check_listener(GatewayConfig(data_dir=tmp_path, listen="127.0.0.1:0"))
    check_listener(GatewayConfig(data_dir=tmp_path, listen="[::1]:0"))


def test_mutual_tls_maps_the_certificate_to_a_caller(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    init_certificates(certs, clients=["approval-system", "stranger"])
    tls = TLSFiles(certs / "server.pem", certs / "server.key", client_ca=certs / "ca.pem")
    config = GatewayConfig(data_dir=tmp_path / "data", listen="127.0.0.1:0", policy_dir=POLICY_DIR, tls=tls)
    with GatewayThread(config) as gateway:
        target = f"localhost:{gateway.port}"
        assert gateway.admin_token_file is not None
        admin_token = gateway.admin_token_file.read_text().strip()
        admin_tls = TLSConfig.from_files(certs / "ca.pem", certs / "stranger.pem", certs / "stranger.key")
        with grpc.secure_channel(target, admin_tls.credentials()) as channel:
            from mustcheck._generated.v1 import admin_pb2_grpc

            admin = admin_pb2_grpc.AdminServiceStub(channel)
            metadata = auth_metadata(admin_token)
            admin.CreateCaller(
                admin_pb2.CreateCallerRequest(
                    caller_id="approval-system", department="approval", tls_identity="approval-system"
                ),
                metadata=metadata,
                timeout=5,
            )
            admin.SetGrant(
                admin_pb2.SetGrantRequest(
                    grant=admin_pb2.Grant(
                        caller_id="approval-system",
                        matters=["*"],
                        subject_kinds=["organization"],
                        rate_per_second=100,
                        burst=100,
                    )
                ),
                metadata=metadata,
                timeout=5,
            )
        mine = TLSConfig.from_files(
            certs / "ca.pem", certs / "approval-system.pem", certs / "approval-system.key"
        )
        with Client(target, tls=mine) as client:  # no token: the certificate is the identity
            assert client.check(new_uscc(), "MOF-0001").outcome is Outcome.NO_RECORD
        stranger = TLSConfig.from_files(certs / "ca.pem", certs / "stranger.pem", certs / "stranger.key")
        with Client(target, tls=stranger) as client, pytest.raises(AuthenticationFailed, match="not mapped"):
            client.check(new_uscc(), "MOF-0001")
        with (
            Client(target, tls=TLSConfig.from_files(certs / "ca.pem"), timeout=2) as client,
            pytest.raises(CheckUnavailable),
        ):
            client.check(new_uscc(), "MOF-0001")  # no client certificate: the handshake fails


def test_a_certificate_and_a_token_naming_different_callers_are_refused(tmp_path: Path) -> None:
    """One identity per call: the token names the caller and the certificate must not name another."""
    certs = tmp_path / "certs"
    init_certificates(certs, clients=["approval-system", "other-system", "transport"])
    tls = TLSFiles(certs / "server.pem", certs / "server.key", client_ca=certs / "ca.pem")
    config = GatewayConfig(data_dir=tmp_path / "data", listen="127.0.0.1:0", policy_dir=POLICY_DIR, tls=tls)

    def client_tls(name: str) -> TLSConfig:
        return TLSConfig.from_files(certs / "ca.pem", certs / f"{name}.pem", certs / f"{name}.key")

    with GatewayThread(config) as gateway:
        target = f"localhost:{gateway.port}"
        assert gateway.admin_token_file is not None
        admin_token = gateway.admin_token_file.read_text().strip()
        bound = provision(
            target,
            admin_token,
            "approval-system",
            tls_identity="approval-system",
            credentials=client_tls("transport").credentials(),
        )
        unbound = provision(
            target,
            admin_token,
            "other-system",
            tls_identity="other-system",
            credentials=client_tls("transport").credentials(),
        )
        loose = provision(
            target, admin_token, "loose-system", credentials=client_tls("transport").credentials()
        )
        audit = gateway.audit
        assert is_audit_log(audit)
        refused_before = len(audit.query(kind="check", outcome="denied", limit=10_000))

        # Both name the same caller: answered (the token decides, the certificate agrees).
        with Client(target, tls=client_tls("approval-system"), token=bound) as client:
            assert client.check(new_uscc(), "MOF-0001").outcome is Outcome.NO_RECORD
        # A certificate mapped to no caller leaves the token to decide.
        with Client(target, tls=client_tls("transport"), token=loose) as client:
            assert client.check(new_uscc(), "MOF-0001").outcome is Outcome.NO_RECORD
        mixed = [
            ("approval-system", unbound),  # the certificate names approval-system, the token other-system
            ("approval-system", loose),  # the certificate names approval-system, the token loose-system
            ("transport", bound),  # approval-system is bound to its own certificate: not one mapped to none
            ("other-system", bound),  # nor one mapped to another caller
        ]
        for certificate, token in mixed:
            with (
                Client(target, tls=client_tls(certificate), token=token) as client,
                pytest.raises(AuthenticationFailed, match="certificate") as raised,
            ):
                client.check(new_uscc(), "MOF-0001")
            assert raised.value.code is grpc.StatusCode.UNAUTHENTICATED
        refusals = audit.query(kind="check", outcome="denied", limit=10_000)[refused_before:]
        assert [record.detail.get("reason") for record in refusals] == ["credentials.mismatch"] * 4
        assert all(record.status == "UNAUTHENTICATED" for record in refusals)
        # Each refusal names who the token said it was, and the token, as every refused credential does.
        assert [record.caller_id for record in refusals] == [
            "other-system",
            "loose-system",
            "approval-system",
            "approval-system",
        ]
        assert all(record.detail.get("token_id") for record in refusals)


def test_a_certificate_bound_caller_s_token_alone_is_refused(tmp_path: Path) -> None:
    """A gateway with TLS but no client CA (say, moved behind a TLS terminator) sees no client
    certificate: a caller bound to one (``--tls-identity``) is refused with its token alone, since a
    stolen token without its certificate must be worthless; an unbound caller is answered."""
    certs = tmp_path / "certs"
    init_certificates(certs, clients=["approval-system"])
    tls = TLSFiles(certs / "server.pem", certs / "server.key")
    config = GatewayConfig(data_dir=tmp_path / "data", listen="127.0.0.1:0", policy_dir=POLICY_DIR, tls=tls)
    server_only = TLSConfig.from_files(certs / "ca.pem")
    with GatewayThread(config) as gateway:
        target = f"localhost:{gateway.port}"
        assert gateway.admin_token_file is not None
        admin_token = gateway.admin_token_file.read_text().strip()
        bound = provision(
            target,
            admin_token,
            "approval-system",
            tls_identity="approval-system",
            credentials=server_only.credentials(),
        )
        loose = provision(target, admin_token, "loose-system", credentials=server_only.credentials())
        with Client(target, tls=server_only, token=loose) as client:
            assert client.check(new_uscc(), "MOF-0001").outcome is Outcome.NO_RECORD
        with (
            Client(target, tls=server_only, token=bound) as client,
            pytest.raises(AuthenticationFailed, match="presented none") as raised,
        ):
            client.check(new_uscc(), "MOF-0001")
        assert raised.value.code is grpc.StatusCode.UNAUTHENTICATED
        assert raised.value.reason == "credentials.mismatch"
        audit = gateway.audit
        assert is_audit_log(audit)
        refused = audit.query(kind="check", outcome="denied", limit=10_000)
        assert [(record.caller_id, record.detail.get("reason")) for record in refused] == [
            ("approval-system", "credentials.mismatch")
        ]


def test_a_grant_holds_at_most_64_watch_streams(target: str, admin_token: str) -> None:
    """The documented bound: 64 is accepted, 65 refused, naming the range."""
    assert provision(target, admin_token, "watch-64", max_watch_streams=64)
    with pytest.raises(grpc.RpcError) as caught:
        provision(target, admin_token, "watch-65", max_watch_streams=65)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "max_watch_streams must be 0 (the default, 4) to 64" in (caught.value.details() or "")


def test_bootstrap_writes_the_admin_token_owner_only(gateway: Gateway) -> None:
    assert gateway.admin_token_file is not None
    assert gateway.admin_token_file.stat().st_mode & 0o777 == 0o600
    assert gateway.admin_token_file.read_text().startswith("mct_")


def test_person_quota_survives_a_restart(tmp_path: Path) -> None:
    config = GatewayConfig(data_dir=tmp_path, listen="127.0.0.1:0", policy_dir=POLICY_DIR)
    with GatewayThread(config) as gateway:
        assert gateway.admin_token_file is not None
        target = f"127.0.0.1:{gateway.port}"
        token = provision(target, gateway.admin_token_file.read_text().strip(), "quota", daily_person_quota=2)
        for _ in range(2):
            check(target, token, new_citizen_id())
    # The count comes back from the audit log.
    with GatewayThread(config) as gateway, pytest.raises(RateLimited, match="daily quota"):
        check(f"127.0.0.1:{gateway.port}", token, new_citizen_id())


def test_gateways_starting_together_on_an_empty_store_bootstrap_one_admin(
    store_location: StoreAt, tmp_path: Path
) -> None:
    """Each start sees no caller and audits its bootstrap; the store lets one make it, the others withdraw."""
    starts = 3
    stores = [store_location.open() for _ in range(starts)]
    data_dirs = [tmp_path / f"gateway-{number}" for number in range(starts)]
    logs = [AuditLog.open(data_dir) for data_dir in data_dirs]
    token_files: list[Path | None] = [None] * starts
    at = dt.datetime.now(dt.UTC)

    def start(number: int) -> None:
        token_files[number] = asyncio.run(
            bootstrap_admin(stores[number], logs[number], data_dirs[number], DEFAULT_ADMIN_DEPARTMENT, at)
        )

    try:
        together(*(functools.partial(start, number) for number in range(starts)))
        auth = stores[0].load_auth()
        outcomes = [[record.outcome for record in log.query(kind="admin")] for log in logs]
    finally:
        for log in logs:
            log.close()
        for store in stores:
            store.close()
    made = [number for number, path in enumerate(token_files) if path is not None]
    assert len(made) == 1
    assert [caller.caller_id for caller in auth.callers] == ["admin"] and len(auth.tokens) == 1
    winner = token_files[made[0]]
    assert winner is not None and winner.read_text().strip()
    for number, audited in enumerate(outcomes):
        if number in made:
            assert audited == ["changed"]
        else:  # it saw the admin already (nothing to audit), or audited an attempt and then withdrew it
            assert audited in ([], ["changed", "withdrawn"])
            assert not (data_dirs[number] / "admin.token").exists()


def test_the_first_caller_is_stored_only_into_an_empty_store(store: SqliteStore | PostgresStore) -> None:
    at = dt.datetime.now(dt.UTC)
    first, second = (
        Caller(caller_id, "ndrc", name="first", roles=frozenset({ROLE_ADMIN}), created_at=at)
        for caller_id in ("admin", "other")
    )
    assert store.put_first_caller(first, issue_token("admin", days(1), "bootstrap", at)[1])
    assert not store.put_first_caller(second, issue_token("other", days(1), "bootstrap", at)[1])
    auth = store.load_auth()
    assert [caller.caller_id for caller in auth.callers] == ["admin"]
    assert [token.caller_id for token in auth.tokens] == ["admin"]


def test_an_exhausted_person_quota_raises_one_alert_a_day_not_one_an_item(
    gateway: Gateway, make_caller: Callable[..., str], target: str
) -> None:
    token = make_caller(daily_person_quota=1)
    with Client(target, token=token) as client:
        client.check(new_citizen_id(), "MOF-0001")
        receipt = client.check(new_uscc(), "MOF-0001").receipt
        batch = client.batch_check([new_citizen_id() for _ in range(30)], "MOF-0001")
        with pytest.raises(RateLimited):
            client.check(new_citizen_id(), "MOF-0001")
    assert receipt is not None
    assert all(item.error is not None and item.error.reason == "quota.persons" for item in batch.items)
    assert is_audit_log(gateway.audit)
    alerts = [r for r in gateway.audit.query(kind="alert", caller_id=receipt.caller, limit=1000)]
    assert len(alerts) == 1 and alerts[0].detail["reason"] == "quota.persons"
