"""R1 end to end: one canonical subject on every path, and nothing but an identifier error for any string.

The full-width form of a listed subject's identifier (what a Chinese input method types) is the same
subject: same outcome, same measures, same audit subject hash. Digits of other scripts are refused by
name (``*.charset``) with INVALID_ARGUMENT, alone and inside a batch whose other items are answered.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mustcheck import Client, InvalidSubject, Outcome, SubjectKind
from mustcheck._channel import auth_metadata
from mustcheck._generated.v1 import check_pb2 as pb
from mustcheck._generated.v1 import check_pb2_grpc as pb_grpc
from mustcheck.identifiers import citizen_id_check_character, validate_uscc
from mustcheck_gateway.audit.backends import is_audit_log
from mustcheck_gateway.policy.model import ListKind
from mustcheck_gateway.server import Gateway

from factories import days, make_entry, new_citizen_id, new_uscc

MATTER = "MOF-0001"
# Other scripts' digits 0-9: each is a "digit" to str.isdigit(), and int() reads some of them.
SCRIPTS = {
    "arabic-indic": "٠١٢٣٤٥٦٧٨٩",
    "devanagari": "०१२३४५६७८९",
    "superscript": "⁰¹²³⁴⁵⁶⁷⁸⁹",
    "circled": "⓪①②③④⑤⑥⑦⑧⑨",
}
# Text a caller could send: any Unicode but lone surrogates (not valid UTF-8, so never on the wire).
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


def full_width(text: str) -> str:
    """``text`` as a Chinese input method's full-width mode types it, in lower case."""
    return "\u3000" + "".join(chr(ord(c) + 0xFEE0) for c in text.lower()) + "\u3000"


@pytest.fixture(scope="module")
def stub(target: str) -> Any:
    channel = grpc.insecure_channel(target)
    yield pb_grpc.CheckServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def metadata(token: str) -> Any:
    return auth_metadata(token)


def _listed(gateway: Gateway, code: str, kind: SubjectKind) -> None:
    now = dt.datetime.now(dt.UTC)
    entry = make_entry(
        code,
        kind=kind,
        memorandum="judgment-defaulters",
        list_kind=ListKind.BLACK,
        effective=now - days(5),
    )
    gateway.store.write_entries([entry], actor="test", action="add")


@pytest.mark.parametrize("kind", [SubjectKind.PERSON, SubjectKind.ORGANIZATION])
def test_full_width_form_is_the_same_subject(
    gateway: Gateway, target: str, token: str, kind: SubjectKind
) -> None:
    code = new_citizen_id() if kind is SubjectKind.PERSON else new_uscc()
    _listed(gateway, code, kind)
    with Client(target, token=token) as client:
        ascii_result = client.check(code, MATTER, purpose="test", authorization_ref="AUTH-1")
        wide_result = client.check(full_width(code), MATTER, purpose="test", authorization_ref="AUTH-1")
    assert ascii_result.outcome is Outcome.RESTRICTIONS
    assert wide_result.outcome is ascii_result.outcome
    assert wide_result.subject == ascii_result.subject and wide_result.subject_kind is kind
    assert [m.id for m in wide_result.measures] == [m.id for m in ascii_result.measures]
    assert [m.entry_id for m in wide_result.memberships] == [m.entry_id for m in ascii_result.memberships]
    assert ascii_result.receipt is not None and wide_result.receipt is not None
    assert wide_result.receipt.subject_hash == ascii_result.receipt.subject_hash
    assert is_audit_log(gateway.audit)
    seqs = {record.seq for record in gateway.audit.query(subject=code, kind="check")}
    assert {ascii_result.receipt.audit_seq, wide_result.receipt.audit_seq} <= seqs


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_other_scripts_digits_are_refused_by_name_in_any_position(
    gateway: Gateway, stub: Any, metadata: Any, script: str
) -> None:
    number = new_citizen_id()
    _listed(gateway, number, SubjectKind.PERSON)
    digits = SCRIPTS[script]
    corrupted = [number[:i] + digits[int(number[i])] + number[i + 1 :] for i in range(18) if number[i] != "X"]
    # Alone: INVALID_ARGUMENT naming the charset rule (never INTERNAL).
    for subject in corrupted:
        with pytest.raises(grpc.RpcError) as caught:
            stub.Check(pb.CheckRequest(subject=subject, matter=MATTER), metadata=metadata)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "charset]" in (caught.value.details() or "")
    # In a batch: each such item fails by name, the others are answered.
    response = stub.BatchCheck(
        pb.BatchCheckRequest(subjects=[number, *corrupted, new_uscc()], matter=MATTER), metadata=metadata
    )
    items = sorted(response.items, key=lambda item: item.index)
    assert len(items) == len(corrupted) + 2
    assert items[0].HasField("result") and items[0].result.outcome == pb.OUTCOME_RESTRICTIONS
    assert items[-1].HasField("result")
    for item in items[1:-1]:
        assert item.HasField("error"), item
        assert item.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert item.error.reason in ("id.charset", "uscc.charset")


def test_the_sdk_refuses_other_scripts_before_sending(target: str, token: str) -> None:
    number = new_citizen_id()
    with Client(target, token=token) as client:
        for digits in SCRIPTS.values():
            with pytest.raises(InvalidSubject) as caught:
                client.check(number[:5] + digits[3] + number[6:], MATTER)
            assert caught.value.rule == "id.charset"
            assert "[id.charset]" in caught.value.message


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ANY_TEXT)
@example("t").via("found in the purpose by chance")
@example("uscc.length").via("found in the reason by chance")
def test_any_text_gets_a_subject_error_from_the_gateway(target: str, token: str, text: str) -> None:
    with Client(target, token=token, validate_locally=False) as client:
        try:
            # A purpose and reference in which a short subject ("t", "1") is found by chance.
            client.check(text, MATTER, purpose="test 1 测试", authorization_ref="REF-2026-1")
        except InvalidSubject as error:
            assert error.rule and error.message
        # Anything else (a GatewayFault for INTERNAL, say) fails the test.


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ANY_TEXT)
def test_any_text_over_raw_grpc_is_answered_or_refused_by_name(stub: Any, metadata: Any, text: str) -> None:
    try:
        stub.Check(pb.CheckRequest(subject=text, matter=MATTER), metadata=metadata)
    except grpc.RpcError as error:
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert (error.details() or "").startswith("invalid subject: ")


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ANY_TEXT, min_size=1, max_size=30))
def test_any_batch_through_the_sdk_is_answered_item_by_item(
    target: str, token: str, texts: list[str]
) -> None:
    with Client(target, token=token) as client:
        result = client.batch_check([*texts, new_uscc()], MATTER)
    assert [item.index for item in result.items] == list(range(len(texts) + 1))
    for item in result.items[:-1]:
        assert item.ok or isinstance(item.error, InvalidSubject), item.error
    assert result.items[-1].ok


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ANY_TEXT, min_size=1, max_size=30))
def test_any_batch_is_answered_item_by_item(stub: Any, metadata: Any, texts: list[str]) -> None:
    response = stub.BatchCheck(
        pb.BatchCheckRequest(subjects=[*texts, new_uscc()], matter=MATTER), metadata=metadata
    )
    assert sorted(item.index for item in response.items) == list(range(len(texts) + 1))
    for item in response.items:
        if item.HasField("error"):
            assert item.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert item.error.reason.startswith(("uscc.", "id.", "subject."))
    assert response.items[-1].HasField("result")


def _id_also_a_credit_code() -> str:
    for sequence in range(1000):
        for day in range(1, 29):
            first17 = f"110101199001{day:02d}{sequence:03d}"
            number = first17 + citizen_id_check_character(first17)
            try:
                validate_uscc(number)
            except ValueError:
                continue
            return number
    raise AssertionError("no ID number that is also a valid credit code")


def test_batch_items_may_state_their_kind(target: str, token: str) -> None:
    ambiguous = _id_also_a_credit_code()
    company = new_uscc()
    with Client(target, token=token) as client:
        inferred = client.batch_check([ambiguous, company], MATTER)
        stated = client.batch_check([(ambiguous, SubjectKind.PERSON), company], MATTER)
        as_organization = client.batch_check([(ambiguous, SubjectKind.ORGANIZATION)], MATTER)
    assert inferred.items[0].error is not None and inferred.items[1].result is not None
    assert isinstance(inferred.items[0].error, InvalidSubject)
    assert inferred.items[0].error.reason == "subject.ambiguous"
    person = stated.items[0].result
    assert person is not None and person.subject_kind is SubjectKind.PERSON
    assert stated.items[1].result is not None
    assert stated.items[1].result.subject_kind is SubjectKind.ORGANIZATION
    organization = as_organization.items[0].result
    assert organization is not None and organization.subject_kind is SubjectKind.ORGANIZATION


def test_batch_kinds_must_match_the_subjects(stub: Any, metadata: Any) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.BatchCheck(
            pb.BatchCheckRequest(
                subjects=[new_uscc(), new_uscc()],
                subject_kinds=[pb.SUBJECT_KIND_ORGANIZATION],
                matter=MATTER,
            ),
            metadata=metadata,
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "subject_kinds" in (caught.value.details() or "")


def test_a_full_batch_may_state_every_items_kind(target: str, token: str) -> None:
    # One kind per item, for as many items as a batch takes (a grant's few subject kinds bound nothing here).
    companies = [new_uscc() for _ in range(120)]
    with Client(target, token=token) as client:
        batch = client.batch_check([(company, SubjectKind.ORGANIZATION) for company in companies], MATTER)
    assert [item.result is not None for item in batch.items] == [True] * len(companies)


def test_an_undefined_kind_in_a_batch_is_refused(stub: Any, metadata: Any) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.BatchCheck(
            pb.BatchCheckRequest(
                subjects=[new_uscc()],
                subject_kinds=[99],  # type: ignore[list-item]  # no such kind: that is the point
                matter=MATTER,
            ),
            metadata=metadata,
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "subject_kind" in (caught.value.details() or "")
