"""End to end: the real gateway on loopback, the SDK (sync and async) over the network."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mustcheck import (
    AsyncClient,
    CheckUnavailable,
    Client,
    DeadlineExceeded,
    EntryStatus,
    GatewayUnreachable,
    InvalidRequest,
    InvalidSubject,
    ListKind,
    MeasureKind,
    Outcome,
    SubjectKind,
    UnknownMatter,
)
from mustcheck._channel import auth_metadata
from mustcheck._generated.v1 import check_pb2, check_pb2_grpc
from mustcheck_gateway.audit.backends import is_audit_log
from mustcheck_gateway.server import Gateway, GatewayConfig, GatewayThread
from mustcheck_gateway.store import PersonRole

from conftest import POLICY_DIR
from factories import attest_complete_data, days, make_entry, new_citizen_id, new_uscc
from processes import ServeProcess
from provision import provision

PILOT_CODE = "91350203M0001QAY9B"


class AsyncFacade:
    """Drives an AsyncClient on its own loop so that both clients run the same tests."""

    def __init__(self, target: str, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()

        async def make() -> AsyncClient:
            return AsyncClient(target, **options)

        self.client = self.loop.run_until_complete(make())

    def check(self, *args: Any, **kwargs: Any) -> Any:
        return self.loop.run_until_complete(self.client.check(*args, **kwargs))

    def batch_check(self, *args: Any, **kwargs: Any) -> Any:
        return self.loop.run_until_complete(self.client.batch_check(*args, **kwargs))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(params=["sync", "async"])
def make_client(request: pytest.FixtureRequest, token: str) -> Iterator[Any]:
    opened: list[Any] = []

    def make(target: str, **options: Any) -> Any:
        options.setdefault("token", token)
        client = Client(target, **options) if request.param == "sync" else AsyncFacade(target, **options)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def client(make_client: Any, target: str) -> Any:
    return make_client(target)


def test_black_listed_company_gets_restrictions(client: Any, gateway: Gateway, now: dt.datetime) -> None:
    entry = make_entry(new_uscc(), effective=now - days(30), name="示范建设有限公司")
    version = gateway.store.write_entries([entry], actor="test", action="add")
    result = client.check(entry.subject_code, "MOF-0001", purpose="供应商资格审查")
    assert result.outcome is Outcome.RESTRICTIONS and result.restricted
    assert result.subject == entry.subject_code and result.subject_name == "示范建设有限公司"
    assert result.subject_kind is SubjectKind.ORGANIZATION
    (membership,) = result.memberships
    assert membership.list is ListKind.BLACK and membership.memorandum_id == "judgment-defaulters"
    assert membership.status is EntryStatus.ACTIVE and membership.in_force
    assert membership.effective_from == entry.effective_from
    assert result.measures and all(m.kind is MeasureKind.PUNISHMENT for m in result.measures)
    assert all(m.legal_basis is not None for m in result.measures)
    assert result.mandatory_measures
    assert result.data_version >= version
    assert not result.green_channel


def test_red_listed_company_gets_incentives(client: Any, gateway: Gateway, now: dt.datetime) -> None:
    entry = make_entry(
        new_uscc(),
        memorandum="a-grade-taxpayers",
        list_kind=ListKind.RED,
        effective=now - days(10),
        department="sat",
    )
    gateway.store.write_entries([entry], actor="test", action="add")
    attest_complete_data(gateway.store)
    result = client.check(entry.subject_code, "APPROVAL-0001")
    assert result.outcome is Outcome.INCENTIVES
    assert result.memberships[0].list is ListKind.RED
    assert {m.kind for m in result.measures} == {MeasureKind.INCENTIVE}
    assert result.green_channel


def test_unlisted_company_has_no_record(client: Any, gateway: Gateway) -> None:
    attest_complete_data(gateway.store)
    result = client.check(new_uscc(), "MOHURD-0001")
    assert result.outcome is Outcome.NO_RECORD
    assert result.memberships == () and result.measures == () and result.green_channel


def test_entry_under_objection(client: Any, gateway: Gateway, now: dt.datetime) -> None:
    entry = make_entry(new_uscc(), effective=now - days(30))
    gateway.store.write_entries([entry], actor="test", action="add")
    assert client.check(entry.subject_code, "MOF-0001").outcome is Outcome.RESTRICTIONS
    gateway.store.set_status(
        entry.entry_id, EntryStatus.UNDER_OBJECTION, actor="t", action="objection", at=now
    )
    result = client.check(entry.subject_code, "MOF-0001")
    assert result.outcome is Outcome.UNDER_OBJECTION
    assert result.memberships[0].status is EntryStatus.UNDER_OBJECTION and result.measures == ()


def test_person_linked_to_black_listed_company_is_masked(
    client: Any, gateway: Gateway, now: dt.datetime
) -> None:
    person = new_citizen_id()
    company = make_entry(
        new_uscc(),
        effective=now - days(5),
        name="关联贸易有限公司",
        persons=((person, "赵六一", PersonRole.DIRECTLY_RESPONSIBLE),),
    )
    gateway.store.write_entries([company], actor="test", action="add")
    result = client.check(person, "ORGANIZATION-0001", purpose="公务员录用考察")
    assert result.subject_kind is SubjectKind.PERSON
    assert result.subject == person[:6] + "********" + person[-4:]
    assert result.subject_name == "赵**"
    assert result.outcome is Outcome.RESTRICTIONS and result.human_review_required
    (membership,) = result.memberships
    assert membership.via is not None and membership.via.organization_code == company.subject_code
    assert membership.via.role == "directly_responsible"
    assert person not in repr(result) and "赵六一" not in repr(result)


def test_gateway_rejects_a_wrong_check_character_naming_it(make_client: Any, target: str) -> None:
    for validate_locally in (True, False):  # a checksum failure is always the gateway's to decide
        client = make_client(target, validate_locally=validate_locally)
        with pytest.raises(InvalidSubject) as caught:
            client.check("914403001922038217", "MOF-0001")
        assert caught.value.rule == "uscc.check_character"
        assert "check character" in caught.value.message
        assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT


def test_structurally_bad_ids_are_rejected_before_sending(make_client: Any) -> None:
    nowhere = make_client(f"127.0.0.1:{_free_port()}")
    with pytest.raises(InvalidSubject) as caught:
        nowhere.check("91440300192O038216", "MOF-0001")
    assert caught.value.rule == "uscc.forbidden_letter" and caught.value.code is None


def test_gateway_names_structural_errors_too(make_client: Any, target: str) -> None:
    client = make_client(target, validate_locally=False)
    with pytest.raises(InvalidSubject) as caught:
        client.check("110105209901010010", "MOF-0001")
    assert caught.value.rule == "id.birth_date" and caught.value.code is grpc.StatusCode.INVALID_ARGUMENT


def test_legacy_code_is_admitted_and_marked(client: Any) -> None:
    result = client.check(PILOT_CODE.lower(), "MOF-0001")
    assert result.legacy_code and result.subject == PILOT_CODE


def test_unknown_and_missing_matters(client: Any) -> None:
    with pytest.raises(UnknownMatter, match="NO-SUCH-MATTER"):
        client.check(new_uscc(), "NO-SUCH-MATTER")
    with pytest.raises(InvalidRequest, match="matter is required"):
        client.check(new_uscc(), "")


def test_batch_check_fails_only_the_bad_item(client: Any, gateway: Gateway, now: dt.datetime) -> None:
    listed = make_entry(new_uscc(), effective=now - days(1))
    gateway.store.write_entries([listed], actor="test", action="add")
    subjects = [listed.subject_code, "914403001922038217", new_uscc(), "not-an-id"]
    batch = client.batch_check(subjects, "MOF-0001")
    assert [item.index for item in batch.items] == [0, 1, 2, 3]
    assert [item.ok for item in batch.items] == [True, False, True, False]
    assert batch.items[0].result.outcome is Outcome.RESTRICTIONS
    assert batch.items[2].result.outcome is Outcome.NO_RECORD
    assert (
        isinstance(batch.items[1].error, InvalidSubject)
        and batch.items[1].error.rule == "uscc.check_character"
    )
    assert isinstance(batch.items[3].error, InvalidSubject)
    assert batch.items[1].subject == "914403001922038217"
    assert len(batch.results) == 2 and len(batch.errors) == 2
    assert batch.data_version >= 1


def test_a_batch_answers_each_subject_as_a_single_check_does(
    client: Any, gateway: Gateway, now: dt.datetime
) -> None:
    # A batch reads its subjects together (one store read for those the cache lacks): each item's answer
    # is still the one a single check gives, and its audit records stand in item order.
    person, company = new_citizen_id(), new_uscc()
    listed = make_entry(
        company, effective=now - days(1), persons=((person, "张三", PersonRole.LEGAL_REPRESENTATIVE),)
    )
    gateway.store.write_entries([listed], actor="test", action="add")
    subjects = [person, "not-an-id", company, new_uscc(), company, new_citizen_id()]
    assert is_audit_log(gateway.audit)
    last_seq = max((record.seq for record in gateway.audit.records()), default=0)
    batch = client.batch_check(subjects, "MOF-0001", purpose="审批", authorization_ref="AUTH-1")
    batch_records = list(gateway.audit.records(since_seq=last_seq + 1))
    singles = {
        subject: client.check(subject, "MOF-0001", purpose="审批", authorization_ref="AUTH-1")
        for subject in subjects
        if subject != "not-an-id"
    }

    def shown(result: Any) -> tuple[Any, ...]:
        return (
            result.subject,
            result.outcome,
            [(m.entry_id, m.reason, m.decision_document, m.in_force) for m in result.memberships],
            [m.id for m in result.measures],
        )

    assert [item.ok for item in batch.items] == [True, False, True, True, True, True]
    for subject, item in zip(subjects, batch.items, strict=True):
        if item.ok:
            assert shown(item.result) == shown(singles[subject]) and item.result.receipt
    assert batch.items[0].result.outcome is Outcome.RESTRICTIONS  # the person, through the company's entry
    assert batch.items[0].result.subject != person  # masked
    assert [(r.kind, r.outcome) for r in batch_records] == [
        ("batch_item", "restrictions"),
        ("batch_item", "invalid_input"),
        ("batch_item", "restrictions"),
        ("batch_item", "no_record"),
        ("batch_item", "restrictions"),
        ("batch_item", "no_record"),
    ]


def test_batch_limits(client: Any, target: str, token: str) -> None:
    with pytest.raises(InvalidRequest):
        client.batch_check([], "MOF-0001")
    with pytest.raises(InvalidRequest):
        client.batch_check([new_uscc()] * 1001, "MOF-0001")
    # The gateway enforces the limit itself, whatever the client.
    with grpc.insecure_channel(target) as channel:
        stub = check_pb2_grpc.CheckServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.BatchCheck(
                check_pb2.BatchCheckRequest(subjects=[new_uscc()] * 1001, matter="MOF-0001"),
                timeout=10,
                metadata=auth_metadata(token),
            )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 1000" in (caught.value.details() or "")


def test_unreachable_gateway_fails_closed(make_client: Any) -> None:
    client = make_client(f"127.0.0.1:{_free_port()}", timeout=1.0)
    with pytest.raises(CheckUnavailable) as caught:
        client.check(new_uscc(), "MOF-0001")
    assert isinstance(caught.value, GatewayUnreachable | DeadlineExceeded)
    assert caught.value.retryable


def test_passed_deadline_fails_closed(make_client: Any) -> None:
    # A hung gateway: the port accepts connections and never answers.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen()
        client = make_client(f"127.0.0.1:{hung.getsockname()[1]}", timeout=0.3)
        with pytest.raises(DeadlineExceeded) as caught:
            client.check(new_uscc(), "MOF-0001")
    assert isinstance(caught.value, CheckUnavailable) and caught.value.retryable


def test_health_and_reflection(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "mustcheck.v1.CheckService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {
            service.name for response in responses for service in response.list_services_response.service
        }
    assert {"mustcheck.v1.CheckService", "grpc.health.v1.Health"} <= names

    # The same over reflection v1 (what current tools ask first); its messages are v1alpha's field for field.
    with grpc.insecure_channel(target) as channel:
        v1 = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        answers = v1(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        v1_names = {service.name for answer in answers for service in answer.list_services_response.service}
    assert v1_names == names
    assert {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= v1_names


@pytest.mark.slow
def test_a_health_watcher_sees_not_serving_before_the_stream_ends_on_sigterm(tmp_path: Path) -> None:
    gateway = ServeProcess(tmp_path, "--drain-seconds", "1")
    seen: list[int] = []
    try:
        with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service="mustcheck.v1.CheckService"), timeout=30
            )
            seen.append(next(watch).status)
            gateway.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(grpc.RpcError):  # the stream ends when the listener closes
                for update in watch:
                    seen.append(update.status)
    finally:
        gateway.process.wait(30)
    assert seen[:2] == [health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING]
    assert gateway.process.returncode == 0


def test_effective_instant_over_the_network(tmp_path: Any) -> None:
    instant = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    clock = [instant - dt.timedelta(microseconds=1)]
    config = GatewayConfig(
        data_dir=tmp_path, listen="127.0.0.1:0", policy_dir=POLICY_DIR, clock=lambda: clock[0]
    )
    with GatewayThread(config) as gateway:
        target = f"127.0.0.1:{gateway.port}"
        assert gateway.admin_token_file is not None
        token = provision(target, gateway.admin_token_file.read_text().strip(), "clocked")
        with Client(target, token=token) as client:
            entry = make_entry(new_uscc(), effective=instant)
            gateway.store.write_entries([entry], actor="test", action="add")
            assert client.check(entry.subject_code, "MOF-0001").outcome is Outcome.NO_RECORD
            clock[0] = instant
            after = client.check(entry.subject_code, "MOF-0001")
            assert after.outcome is Outcome.RESTRICTIONS and after.checked_at == instant


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
