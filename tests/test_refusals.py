"""Hostile callers (issue 13): refusals cost O(1) in the audit log, failed authentication is throttled
and raises an alert, a flood is accounted for in aggregated records, every field is bounded, replay
parameters are validated, and every refused call leaves a trace with the caller that was presented."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from mustcheck import AuthenticationFailed, Client, InvalidRequest, RateLimited
from mustcheck._channel import auth_metadata
from mustcheck._generated.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    check_pb2,
    check_pb2_grpc,
    lists_pb2,
    lists_pb2_grpc,
)
from mustcheck_gateway.audit import AuditLog, AuditRecord
from mustcheck_gateway.audit.backends import is_audit_log
from mustcheck_gateway.auth.peers import FailedAuthLimit, PeerThrottle, peer_address
from mustcheck_gateway.bounds import COUNT_LIMITS, DEFAULT_TEXT, MAX_RECEIVE_BYTES, TEXT_LIMITS
from mustcheck_gateway.refusals import kind_of
from mustcheck_gateway.server import Gateway, GatewayConfig, GatewayThread

from conftest import POLICY_DIR, TEST_CALLER
from factories import new_citizen_id, new_uscc
from provision import admin_stub, provision

BOGUS_TOKEN = "mct_0123456789ab_" + "A" * 43


def new_records(gateway: Gateway, since: int) -> list[AuditRecord]:
    assert is_audit_log(gateway.audit)
    return list(gateway.audit.records(since_seq=since + 1))


def last_seq(gateway: Gateway) -> int:
    assert is_audit_log(gateway.audit)
    return gateway.audit.last_seq


@pytest.fixture(scope="module")
def auditor_token(target: str, admin_token: str) -> str:
    return provision(target, admin_token, "refusals-auditor", roles=["auditor"], grant=False)


def batch(target: str, subjects: list[str], token: str | None, matter: str = "MOF-0001") -> grpc.RpcError:
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", -1)]) as channel:
        stub = check_pb2_grpc.CheckServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.BatchCheck(
                check_pb2.BatchCheckRequest(subjects=subjects, matter=matter),
                metadata=auth_metadata(token) if token else None,
                timeout=30,
            )
    return caught.value


# -- refusals cost O(1) --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1000, 150_000], ids=["1000-items", "150000-items"])
def test_an_anonymous_batch_leaves_one_record_whatever_its_size(
    gateway: Gateway, target: str, size: int, gateway_suite: str
) -> None:
    before = last_seq(gateway)
    refused = batch(target, [new_uscc() for _ in range(size)], None)
    assert refused.code() is grpc.StatusCode.UNAUTHENTICATED
    records = new_records(gateway, before)
    assert len(records) <= 3  # a handful at most: here, exactly one
    (record,) = [r for r in records if r.kind == "batch"]
    assert (record.status, record.caller_id, record.subject_hash) == ("UNAUTHENTICATED", "", None)
    assert record.detail["items"] == size
    # Keyed with the suite's HMAC, named so: HMAC-SHA256, or HMAC-SM3 on the sm suite.
    assert record.detail["subjects_digest"].startswith(
        "hmac-sm3:" if gateway_suite == "sm" else "hmac-sha256:"
    )


def test_a_batch_refused_for_its_grant_or_rate_leaves_one_record(
    gateway: Gateway, target: str, admin_token: str
) -> None:
    narrow = provision(target, admin_token, "refusals-narrow", matters=["MOHURD-0001"])
    slow = provision(target, admin_token, "refusals-slow", rate=0.001, burst=10)
    for token, status in ((narrow, "PERMISSION_DENIED"), (slow, "RESOURCE_EXHAUSTED")):
        before = last_seq(gateway)
        subjects = [new_uscc() for _ in range(1000)]
        assert batch(target, subjects, token).code().name == status
        (record,) = new_records(gateway, before)
        assert (record.kind, record.status, record.detail["items"]) == ("batch", status, 1000)
    # The same subjects give the same digest; other subjects another one.
    before = last_seq(gateway)
    batch(target, subjects, slow)
    batch(target, subjects[:-1], slow)
    first, second = new_records(gateway, before)
    assert first.detail["subjects_digest"] == record.detail["subjects_digest"]
    assert second.detail["subjects_digest"] != record.detail["subjects_digest"]


# -- throttling, the alert, aggregated accounting ---------------------------------------------


def test_failed_authentication_is_throttled_and_raises_an_alert(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = GatewayConfig(
        data_dir=data_dir,
        listen="127.0.0.1:0",
        policy_dir=POLICY_DIR,
        failed_auth_limit=FailedAuthLimit(burst=5, per_second=0.01, window_s=3600),
    )
    with GatewayThread(config) as gateway:
        target = f"127.0.0.1:{gateway.port}"
        assert gateway.admin_token_file is not None
        valid = provision(target, gateway.admin_token_file.read_text().strip(), "throttled-neighbour")
        before = last_seq(gateway)
        for _ in range(5):
            with Client(target, token=BOGUS_TOKEN) as client, pytest.raises(AuthenticationFailed):
                client.check(new_uscc(), "MOF-0001")
        with Client(target, token=BOGUS_TOKEN) as client:
            for _ in range(3):
                with pytest.raises(RateLimited) as limited:
                    client.check(new_uscc(), "MOF-0001")
                assert limited.value.retry_after is not None and limited.value.retry_after >= 1
        # Another caller on the same address, with valid credentials, is not refused.
        with Client(target, token=valid) as client:
            client.check(new_uscc(), "MOF-0001")
        individually = [r for r in new_records(gateway, before) if r.kind == "check" and r.caller_id == ""]
        assert [r.status for r in individually] == ["UNAUTHENTICATED"] * 5
        assert all(r.detail["token_id"] == "0123456789ab" for r in individually)
    # Stopping wrote the open window's aggregate.
    with AuditLog.open(data_dir) as log:
        (alert,) = log.query(kind="alert")
        (aggregate,) = log.query(kind="refused")
    assert alert.detail["reason"] == "auth.failures" and alert.detail["peer"] == "127.0.0.1"
    assert aggregate.detail["requests"] == 3 and aggregate.detail["reasons"] == {"token.unknown": 3}
    assert aggregate.detail["peer"] == "127.0.0.1" and aggregate.status == "RESOURCE_EXHAUSTED"
    assert aggregate.detail["from"] <= aggregate.detail["until"]


def test_a_flood_leaves_the_log_bounded_and_every_refusal_accounted_for(tmp_path: Path) -> None:
    """About 10 MB of anonymous batches (500 of 1,000 subjects) on loopback: the log grows by the
    peer's allowance, one alert and its aggregates, not by a record per request or item."""
    data_dir = tmp_path / "data"
    config = GatewayConfig(data_dir=data_dir, listen="127.0.0.1:0", policy_dir=POLICY_DIR)
    requests, items = 500, 1000
    subjects = [new_uscc() for _ in range(items)]
    sent = len(check_pb2.BatchCheckRequest(subjects=subjects, matter="MOF-0001").SerializeToString())
    with GatewayThread(config) as gateway:
        before = last_seq(gateway)
        with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stub = check_pb2_grpc.CheckServiceStub(channel)
            codes = []
            for _ in range(requests):
                try:
                    stub.BatchCheck(
                        check_pb2.BatchCheckRequest(subjects=subjects, matter="MOF-0001"), timeout=30
                    )
                except grpc.RpcError as error:
                    codes.append(error.code())
    assert sent * requests >= 10_000_000
    assert len(codes) == requests and set(codes) == {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
    with AuditLog.open(data_dir) as log:
        added = list(log.records(since_seq=before + 1))
    allowance = FailedAuthLimit().burst
    assert len(added) <= allowance + 10
    one_by_one = [r for r in added if r.kind == "batch"]
    aggregates = [r for r in added if r.kind == "refused"]
    assert [r.kind for r in added if r.kind == "alert"] == ["alert"]
    # Every refused request, and every item in it, is accounted for (R10).
    assert len(one_by_one) + sum(r.detail["requests"] for r in aggregates) == requests
    assert sum(r.detail["items"] for r in one_by_one + aggregates) == requests * items
    audit_bytes = sum(len(json.dumps(r.as_export())) for r in added)
    assert audit_bytes < 100_000  # against ~10 MB sent


# -- denials that leave a trace --------------------------------------------------------------


def test_a_refused_reveal_is_audited(gateway: Gateway, target: str, token: str, auditor_token: str) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        for who, caller_id in ((token, "tester"), (auditor_token, "refusals-auditor")):
            before = last_seq(gateway)
            with pytest.raises(grpc.RpcError) as caught:
                stub.Reveal(
                    audit_pb2.RevealRequest(seqs=[1], purpose="监察"), metadata=auth_metadata(who), timeout=10
                )
            assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
            (record,) = new_records(gateway, before)
            assert (record.kind, record.caller_id, record.status) == ("audit", caller_id, "PERMISSION_DENIED")
            assert record.detail["method"] == "AuditService/Reveal"


@pytest.mark.parametrize(
    ("call", "status", "kind"),
    [
        ("admin-by-checker", "PERMISSION_DENIED", "admin"),
        ("lists-bad-format", "INVALID_ARGUMENT", "admin"),
        ("admin-bad-department", "INVALID_ARGUMENT", "admin"),
        ("audit-bad-limit", "INVALID_ARGUMENT", "audit"),
        ("keys-anonymous", "UNAUTHENTICATED", "keys"),
    ],
)
def test_every_refused_admin_lists_audit_call_is_audited(
    gateway: Gateway,
    target: str,
    token: str,
    admin_token: str,
    auditor_token: str,
    call: str,
    status: str,
    kind: str,
) -> None:
    before = last_seq(gateway)
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as caught:
        if call == "admin-by-checker":
            admin_pb2_grpc.AdminServiceStub(channel).ListCallers(
                admin_pb2.ListCallersRequest(), metadata=auth_metadata(token), timeout=10
            )
        elif call == "lists-bad-format":
            list(
                lists_pb2_grpc.ListsServiceStub(channel).Export(
                    lists_pb2.ExportListsRequest(format="xml"),
                    metadata=auth_metadata(admin_token),
                    timeout=10,
                )
            )
        elif call == "admin-bad-department":
            admin_pb2_grpc.AdminServiceStub(channel).CreateCaller(
                admin_pb2.CreateCallerRequest(caller_id="nowhere", department="no-such-department"),
                metadata=auth_metadata(admin_token),
                timeout=10,
            )
        elif call == "audit-bad-limit":
            audit_pb2_grpc.AuditServiceStub(channel).Query(
                audit_pb2.AuditQuery(limit=-1), metadata=auth_metadata(auditor_token), timeout=10
            )
        else:
            check_pb2_grpc.CheckServiceStub(channel).ReceiptKeys(check_pb2.ReceiptKeysRequest(), timeout=10)
    assert caught.value.code().name == status
    (record,) = new_records(gateway, before)
    assert (record.kind, record.status) == (kind, status)
    assert record.detail["reason"] and record.detail["method"]


def test_a_revoked_tokens_denial_names_the_caller_and_token(
    gateway: Gateway, target: str, admin_token: str
) -> None:
    revoked = provision(target, admin_token, "refusals-revoked")
    token_id = revoked.split("_")[1]
    admin, channel = admin_stub(target)
    with channel:
        admin.RevokeToken(
            admin_pb2.RevokeTokenRequest(token_id=token_id), metadata=auth_metadata(admin_token), timeout=10
        )
    subject = new_uscc()
    before = last_seq(gateway)
    with Client(target, token=revoked) as client, pytest.raises(AuthenticationFailed, match="revoked"):
        client.check(subject, "MOF-0001")
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError):
        admin_pb2_grpc.AdminServiceStub(channel).ListCallers(
            admin_pb2.ListCallersRequest(), metadata=auth_metadata(revoked), timeout=10
        )
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError):
        stream: Any = check_pb2_grpc.CheckServiceStub(channel).Watch(
            check_pb2.WatchRequest(hash_key=b"k" * 32), metadata=auth_metadata(revoked), timeout=10
        )
        next(stream)
    check_record, admin_record, watch_record = new_records(gateway, before)
    for record in (check_record, admin_record, watch_record):
        assert (record.caller_id, record.detail["token_id"]) == ("refusals-revoked", token_id)
        assert record.status == "UNAUTHENTICATED" and record.detail["reason"] == "token.revoked"
    assert (check_record.kind, admin_record.kind, watch_record.kind) == ("check", "admin", "watch")


def test_an_expired_tokens_denial_names_the_caller_and_token(
    gateway: Gateway, target: str, admin_token: str
) -> None:
    provision(target, admin_token, "refusals-expired")
    admin, channel = admin_stub(target)
    with channel:
        issued = admin.IssueToken(
            admin_pb2.IssueTokenRequest(caller_id="refusals-expired", ttl_seconds=1),
            metadata=auth_metadata(admin_token),
            timeout=5,
        )
    expired_at = issued.info.expires_at.ToDatetime(tzinfo=dt.UTC)
    while dt.datetime.now(dt.UTC) <= expired_at:  # the token's lifetime, not a timed assertion
        pass
    before = last_seq(gateway)
    with Client(target, token=issued.token) as client, pytest.raises(AuthenticationFailed, match="expired"):
        client.check(new_uscc(), "MOF-0001")
    (record,) = new_records(gateway, before)
    assert (record.caller_id, record.detail["token_id"]) == ("refusals-expired", issued.info.token_id)


# -- bounds on every request field -----------------------------------------------------------

SERVICES = [
    (check_pb2.DESCRIPTOR.services_by_name["CheckService"]),
    (admin_pb2.DESCRIPTOR.services_by_name["AdminService"]),
    (audit_pb2.DESCRIPTOR.services_by_name["AuditService"]),
    (lists_pb2.DESCRIPTOR.services_by_name["ListsService"]),
]


def _text_fields(descriptor: Descriptor, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, list[str]]]:
    """(printed path, attribute path) of every string and bytes field, nested messages included."""
    for field in descriptor.fields:
        nested = field.message_type
        if nested is not None:
            if not field.is_repeated and depth < 2 and nested.full_name.startswith("mustcheck"):
                for path, attributes in _text_fields(nested, f"{prefix}{field.name}.", depth + 1):
                    yield path, [field.name, *attributes]
        elif field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
            yield prefix + field.name, [field.name]


CASES = [
    pytest.param(service, method, path, attributes, id=f"{method.name}.{path}")
    for service in SERVICES
    for method in service.methods
    for path, attributes in _text_fields(method.input_type)
    if TEXT_LIMITS.get(attributes[-1], DEFAULT_TEXT) < MAX_RECEIVE_BYTES
]


def _over_long(message: Message, attributes: list[str]) -> Message:
    target = message
    for name in attributes[:-1]:
        target = getattr(target, name)
    field = target.DESCRIPTOR.fields_by_name[attributes[-1]]
    limit = TEXT_LIMITS.get(field.name, DEFAULT_TEXT)
    value: Any = b"x" * (limit + 1) if field.type == FieldDescriptor.TYPE_BYTES else "x" * (limit + 1)
    if field.is_repeated:
        getattr(target, field.name).append(value)
    else:
        setattr(target, field.name, value)
    return message


def _call(channel: grpc.Channel, service: Any, method: Any, request: Message, token: str) -> None:
    path = f"/{service.full_name}/{method.name}"
    serialise, metadata = type(request).SerializeToString, auth_metadata(token)
    if method.client_streaming:
        channel.stream_unary(path, serialise, bytes)(iter([request]), metadata=metadata, timeout=10)
    elif method.server_streaming:
        list(channel.unary_stream(path, serialise, bytes)(request, metadata=metadata, timeout=10))
    else:
        channel.unary_unary(path, serialise, bytes)(request, metadata=metadata, timeout=10)


@pytest.mark.parametrize(("service", "method", "path", "attributes"), CASES)
def test_every_request_field_is_bounded_and_the_refusal_audited(
    gateway: Gateway,
    target: str,
    admin_token: str,
    service: Any,
    method: Any,
    path: str,
    attributes: list[str],
) -> None:
    request = _over_long(message_factory.GetMessageClass(method.input_type)(), attributes)
    before = last_seq(gateway)
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as caught:
        _call(channel, service, method, request, admin_token)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert path in (caught.value.details() or "") and "at most" in (caught.value.details() or "")
    refusals = [r for r in new_records(gateway, before) if r.status == "INVALID_ARGUMENT"]
    assert [(r.kind, r.caller_id, r.detail["reason"]) for r in refusals] == [
        (kind_of(f"{service.name}/{method.name}"), "admin", f"{attributes[-1]}.too_long")
    ]


def test_repeated_fields_are_bounded_in_count(target: str, admin_token: str) -> None:
    admin, channel = admin_stub(target)
    with channel, pytest.raises(grpc.RpcError) as caught:
        admin.SetGrant(
            admin_pb2.SetGrantRequest(
                grant=admin_pb2.Grant(caller_id="x", matters=["*"] * (COUNT_LIMITS["matters"] + 1))
            ),
            metadata=auth_metadata(admin_token),
            timeout=10,
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "grant.matters has 1,001 values" in (caught.value.details() or "")


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), -float("inf"), 0.0, -1.0])
def test_a_grant_s_rate_must_be_a_positive_finite_number(
    target: str, admin_token: str, token: str, rate: float
) -> None:
    """NaN compares false with everything: a bare ``rate <= 0`` check let it (and infinity) through."""
    admin, channel = admin_stub(target)
    grant = admin_pb2.Grant(
        caller_id=TEST_CALLER, matters=["*"], subject_kinds=["organization"], rate_per_second=rate, burst=10
    )
    with channel, pytest.raises(grpc.RpcError) as caught:
        admin.SetGrant(
            admin_pb2.SetGrantRequest(grant=grant), metadata=auth_metadata(admin_token), timeout=10
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "rate_per_second must be a positive finite number" in (caught.value.details() or "")


def test_a_megabyte_of_purpose_is_refused_and_not_stored(gateway: Gateway, target: str, token: str) -> None:
    subject = new_uscc()
    before = last_seq(gateway)
    with Client(target, token=token) as client:
        with pytest.raises(InvalidRequest, match="purpose is 1,048,576 characters long") as caught:
            client.check(subject, "MOF-0001", purpose="用" * (1 << 20))
        assert caught.value.reason == "purpose.too_long"
    (record,) = new_records(gateway, before)
    assert record.kind == "check" and record.status == "INVALID_ARGUMENT"
    assert len(json.dumps(record.as_export())) < 2000


def test_an_unknown_matter_is_not_echoed_in_full(target: str, token: str) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = check_pb2_grpc.CheckServiceStub(channel)
        for matter in ("M" * (1 << 20), "M" * 64):
            with pytest.raises(grpc.RpcError) as caught:
                stub.Check(
                    check_pb2.CheckRequest(subject=new_uscc(), matter=matter), metadata=auth_metadata(token)
                )
            assert len(caught.value.details() or "") < 300
            assert caught.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)


def test_the_maximum_message_size_is_the_gateways(target: str, token: str) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = check_pb2_grpc.CheckServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.BatchCheck(
                check_pb2.BatchCheckRequest(subjects=["9" * 18] * 250_000, matter="MOF-0001"),
                metadata=auth_metadata(token),
                timeout=30,
            )
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


# -- replay parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"as_of_time": Timestamp(seconds=253402300799)}, "replay.as_of_time"),  # 9999-12-31T23:59:59Z
        ({"as_of_time": Timestamp(seconds=10**13)}, "replay.as_of_time"),  # beyond what a Timestamp holds
        ({"as_of_time": Timestamp(seconds=-(10**10))}, "replay.as_of_time"),
        ({"as_of_version": -1}, "replay.as_of_version"),
        ({"as_of_version": 10**15}, "replay.as_of_version"),
        ({"as_of_time": Timestamp(seconds=1_700_000_000), "subject_kind": 7}, "subject_kind.unknown"),
    ],
    ids=["year-9999", "beyond-timestamp", "long-ago", "negative-version", "future-version", "undefined-kind"],
)
def test_replay_parameters_are_validated(
    gateway: Gateway, target: str, auditor_token: str, fields: dict[str, Any], reason: str
) -> None:
    before = last_seq(gateway)
    request = check_pb2.CheckRequest(subject=new_uscc(), matter="MOF-0001", **fields)
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as caught:
        check_pb2_grpc.CheckServiceStub(channel).Check(
            request, metadata=auth_metadata(auditor_token), timeout=10
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    (record,) = new_records(gateway, before)
    assert (record.kind, record.status, record.detail["reason"]) == ("replay", "INVALID_ARGUMENT", reason)


def test_an_undefined_subject_kind_is_refused(target: str, token: str) -> None:
    request = check_pb2.CheckRequest(subject=new_citizen_id(), matter="MOF-0001")
    request.subject_kind = 7  # type: ignore[assignment]  # a value the contract does not define
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as caught:
        check_pb2_grpc.CheckServiceStub(channel).Check(request, metadata=auth_metadata(token), timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "subject_kind 7" in (caught.value.details() or "")


def test_audited_free_text_never_carries_an_id_number(gateway: Gateway, target: str, token: str) -> None:
    subject, other = new_uscc(), new_citizen_id()
    with Client(target, token=token) as client:
        client.check(
            subject, "MOF-0001", purpose=f"核查{subject}及其法定代表人{other}", authorization_ref=other
        )
    assert is_audit_log(gateway.audit)
    (record,) = gateway.audit.query(subject=subject, kind="check")
    for text in (record.purpose, record.authorization_ref):
        assert subject not in text and other not in text and other[6:14] not in text
    assert record.purpose.startswith("核查[subject]及其法定代表人" + other[:6])


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_lifts_after_quiet_and_windows_close() -> None:
    clock = FakeClock()
    throttle = PeerThrottle(
        FailedAuthLimit(burst=2, per_second=1.0, window_s=10), monotonic=clock, max_peers=2
    )
    assert [throttle.failed("10.0.0.1", "token.unknown") for _ in range(2)] == [0.0, 0.0]
    assert throttle.failed("10.0.0.1", "token.unknown", items=1000) >= 1  # throttled: counted
    assert throttle.failed("10.0.0.1", "credentials.missing") >= 1
    (alert,) = throttle.due()
    assert alert.kind == "alert" and alert.detail["peer"] == "10.0.0.1"
    clock.now += 1.5  # a token back, but the peer is still throttled until its allowance is whole
    assert throttle.failed("10.0.0.1", "token.unknown") >= 1
    clock.now += 1.9  # a whole allowance's time since the first throttled failure, but not since the last:
    assert throttle.failed("10.0.0.1", "token.unknown") >= 1  # a flood that goes on stays throttled
    clock.now += 10  # the window closes: its aggregate falls due
    (aggregate,) = throttle.due()
    assert (aggregate.detail["requests"], aggregate.detail["items"]) == (4, 1003)
    assert aggregate.detail["reasons"] == {"credentials.missing": 1, "token.unknown": 3}
    assert throttle.failed("10.0.0.1", "token.unknown") == 0.0  # quiet long enough: a new episode
    # A third peer evicts the least recent one; its open window is written, not lost.
    throttle.failed("10.0.0.2", "token.unknown")
    throttle.failed("10.0.0.2", "token.unknown")
    throttle.failed("10.0.0.2", "token.unknown")
    throttle.due()
    throttle.failed("10.0.0.3", "token.unknown")
    throttle.failed("10.0.0.4", "token.unknown")
    evicted = [event for event in throttle.due() if event.kind == "refused"]
    assert [event.detail["peer"] for event in evicted] == ["10.0.0.2"]


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.1:5123", "127.0.0.1"),
        ("ipv6:[::1]:5123", "::/64"),
        ("ipv6:[2001:db8::5]:5123", "2001:db8::/64"),
        ("ipv6:[2001:db8::ffff:1]:6000", "2001:db8::/64"),  # another address of the same host's /64
        ("unix:/tmp/socket", "unix:/tmp/socket"),
    ],
)
def test_a_peer_is_its_address_without_the_port(peer: str, address: str) -> None:
    assert peer_address(peer) == address


def test_a_flood_of_malformed_anonymous_requests_is_aggregated_too(tmp_path: Path) -> None:
    """Garbage bytes from a peer without credentials: one record each only up to the peer's allowance,
    then its aggregated record counts them (the log must not grow per request)."""
    data_dir = tmp_path / "data"
    config = GatewayConfig(data_dir=data_dir, listen="127.0.0.1:0", policy_dir=POLICY_DIR)
    requests = 300
    with GatewayThread(config) as gateway:
        before = last_seq(gateway)
        with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            garbage = channel.unary_unary(
                "/mustcheck.v1.CheckService/Check", request_serializer=None, response_deserializer=None
            )
            for _ in range(requests):
                with pytest.raises(grpc.RpcError):
                    garbage(b"\xff\xff\xff\xff not a message", timeout=10)
    with AuditLog.open(data_dir) as log:
        added = list(log.records(since_seq=before + 1))
    assert len(added) <= FailedAuthLimit().burst + 10
    one_by_one = [r for r in added if r.kind == "malformed_request"]
    aggregates = [r for r in added if r.kind == "refused"]
    assert len(one_by_one) + sum(r.detail["requests"] for r in aggregates) == requests
