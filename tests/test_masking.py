"""Masking covers free text (R9, issue 13): a membership's reason and decision document, exported rows and
history never show a masked caller the raw name or ID number of a person the entry names, nor any
ID-number-shaped string — on every path (check, batch, export, history)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from mustcheck_gateway.masking import Masker, mask_id, mask_id_shapes

from factories import new_citizen_id, new_uscc
from provision import provision

TODAY = dt.date.today()
FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


def day(offset: int) -> str:
    return (TODAY + dt.timedelta(days=offset)).isoformat()


def strings(message: Message) -> Iterator[str]:
    """Every string value anywhere in ``message``."""
    for field, value in message.ListFields():
        values = value if field.is_repeated else [value]
        for item in values:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                yield from strings(item)
            elif field.type == FieldDescriptor.TYPE_STRING:
                yield item


def leaks(texts: Iterator[str] | list[str], name: str, number: str) -> list[str]:
    """The texts that show ``name`` or ``number`` (or its hidden middle: the birth date), in either width."""
    needles = {name, number, number[6:14], number.translate(FULL_WIDTH), number[6:14].translate(FULL_WIDTH)}
    return [text for text in texts if any(needle in text for needle in needles)]


names = st.builds(
    lambda surname, given: surname + given,
    st.sampled_from(SURNAMES),
    st.text(alphabet=GIVEN, min_size=1, max_size=2),
)
filler = st.text(alphabet="拒不履行生效判决的义务，（）、。 abcXYZ:-0123456789", max_size=12)


@st.composite
def reasons(draw: st.DrawFn, name: str, number: str) -> str:
    """Free text that names the person and writes out the ID number, among other words and digits."""
    shown = draw(st.sampled_from([number, number.translate(FULL_WIDTH), number.lower()]))
    parts = [draw(filler), name, draw(filler), shown, draw(filler)]
    if draw(st.booleans()):
        parts.reverse()
    return "".join(parts)


def add_entry(lists: lists_pb2_grpc.ListsServiceStub, admin_token: str, row: dict[str, Any]) -> None:
    lists.AddEntry(
        lists_pb2.EntryRow(row_json=json.dumps(row, ensure_ascii=False)), metadata=auth_metadata(admin_token)
    )


def row(subject: str, kind: str, name: str, reason: str, persons: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "source": "masking-test",
        "subject_code": subject,
        "subject_name": name,
        "subject_kind": kind,
        "memorandum": "judgment-defaulters",
        "list_kind": "black",
        "initiating_department": "court",
        "decision_document": f"（{TODAY.year}）示例执字第{new_uscc()[-6:]}号 {reason[:40]}",
        "decision_date": day(-30),
        "severity": "serious",
        "reason": reason,
        "effective_date": day(-29),
        "punish_until": day(300),
        "display_until": day(330),
        "responsible_persons": persons,
    }


@pytest.fixture(scope="module")
def unmasked_token(target: str, admin_token: str) -> str:
    return provision(target, admin_token, "masking-unmasked", visible_fields=["person_name", "person_id"])


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), person_name=names, representative_name=names)
def test_a_masked_caller_never_sees_a_persons_name_or_id_number_in_free_text(
    target: str, token: str, admin_token: str, data: st.DataObject, person_name: str, representative_name: str
) -> None:
    person, representative, company = new_citizen_id(), new_citizen_id(), new_uscc()
    person_reason = data.draw(reasons(person_name, person))
    company_reason = data.draw(reasons(representative_name, representative))
    with grpc.insecure_channel(target) as channel:
        lists = lists_pb2_grpc.ListsServiceStub(channel)
        add_entry(lists, admin_token, row(person, "person", person_name, person_reason, []))
        add_entry(
            lists,
            admin_token,
            row(
                company,
                "organization",
                "示例建设有限公司",
                company_reason,
                [{"id": representative, "name": representative_name, "role": "legal_representative"}],
            ),
        )
        checks = check_pb2_grpc.CheckServiceStub(channel)
        metadata = auth_metadata(token)
        singles = [
            checks.Check(check_pb2.CheckRequest(subject=subject, matter="MOF-0001"), metadata=metadata)
            for subject in (person, company, representative)  # the representative: through the company (R7)
        ]
        batched = checks.BatchCheck(
            check_pb2.BatchCheckRequest(subjects=[person, company, representative], matter="MOF-0001"),
            metadata=metadata,
        )
        answers: list[Message] = [*singles, batched]
        exported = "".join(
            chunk.data
            for chunk in lists.Export(
                lists_pb2.ExportListsRequest(format="jsonl"), metadata=auth_metadata(admin_token)
            )
        )
        histories = [
            lists.History(lists_pb2.SubjectRef(subject=subject), metadata=auth_metadata(admin_token))
            for subject in (person, company)
        ]
    # The entries are there, with their reasons (masked): the test looks at real answers.
    assert [len(answer.memberships) for answer in singles] == [1, 1, 1]
    assert all(item.result.memberships for item in batched.items)
    assert person_name[0] in singles[0].memberships[0].reason
    for who, number in ((person_name, person), (representative_name, representative)):
        assert leaks([text for answer in answers for text in strings(answer)], who, number) == []
        # This example's rows only: the shared gateway's export also holds other tests' entries, whose
        # free text may by chance hold a name this example drew.
        # Another test's person may share the masked form (first six and last four characters).
        own_rows = [row for row in exported.splitlines() if company in row or f'"{mask_id(person)}"' in row]
        assert sum(company in row for row in own_rows) == 1 and len(own_rows) >= 2
        assert leaks(own_rows, who, number) == []
        assert leaks([text for history in histories for text in strings(history)], who, number) == []


def test_a_grant_with_the_person_fields_sees_the_reason_as_written(
    target: str, admin_token: str, unmasked_token: str, token: str
) -> None:
    person, name = new_citizen_id(), "李大伟"
    reason = f"{name}（公民身份号码{person}）拒不履行"
    with grpc.insecure_channel(target) as channel:
        add_entry(
            lists_pb2_grpc.ListsServiceStub(channel), admin_token, row(person, "person", name, reason, [])
        )
        checks = check_pb2_grpc.CheckServiceStub(channel)
        request = check_pb2.CheckRequest(subject=person, matter="MOF-0001")
        shown = checks.Check(request, metadata=auth_metadata(unmasked_token)).memberships[0].reason
        masked = checks.Check(request, metadata=auth_metadata(token)).memberships[0].reason
    assert shown == reason
    assert masked == f"李**（公民身份号码{person[:6]}********{person[-4:]}）拒不履行"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("号码110105198503120014。", "号码110105********0014。"),
        ("１１０１０５１９８５０３１２００１Ｘ", "１１０１０５********００１Ｘ"),
        ("旧证110105850312001", "旧证110105*****2001"),
        ("粘连1101051985031200149", "粘连110105*********0149"),
        ("代码914403001922038216", "代码914403001922038216"),  # an all-digit credit code: no birth date in it
        ("金额1500000元", "金额1500000元"),
    ],
)
def test_id_number_shapes_in_free_text(text: str, expected: str) -> None:
    assert mask_id_shapes(text) == expected


def test_names_are_masked_longest_first_and_only_without_the_grant() -> None:
    text = "张三丰与张三"
    assert Masker().text(text, names=["张三", "张三丰"]) == "张**与张*"
    assert Masker({"person_name"}).text(text, names=["张三"]) == text


def test_masked_free_text_remembered_for_one_grant_is_not_shown_to_another() -> None:
    # Masked text is remembered by its text, persons and the fields hidden: asked again with another
    # grant (or other persons), the same text is masked for that grant, whatever was asked before.
    text = "张三（110101199003077777）未履行"
    masked = "张*（110101********7777）未履行"
    for _ in range(2):
        assert Masker().text(text, names=["张三"], ids=["110101199003077777"]) == masked
        assert Masker({"person_name"}).text(text, names=["张三"], ids=["110101199003077777"]) == (
            "张三（110101********7777）未履行"
        )
        assert Masker({"person_id"}).text(text, names=["张三"], ids=["110101199003077777"]) == (
            "张*（110101199003077777）未履行"
        )
        assert Masker({"person_name", "person_id"}).text(text, names=["张三"]) == text
        assert Masker().text(text, names=["李四"]) == "张三（110101********7777）未履行"


def test_coverage_masks_id_numbers_in_approval_ids(target: str, token: str, admin_token: str) -> None:
    person = new_citizen_id()
    approval_id = f"审批-{person}"
    auditor = provision(target, admin_token, "masking-auditor", roles=["auditor"], grant=False)
    with Client(target, token=token) as client:
        client.report_outcome(None, approval_id, "approved", matter="MOF-0001", subject=new_uscc())
    with grpc.insecure_channel(target) as channel:
        report = audit_pb2_grpc.AuditServiceStub(channel).Coverage(
            audit_pb2.CoverageRequest(matter="MOF-0001"), metadata=auth_metadata(auditor), timeout=10
        )
    shown = [a for row in report.matters for a in row.approvals_without_check]
    # Usually the first six and last four digits stay; a number with a second date-shaped window that the
    # usual mask would leave showing (about 1 in 350 random ones) is masked whole.
    assert f"审批-{person[:6]}********{person[-4:]}" in shown or f"审批-{'*' * 18}" in shown
    assert all(person not in a for a in shown)
    assert all(person[6:14] not in a for a in shown)


def test_error_messages_never_repeat_an_id_number(target: str, token: str) -> None:
    person = new_citizen_id()
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as caught:
        check_pb2_grpc.CheckServiceStub(channel).Check(
            check_pb2.CheckRequest(subject=new_uscc(), matter=f"事项{person}"), metadata=auth_metadata(token)
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    details = caught.value.details() or ""
    assert person[:6] + "********" + person[-4:] in details and person[6:14] not in details


def test_an_id_number_cut_short_keeps_its_birth_date_hidden() -> None:
    # Free text cut short (a title, a summary) can leave an 18-digit number's first 15 digits: its
    # YYYYMMDD is still there to hide. An all-digit credit code and a 15-digit registration number are not.
    number = new_citizen_id()
    for length in (14, 15):
        masked = mask_id_shapes(f"摘要：{number[:length]}")
        assert masked == f"摘要：{number[:6]}" + "*" * (length - 6)  # nothing of the birth date is left
    assert mask_id_shapes("914403001922038216") == "914403001922038216"
    assert mask_id_shapes("440300123456789") == "440300123456789"


SPELLINGS: dict[str, Callable[[str], str]] = {
    "groups with spaces": lambda n: f"{n[:6]} {n[6:14]} {n[14:]}",
    "groups with hyphens": lambda n: f"{n[:6]}-{n[6:14]}-{n[14:]}",
    "groups with ideographic spaces": lambda n: f"{n[:6]}\u3000{n[6:14]}\u3000{n[14:]}",
    "a space between every character": lambda n: " ".join(n),
    "lower-case x": lambda n: n.lower(),
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_an_id_number_written_with_separators_is_masked(spelling: str) -> None:
    number = new_citizen_id()
    text = f"当事人{SPELLINGS[spelling](number)}，已列入"
    # The entry's own person (known number) and any stranger's number in its usual groups.
    for masked in (Masker().text(text, ids=[number]), Masker().text(text)):
        if masked == text and spelling == "a space between every character":
            continue  # an unknown number spaced out character by character is no ID-number shape
        digits = "".join(char for char in masked if char.isdigit())
        assert number[6:14] not in digits, masked  # the birth date is gone, however it was written


def test_an_id_number_glued_to_other_digits_keeps_its_birth_date_hidden() -> None:
    # Free text can glue a number to the digits before or after it ("…:0" + the number), or cut it, so
    # that its birth date stands elsewhere than an 18-digit number's positions 7-14.
    number = new_citizen_id()
    for text in (f"0{number[:17]}", f"12{number}", f"{number}0", f"9{number[:16]}", f"{number[3:]}123"):
        masked = mask_id_shapes(f"编号：{text}")
        assert number[6:14] not in masked, masked
    assert mask_id_shapes("914403001922038216") == "914403001922038216"  # an organisation's code: no date


def test_a_known_id_number_is_found_however_it_is_spelled_and_only_where_it_stands() -> None:
    # The masker looks for each known number in a folded copy of the text before matching its spellings:
    # full-width digits, separators between any characters, an x of either case are all still found.
    number = new_citizen_id()[:17] + "X"
    wide = number.translate(FULL_WIDTH)
    for spelled in (wide, f"{wide[:6]}-{wide[6:14]} {wide[14:]}", " ".join(number.lower())):
        assert Masker().text(f"当事人{spelled}，已列入", ids=[number]) == f"当事人{mask_id(number)}，已列入"
    # Another person's number in the same text is masked by its ID-number shape, not mistaken for this one.
    other = new_citizen_id()
    masked = Masker().text(f"当事人{other}", ids=[number])
    assert masked == f"当事人{mask_id(other)}" and number[6:14] not in masked
