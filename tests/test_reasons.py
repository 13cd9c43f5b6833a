"""Every reason the gateway can give is a documented ``Reason`` value (reasons.proto), one to one, and
travels as both trailers: ``mustcheck-reason`` (dotted code) and ``mustcheck-reason-name`` (enum name).

The reasons are found by reading the gateway's code: every ``reason=`` given to a domain exception, every
class's ``default_reason``, every reason trailer the interceptor sets, and the identifier rules (R1) the
gateway passes on. A reason computed at run time must be one this test knows how to expand: a new kind of
computed reason fails here until it is added, so no reason escapes the enum unnoticed.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import grpc
import pytest

from mustcheck import Client, InvalidRequest, PermissionDenied
from mustcheck._generated.v1 import check_pb2 as pb
from mustcheck._generated.v1 import check_pb2_grpc, reasons_pb2
from mustcheck._reasons import REASON_CODES
from mustcheck_gateway.auth.model import ROLES
from mustcheck_gateway.errors import reason_name, reason_value

from factories import new_uscc

ROOT = Path(__file__).resolve().parents[1]
GATEWAY = ROOT / "gateway" / "mustcheck_gateway"
IDENTIFIERS = ROOT / "sdk" / "mustcheck" / "identifiers.py"
EXCEPTION_ROOTS = {"GatewayError"}


def _identifier_rules() -> set[str]:
    """Every rule ``IdentifierError`` can name: its literal first arguments, and ``<prefix>.charset``."""
    rules: set[str] = set()
    for node in ast.walk(ast.parse(IDENTIFIERS.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or not node.args:
            continue
        first = node.args[0]
        if node.func.id == "IdentifierError" and isinstance(first, ast.Constant):
            rules.add(str(first.value))
        elif node.func.id == "_non_ascii_error" and isinstance(first, ast.Constant):
            rules.add(f"{first.value!s}.charset")
    return rules


IDENTIFIER_RULES = _identifier_rules()
# Reasons computed at run time, by their source text, and the codes they can take.
DYNAMIC: dict[str, set[str]] = {
    "f'role.{role}'": {f"role.{role}" for role in ROLES},
    "f'{name}.too_long'": {"<field>.too_long"},
    "f'{name}.too_many'": {"<field>.too_many"},
    "error.rule": IDENTIFIER_RULES,  # an identifier's rule, passed on
    "error.reason": set(),  # an exception's own reason, passed on (its origin is scanned)
    "reason": set(),  # a constructor's parameter, passed on
}


def _modules() -> list[ast.Module]:
    return [ast.parse(path.read_text(encoding="utf-8")) for path in sorted(GATEWAY.rglob("*.py"))]


def _exception_classes(modules: list[ast.Module]) -> set[str]:
    classes = set(EXCEPTION_ROOTS)
    grown = True
    while grown:
        grown = False
        for module in modules:
            for node in ast.walk(module):
                if isinstance(node, ast.ClassDef) and node.name not in classes:
                    bases = {base.id for base in node.bases if isinstance(base, ast.Name)}
                    if bases & classes:
                        classes.add(node.name)
                        grown = True
    return classes


def raised_reasons() -> set[str]:
    """Every reason code (or family pattern) the gateway's code can put in a trailer."""
    modules = _modules()
    classes = _exception_classes(modules)
    found: set[str] = set()
    for module in modules:
        for node in ast.walk(module):
            if isinstance(node, ast.ClassDef) and node.name in classes:
                for statement in node.body:
                    if not isinstance(statement, ast.Assign):
                        continue
                    names = [t.id for t in statement.targets if isinstance(t, ast.Name)]
                    if "default_reason" in names and isinstance(statement.value, ast.Constant):
                        found.add(str(statement.value.value))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id == "reason_trailers" and node.args:
                    argument = node.args[0]
                    if isinstance(argument, ast.Constant):
                        found.add(str(argument.value))
                    else:
                        assert ast.unparse(argument) == "error.reason", ast.unparse(argument)
                if node.func.id not in classes:
                    continue
                for keyword in node.keywords:
                    if keyword.arg != "reason":
                        continue
                    if isinstance(keyword.value, ast.Constant):
                        found.add(str(keyword.value.value))
                        continue
                    source = ast.unparse(keyword.value)
                    assert source in DYNAMIC, f"a computed reason this test cannot expand: {source}"
                    found |= DYNAMIC[source]
    return found


def test_the_scan_finds_the_reasons_it_should() -> None:
    """The scan itself works: it sees literal, default, trailer-only, family and identifier reasons."""
    found = raised_reasons()
    expected = {"grant.purpose", "matter.unknown", "audit.unavailable", "store.unavailable", "internal"}
    expected |= {"<field>.too_long", "role.reveal", "uscc.check_character", "id.charset", "auth.throttled"}
    assert expected <= found
    assert len(found) > 90


def test_every_reason_the_gateway_raises_has_a_reason_value() -> None:
    missing = sorted(code for code in raised_reasons() | IDENTIFIER_RULES if code not in REASON_CODES)
    assert not missing, f"reasons without a Reason value in reasons.proto: {missing}"


def test_reason_values_and_codes_map_one_to_one() -> None:
    values = [v for v in reasons_pb2.Reason.DESCRIPTOR.values if v.number != 0]
    codes = [v.GetOptions().Extensions[reasons_pb2.reason_code] for v in values]
    assert all(codes), "every value but REASON_UNSPECIFIED names its dotted code"
    assert len(set(codes)) == len(codes) == len(REASON_CODES)
    for value, code in zip(values, codes, strict=True):
        if code.startswith("<field>."):
            assert reason_name(code.replace("<field>", "purpose")) == value.name
            continue
        assert value.name == "REASON_" + code.replace(".", "_").upper()  # the naming rule
        assert reason_name(code) == value.name and reason_value(code) == value.number
    assert reasons_pb2.Reason.Name(reasons_pb2.REASON_UNSPECIFIED) == "REASON_UNSPECIFIED"
    # Unknown codes, and family-shaped codes that name no field, are unspecified.
    for unknown in ("", "no.such_reason", ".too_long", "a.b.too_many"):
        assert reason_name(unknown) == "REASON_UNSPECIFIED"


def test_every_reason_value_is_documented() -> None:
    """Each value has a comment above it in reasons.proto saying its status and what the caller can do."""
    text = (ROOT / "proto" / "mustcheck" / "v1" / "reasons.proto").read_text(encoding="utf-8")
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip().startswith("REASON_") and "reason_code" in line:
            comment = []
            back = index - 1
            while lines[back].strip().startswith("//"):
                comment.append(lines[back])
                back -= 1
            words = " ".join(comment)
            assert "Status " in words and "Caller:" in words, line


def _trailers(error: grpc.RpcError) -> dict[str, str]:
    trailing: Any = error.trailing_metadata() or ()
    return {key: value for key, value in trailing}


def test_a_refusal_carries_the_code_and_the_enum_name(target: str, token: str) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = check_pb2_grpc.CheckServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Check(pb.CheckRequest(subject=new_uscc(), matter="NO-SUCH-MATTER"), timeout=10)
        trailers = _trailers(raised.value)
        assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert trailers["mustcheck-reason"] == "credentials.missing"
        assert trailers["mustcheck-reason-name"] == "REASON_CREDENTIALS_MISSING"
        metadata = (("authorization", f"Bearer {token}"),)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Check(pb.CheckRequest(subject="x" * 65, matter="MOF-0001"), metadata=metadata, timeout=10)
        trailers = _trailers(raised.value)
        assert trailers["mustcheck-reason"] == "subject.too_long"
        assert trailers["mustcheck-reason-name"] == "REASON_FIELD_TOO_LONG"


def test_sdk_errors_and_batch_items_expose_the_reason_name(target: str, token: str) -> None:
    with Client(target, token=token) as client:
        with pytest.raises(InvalidRequest) as unknown:
            client.check(new_uscc(), "NO-SUCH-MATTER")
        batch = client.batch_check([new_uscc(), "914403001922038217"], "MOF-0001")
    assert (unknown.value.reason, unknown.value.reason_name) == ("matter.unknown", "REASON_MATTER_UNKNOWN")
    error = batch.items[1].error
    assert error is not None
    assert (error.reason, error.reason_name) == ("uscc.check_character", "REASON_USCC_CHECK_CHARACTER")
    # The wire carries the enum value too (JSON: its name).
    with grpc.insecure_channel(target) as channel:
        answer = check_pb2_grpc.CheckServiceStub(channel).BatchCheck(
            pb.BatchCheckRequest(subjects=["914403001922038217"], matter="MOF-0001"),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )
    assert answer.items[0].error.reason_name == reasons_pb2.REASON_USCC_CHECK_CHARACTER
    assert PermissionDenied("x", reason="grant.purpose").reason_name == "REASON_GRANT_PURPOSE"
