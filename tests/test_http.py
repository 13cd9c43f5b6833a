"""The HTTP/JSON binding (``serve --http``): the same pipeline as gRPC, errors as HTTP statuses.

A gateway with both listeners runs on loopback; the tests speak HTTP with the standard library's
client and gRPC with the generated stubs, and read the audit log the gateway writes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from mustcheck import verify_receipt
from mustcheck._channel import auth_metadata
from mustcheck._generated.v1 import check_pb2, check_pb2_grpc
from mustcheck_gateway.audit import AuditLog
from mustcheck_gateway.auth.certs import init_certificates
from mustcheck_gateway.auth.peers import FailedAuthLimit
from mustcheck_gateway.bounds import MAX_RECEIVE_BYTES
from mustcheck_gateway.http import decode
from mustcheck_gateway.http.binding import openapi_document
from mustcheck_gateway.server import ConfigError, Gateway, GatewayConfig, GatewayThread, TLSFiles
from mustcheck_gateway.store import PersonRole

from conftest import POLICY_DIR
from factories import days, make_entry, new_citizen_id, new_uscc
from processes import ServeProcess
from provision import provision

INVALID_USCC = "914403001922038217"  # a published code with its check character changed
PURPOSE = "供应商资格审查"


@pytest.fixture(scope="module")
def http_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = GatewayConfig(
        data_dir=tmp_path_factory.mktemp("http-gateway"),
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        policy_dir=POLICY_DIR,
    )
    with GatewayThread(config) as running:
        yield running


@pytest.fixture(scope="module")
def grpc_target(http_gateway: Gateway) -> str:
    return f"127.0.0.1:{http_gateway.port}"


@pytest.fixture(scope="module")
def base_url(http_gateway: Gateway) -> str:
    return f"http://127.0.0.1:{http_gateway.http_port}"


@pytest.fixture(scope="module")
def admin(http_gateway: Gateway) -> str:
    assert http_gateway.admin_token_file is not None
    return http_gateway.admin_token_file.read_text().strip()


@pytest.fixture(scope="module")
def http_token(grpc_target: str, admin: str) -> str:
    return provision(grpc_target, admin, "http-tester")


def audit_of(gateway: Gateway) -> AuditLog:
    assert isinstance(gateway.audit, AuditLog)
    return gateway.audit


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = body
        self.json: Any = json.loads(body) if body else None


def request(
    url: str,
    body: bytes | dict[str, Any] | None = None,
    *,
    token: str | None = None,
    method: str = "POST",
    content_type: str = "application/json",
    context: ssl.SSLContext | None = None,
) -> Answer:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"Content-Type": content_type} if data is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    call = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(call, timeout=30, context=context) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, dict(error.headers), error.read())


def grpc_check(target: str, token: str, message: check_pb2.CheckRequest) -> check_pb2.CheckResponse:
    with grpc.insecure_channel(target) as channel:
        answer: check_pb2.CheckResponse = check_pb2_grpc.CheckServiceStub(channel).Check(
            message, metadata=auth_metadata(token), timeout=10
        )
        return answer


def _comparable(message: Any) -> dict[str, Any]:
    """The message as a dict, without what differs between two checks of the same subject."""
    data: dict[str, Any] = json_format.MessageToDict(message)
    for item in [data, *(i.get("result", {}) for i in data.get("items", ()))]:
        item.pop("receipt", None)
        item.pop("checkedAt", None)
    return data


def test_http_and_grpc_answers_are_equal_field_for_field_and_each_leaves_one_audit_record(
    http_gateway: Gateway, grpc_target: str, base_url: str, http_token: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    entry = make_entry(new_uscc(), effective=now - days(30), name="示范建设有限公司")
    http_gateway.store.write_entries([entry], actor="test", action="add")
    audit = audit_of(http_gateway)

    def records() -> int:
        return len(audit.query(caller_id="http-tester", kind="check", limit=10_000))

    before = records()
    over_grpc = grpc_check(
        grpc_target,
        http_token,
        check_pb2.CheckRequest(subject=entry.subject_code, matter="MOF-0001", purpose=PURPOSE),
    )
    assert records() == before + 1
    over_http = request(
        f"{base_url}/v1/Check",
        # Both spellings of a field name are accepted on input (protobuf's JSON mapping).
        {"subject": entry.subject_code, "matter": "MOF-0001", "purpose": PURPOSE},
        token=http_token,
    )
    assert over_http.status == 200, over_http.json
    assert over_http.headers["Content-Type"].startswith("application/json")
    assert records() == before + 2
    parsed = json_format.ParseDict(over_http.json, check_pb2.CheckResponse())
    assert parsed.outcome == check_pb2.OUTCOME_RESTRICTIONS and parsed.measures
    assert _comparable(parsed) == _comparable(over_grpc)
    # lowerCamelCase names on output, fields with default values written out.
    assert over_http.json["subjectName"] == "示范建设有限公司" and over_http.json["greenChannel"] is False
    # The receipt verifies with the keys the binding serves.
    keys = request(f"{base_url}/v1/ReceiptKeys", {}, token=http_token)
    assert keys.status == 200
    public_keys = {key_id: pem.encode() for key_id, pem in keys.json["publicKeysPem"].items()}
    receipt = verify_receipt(parsed.receipt, public_keys)
    assert receipt.caller == "http-tester" and receipt.outcome == "restrictions"
    # ...and backs a decision reported over HTTP.
    ack = request(
        f"{base_url}/v1/ReportOutcome",
        {"receipt": parsed.receipt, "approval_id": "HTTP-0001", "decision": "rejected"},
        token=http_token,
    )
    assert ack.status == 200 and ack.json["backedByCheck"] is True and ack.json["duplicate"] is False


def test_a_person_is_masked_alike_on_both_bindings(
    http_gateway: Gateway, grpc_target: str, base_url: str, http_token: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    person = new_citizen_id()
    company = make_entry(
        new_uscc(), effective=now - days(30), persons=((person, "赵六一", PersonRole.LEGAL_REPRESENTATIVE),)
    )
    http_gateway.store.write_entries([company], actor="test", action="add")
    over_grpc = grpc_check(grpc_target, http_token, check_pb2.CheckRequest(subject=person, matter="MOF-0001"))
    over_http = request(f"{base_url}/v1/Check", {"subject": person, "matter": "MOF-0001"}, token=http_token)
    assert over_http.status == 200, over_http.json
    parsed = json_format.ParseDict(over_http.json, check_pb2.CheckResponse())
    assert _comparable(parsed) == _comparable(over_grpc)
    assert parsed.subject != person and person[6:14] not in over_http.raw.decode()  # R9: birth date masked
    assert parsed.memberships and parsed.memberships[0].via.organization_code == company.subject_code
    assert parsed.human_review_required  # R13, as on gRPC


def test_a_batch_over_http_answers_each_item_as_grpc_does(
    grpc_target: str, base_url: str, http_token: str
) -> None:
    subjects = [new_uscc(), INVALID_USCC]
    body = {"subjects": subjects, "matter": "MOF-0001", "purpose": PURPOSE}
    over_http = request(f"{base_url}/v1/BatchCheck", body, token=http_token)
    assert over_http.status == 200, over_http.json
    with grpc.insecure_channel(grpc_target) as channel:
        over_grpc = check_pb2_grpc.CheckServiceStub(channel).BatchCheck(
            check_pb2.BatchCheckRequest(subjects=subjects, matter="MOF-0001", purpose=PURPOSE),
            metadata=auth_metadata(http_token),
            timeout=10,
        )
    parsed = json_format.ParseDict(over_http.json, check_pb2.BatchCheckResponse())
    assert _comparable(parsed) == _comparable(over_grpc)
    first, second = over_http.json["items"]
    assert first["result"]["outcome"] == "OUTCOME_NO_RECORD" and first["result"]["receipt"].startswith(
        "mcr2."
    )
    assert second["error"]["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert second["error"]["reason"].startswith("uscc.")


def test_a_batch_over_1000_subjects_is_refused_as_on_grpc(base_url: str, http_token: str) -> None:
    body = {"subjects": [new_uscc() for _ in range(1001)], "matter": "MOF-0001", "purpose": PURPOSE}
    answer = request(f"{base_url}/v1/BatchCheck", body, token=http_token)
    _assert_refused(answer, 400, "INVALID_ARGUMENT", "batch.too_large")


def _assert_refused(answer: Answer, status: int, code: str, reason_code: str, reason: str = "") -> None:
    assert answer.status == status, answer.raw
    assert answer.json["code"] == code
    assert answer.json["reasonCode"] == reason_code
    assert answer.json["reason"] == (reason or "REASON_" + reason_code.replace(".", "_").upper())
    assert answer.json["message"] and "Traceback" not in answer.json["message"]


def test_an_invalid_subject_gets_400_naming_the_rule(base_url: str, http_token: str) -> None:
    answer = request(
        f"{base_url}/v1/Check",
        {"subject": INVALID_USCC, "matter": "MOF-0001", "purpose": PURPOSE},
        token=http_token,
    )
    _assert_refused(answer, 400, "INVALID_ARGUMENT", "uscc.check_character")


def test_bad_bodies_get_400_413_415_each_audited_once(
    http_gateway: Gateway, base_url: str, http_token: str
) -> None:
    audit = audit_of(http_gateway)

    def malformed() -> list[Any]:
        return audit.query(kind="malformed_request", caller_id="http-tester", limit=10_000)

    cases: list[tuple[bytes, str, int, str, str]] = [
        (b'{"subject": ', "application/json", 400, "INVALID_ARGUMENT", "request.malformed"),
        (
            b'{"subject": "x", "colour": "red"}',
            "application/json",
            400,
            "INVALID_ARGUMENT",
            "request.malformed",
        ),
        (b'{"subject": ["x"]}', "application/json", 400, "INVALID_ARGUMENT", "request.malformed"),
        (b"[" * 100_000, "application/json", 400, "INVALID_ARGUMENT", "request.malformed"),
        (b"\xff\xfe{}", "application/json", 400, "INVALID_ARGUMENT", "request.malformed"),
        # What Python's reader takes and JSON (or one meaning) does not: each was a 500 or read silently.
        (b'{"subjectKind": 1e400}', "application/json", 400, "INVALID_ARGUMENT", "request.malformed"),
        (b'{"subjectKind": NaN}', "application/json", 400, "INVALID_ARGUMENT", "request.malformed"),
        (b'{"matter": "A", "matter": "B"}', "application/json", 400, "INVALID_ARGUMENT", "request.malformed"),
        (b'"a string"', "application/json", 400, "INVALID_ARGUMENT", "request.malformed"),
        (b"subject=x", "application/x-www-form-urlencoded", 415, "INVALID_ARGUMENT", "request.content_type"),
        (b"{}", "application/json; charset=latin-1", 415, "INVALID_ARGUMENT", "request.content_type"),
        (b" " * (MAX_RECEIVE_BYTES + 1), "application/json", 413, "RESOURCE_EXHAUSTED", "request.too_large"),
        # Under 4 MiB, but more values than protobuf's JSON mapping is given to convert.
        (
            json.dumps({"subjects": ["a"] * 800_000}).encode(),
            "application/json",
            413,
            "RESOURCE_EXHAUSTED",
            "request.too_large",
        ),
    ]
    for body, content_type, status, code, reason in cases:
        before = len(malformed())
        answer = request(f"{base_url}/v1/Check", body, token=http_token, content_type=content_type)
        _assert_refused(answer, status, code, reason)
        after = malformed()
        assert len(after) == before + 1, body[:40]
        assert after[-1].detail["reason"] == reason
        assert after[-1].detail["method"] == "/mustcheck.v1.CheckService/Check"
    unknown = request(f"{base_url}/v1/Check", {"subject": "x", "colour": "red"}, token=http_token).json[
        "message"
    ]
    assert "colour" in unknown
    explained = {
        b'{"subjectKind": 1e400}': "the number 1e400 is out of range",
        b'{"subjectKind": -Infinity}': "-Infinity is not a JSON value",
        b'{"subject": "x", "matter": "A", "matter": "B"}': "the member name 'matter' appears twice",
        b"[]": "the body must be a JSON object (a mustcheck.v1.CheckRequest), not a JSON array",
        b"null": "not a JSON null",
    }
    for body, message in explained.items():
        assert message in request(f"{base_url}/v1/Check", body, token=http_token).json["message"], body


def test_a_field_over_its_bound_is_refused_and_audited(
    http_gateway: Gateway, base_url: str, http_token: str
) -> None:
    audit = audit_of(http_gateway)
    before = len(audit.query(caller_id="http-tester", kind="check", limit=10_000))
    answer = request(f"{base_url}/v1/Check", {"subject": "9" * 100, "matter": "MOF-0001"}, token=http_token)
    _assert_refused(answer, 400, "INVALID_ARGUMENT", "subject.too_long", "REASON_FIELD_TOO_LONG")
    assert "9" * 65 not in answer.json["message"]
    assert len(audit.query(caller_id="http-tester", kind="check", limit=10_000)) == before + 1


def test_no_credentials_get_401_and_a_wrong_token_401(base_url: str) -> None:
    body = {"subject": new_uscc(), "matter": "MOF-0001"}
    _assert_refused(request(f"{base_url}/v1/Check", body), 401, "UNAUTHENTICATED", "credentials.missing")
    _assert_refused(
        request(f"{base_url}/v1/Check", body, token="mct_" + "A" * 43),
        401,
        "UNAUTHENTICATED",
        "token.unknown",
    )


def test_a_caller_without_a_grant_gets_403(grpc_target: str, admin: str, base_url: str) -> None:
    token = provision(grpc_target, admin, "http-no-grant", grant=False)
    answer = request(f"{base_url}/v1/Check", {"subject": new_uscc(), "matter": "MOF-0001"}, token=token)
    _assert_refused(answer, 403, "PERMISSION_DENIED", "grant.missing")


def test_a_caller_over_its_rate_gets_429_with_retry_after(
    grpc_target: str, admin: str, base_url: str
) -> None:
    token = provision(grpc_target, admin, "http-slow", rate=0.01, burst=1)
    body = {"subject": new_uscc(), "matter": "MOF-0001"}
    assert request(f"{base_url}/v1/Check", body, token=token).status == 200
    answer = request(f"{base_url}/v1/Check", body, token=token)
    _assert_refused(answer, 429, "RESOURCE_EXHAUSTED", "rate_limited")
    assert int(answer.headers["Retry-After"]) >= 1


def test_unknown_paths_and_methods_get_json_errors(base_url: str, http_token: str) -> None:
    _assert_refused(request(f"{base_url}/v1/Watch", {}, token=http_token), 404, "NOT_FOUND", "not_found")
    wrong_method = request(f"{base_url}/v1/Check", method="GET", token=http_token)
    _assert_refused(wrong_method, 405, "INVALID_ARGUMENT", "invalid_argument")
    assert wrong_method.headers["Allow"] == "POST"


def test_the_openapi_document_and_health_are_served(base_url: str) -> None:
    document = request(f"{base_url}/openapi.json", method="GET")
    assert document.status == 200 and document.raw == openapi_document()
    assert document.json["openapi"].startswith("3.")
    health = request(f"{base_url}/healthz", method="GET")
    assert health.status == 200 and health.json == {"status": "SERVING"}


def test_plaintext_http_off_loopback_is_refused_without_insecure(tmp_path: Path) -> None:
    config = GatewayConfig(
        data_dir=tmp_path / "data", listen="127.0.0.1:0", http_listen="0.0.0.0:0", policy_dir=POLICY_DIR
    )
    with pytest.raises(ConfigError, match="plaintext HTTP"):
        GatewayThread(config).start()


def test_mutual_tls_maps_the_client_certificate_to_its_caller(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    init_certificates(certs, clients=["http-client", "admin-client"])
    config = GatewayConfig(
        data_dir=tmp_path / "data",
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        policy_dir=POLICY_DIR,
        tls=TLSFiles(certs / "server.pem", certs / "server.key", certs / "ca.pem"),
    )
    with GatewayThread(config) as gateway:
        assert gateway.admin_token_file is not None
        admin_token = gateway.admin_token_file.read_text().strip()
        credentials = grpc.ssl_channel_credentials(
            (certs / "ca.pem").read_bytes(),
            (certs / "admin-client.key").read_bytes(),
            (certs / "admin-client.pem").read_bytes(),
        )
        from mustcheck._generated.v1 import admin_pb2, admin_pb2_grpc

        with grpc.secure_channel(f"localhost:{gateway.port}", credentials) as channel:
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            metadata = auth_metadata(admin_token)
            admin.CreateCaller(
                admin_pb2.CreateCallerRequest(
                    caller_id="cert-caller", department="approval", tls_identity="http-client"
                ),
                metadata=metadata,
                timeout=10,
            )
            admin.SetGrant(
                admin_pb2.SetGrantRequest(
                    grant=admin_pb2.Grant(
                        caller_id="cert-caller",
                        matters=["*"],
                        subject_kinds=["organization"],
                        rate_per_second=100,
                        burst=100,
                    )
                ),
                metadata=metadata,
                timeout=10,
            )
        context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        context.load_cert_chain(certs / "http-client.pem", certs / "http-client.key")
        url = f"https://localhost:{gateway.http_port}/v1/Check"
        answer = request(url, {"subject": new_uscc(), "matter": "MOF-0001"}, context=context)
        assert answer.status == 200, answer.json
        assert audit_of(gateway).query(caller_id="cert-caller", kind="check", limit=10)
        # Without a client certificate the TLS handshake itself is refused.
        bare = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            request(url, {"subject": new_uscc(), "matter": "MOF-0001"}, context=bare)


def _refusals(gateway: Gateway) -> list[tuple[str, str]]:
    records = audit_of(gateway).query(kind="check", outcome="denied", limit=10_000)
    return [(record.caller_id, str(record.detail.get("reason"))) for record in records]


def test_a_certificate_bound_caller_s_token_alone_is_refused_over_http(tmp_path: Path) -> None:
    """RFC 8705 over the HTTP binding: HTTPS without a client CA (as behind a TLS terminator) carries
    no client certificate, so a caller bound to one (``--tls-identity``) is refused with its token
    alone (401, ``credentials.mismatch``, audited under the token's caller); an unbound caller's token
    is answered."""
    certs = tmp_path / "certs"
    init_certificates(certs, clients=["approval-system"])
    config = GatewayConfig(
        data_dir=tmp_path / "data",
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        policy_dir=POLICY_DIR,
        tls=TLSFiles(certs / "server.pem", certs / "server.key"),
    )
    with GatewayThread(config) as gateway:
        assert gateway.admin_token_file is not None
        admin_token = gateway.admin_token_file.read_text().strip()
        server_only = grpc.ssl_channel_credentials((certs / "ca.pem").read_bytes())
        target = f"localhost:{gateway.port}"
        bound = provision(
            target, admin_token, "approval-system", tls_identity="approval-system", credentials=server_only
        )
        loose = provision(target, admin_token, "loose-system", credentials=server_only)
        context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        url = f"https://localhost:{gateway.http_port}/v1/Check"
        answer = request(url, {"subject": new_uscc(), "matter": "MOF-0001"}, token=loose, context=context)
        assert answer.status == 200, answer.json
        answer = request(url, {"subject": new_uscc(), "matter": "MOF-0001"}, token=bound, context=context)
        _assert_refused(answer, 401, "UNAUTHENTICATED", "credentials.mismatch")
        assert "caller approval-system is bound to a client certificate" in answer.json["message"]
        assert "presented none" in answer.json["message"]
        assert _refusals(gateway) == [("approval-system", "credentials.mismatch")]


def test_a_bound_caller_s_token_needs_its_own_certificate_over_http(tmp_path: Path) -> None:
    """With mutual TLS over HTTP: a bound caller's token with its own certificate is answered; with a
    certificate mapped to another caller, or mapped to none, it is refused (401,
    ``credentials.mismatch``); an unbound caller's token with an unmapped certificate is answered."""
    certs = tmp_path / "certs"
    init_certificates(certs, clients=["approval-system", "other-system", "transport"])
    config = GatewayConfig(
        data_dir=tmp_path / "data",
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        policy_dir=POLICY_DIR,
        tls=TLSFiles(certs / "server.pem", certs / "server.key", certs / "ca.pem"),
    )

    def https(name: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        context.load_cert_chain(certs / f"{name}.pem", certs / f"{name}.key")
        return context

    with GatewayThread(config) as gateway:
        assert gateway.admin_token_file is not None
        admin_token = gateway.admin_token_file.read_text().strip()
        transport = grpc.ssl_channel_credentials(
            (certs / "ca.pem").read_bytes(),
            (certs / "transport.key").read_bytes(),
            (certs / "transport.pem").read_bytes(),
        )
        target = f"localhost:{gateway.port}"
        bound = provision(
            target, admin_token, "approval-system", tls_identity="approval-system", credentials=transport
        )
        provision(target, admin_token, "other-system", tls_identity="other-system", credentials=transport)
        loose = provision(target, admin_token, "loose-system", credentials=transport)
        url = f"https://localhost:{gateway.http_port}/v1/Check"
        body = {"subject": new_uscc(), "matter": "MOF-0001"}
        assert request(url, body, token=bound, context=https("approval-system")).status == 200
        assert request(url, body, token=loose, context=https("transport")).status == 200
        for certificate in ("other-system", "transport"):
            answer = request(url, body, token=bound, context=https(certificate))
            _assert_refused(answer, 401, "UNAUTHENTICATED", "credentials.mismatch")
        assert _refusals(gateway) == [("approval-system", "credentials.mismatch")] * 2


def test_a_body_that_trickles_in_is_refused_with_408_and_audited(
    http_gateway: Gateway, base_url: str, http_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decode, "BODY_TIMEOUT_S", 0.5)
    audit = audit_of(http_gateway)
    before = len(audit.query(kind="malformed_request", caller_id="http-tester", limit=10_000))
    port = http_gateway.http_port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(
            b"POST /v1/Check HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + http_token.encode() + b'\r\nContent-Length: 100\r\n\r\n{"sub'
        )
        reply = connection.recv(65536).decode()
        connection.sendall(b" " * 95)  # the rest, which the gateway reads and discards after answering
    assert reply.startswith("HTTP/1.1 408"), reply
    assert '"reasonCode":"request.timeout"' in reply
    assert len(audit.query(kind="malformed_request", caller_id="http-tester", limit=10_000)) == before + 1


def test_failed_authentications_are_throttled_across_both_bindings(tmp_path: Path) -> None:
    config = GatewayConfig(
        data_dir=tmp_path / "data",
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        policy_dir=POLICY_DIR,
        failed_auth_limit=FailedAuthLimit(burst=2, per_second=0.001),
    )
    with GatewayThread(config) as gateway:
        message = check_pb2.CheckRequest(subject=new_uscc(), matter="MOF-0001")
        for _ in range(2):  # the peer's allowance, spent over gRPC
            with pytest.raises(grpc.RpcError) as refused:
                grpc_check(f"127.0.0.1:{gateway.port}", "mct_" + "B" * 43, message)
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        url = f"http://127.0.0.1:{gateway.http_port}/v1/Check"
        answer = request(url, {"subject": new_uscc(), "matter": "MOF-0001"}, token="mct_" + "B" * 43)
        _assert_refused(answer, 429, "RESOURCE_EXHAUSTED", "auth.throttled")
        assert int(answer.headers["Retry-After"]) >= 1


def test_the_answers_name_no_library_version(base_url: str) -> None:
    assert request(f"{base_url}/healthz", method="GET").headers["Server"] == "mustcheck"


def test_an_http_port_in_use_refuses_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = GatewayConfig(
            data_dir=tmp_path / "data",
            listen="127.0.0.1:0",
            http_listen=f"127.0.0.1:{port}",
            policy_dir=POLICY_DIR,
        )
        with pytest.raises(ConfigError, match="cannot listen for HTTP"):
            GatewayThread(config).start()
    # The refused start let go of its data directory: a gateway starts on it at once.
    with GatewayThread(
        GatewayConfig(data_dir=tmp_path / "data", listen="127.0.0.1:0", policy_dir=POLICY_DIR)
    ):
        pass


def test_serve_http_answers_until_sigterm(tmp_path: Path) -> None:
    served = ServeProcess(tmp_path / "data", "--http", "127.0.0.1:0")
    try:
        port = _http_port(served)
        health = request(f"http://127.0.0.1:{port}/healthz", method="GET")
        assert health.status == 200 and health.json == {"status": "SERVING"}
        refused = request(f"http://127.0.0.1:{port}/v1/Check", {"subject": new_uscc(), "matter": "MOF-0001"})
        _assert_refused(refused, 401, "UNAUTHENTICATED", "credentials.missing")
    finally:
        served.stop(signal.SIGTERM)
    assert served.process.returncode == 0


def _http_port(served: ServeProcess) -> int:
    """The HTTP port ``serve`` printed (on the line after the gRPC one, which ServeProcess waited for)."""
    for _ in range(300):
        for line in list(served.lines):
            found = re.search(r"HTTP/JSON binding on port (\d+)", line)
            if found:
                return int(found.group(1))
        time.sleep(0.1)
    raise AssertionError("serve printed no HTTP port:\n" + "".join(served.lines))
