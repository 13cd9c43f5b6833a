"""``mustcheck admin``, ``certs`` and ``audit rotate-key`` from the command line, against the real gateway."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mustcheck import AuthenticationFailed, Client, Outcome
from mustcheck_gateway.cli import main
from mustcheck_gateway.server import GatewayConfig, GatewayThread

from conftest import POLICY_DIR
from factories import new_uscc


@pytest.fixture(scope="module")
def admin_file(admin_token: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("admin") / "admin.token"
    path.write_text(admin_token)
    return path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_callers_grants_and_tokens_end_to_end(
    target: str, admin_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = ["--gateway", target, "--token-file", str(admin_file)]
    added = run_json(
        capsys,
        "admin",
        "callers",
        "add",
        "permits-office",
        "--department",
        "mohurd",
        "--name",
        "施工许可系统",
        *conn,
        "--json",
    )
    assert isinstance(added, dict) and added["department"] == "mohurd" and added["has_grant"] is False
    grant = run_json(
        capsys,
        "admin",
        "grants",
        "set",
        "permits-office",
        "--matter",
        "MOHURD-0001",
        "--matter",
        "kind:government_procurement",
        "--subject-kind",
        "organization",
        "--no-purpose-required",
        "--rate",
        "20",
        "--burst",
        "5",
        *conn,
        "--json",
    )
    assert isinstance(grant, dict)
    assert grant["matters"] == ["MOHURD-0001", "kind:government_procurement"] and grant["active"] is True
    token_file = tmp_path / "permits.token"
    assert (
        main(["admin", "tokens", "issue", "permits-office", "--label", "ci", "--out", str(token_file), *conn])
        == 0
    )
    assert token_file.stat().st_mode & 0o777 == 0o600
    capsys.readouterr()
    with Client(target, token=token_file.read_text().strip()) as client:
        assert client.check(new_uscc(), "MOHURD-0001").outcome is Outcome.NO_RECORD
    listed = run_json(capsys, "admin", "tokens", "list", "--caller", "permits-office", *conn, "--json")
    assert isinstance(listed, list) and len(listed) == 1 and listed[0]["active"] is True
    callers = run_json(capsys, "admin", "callers", "list", *conn, "--json")
    assert isinstance(callers, list) and any(
        c["caller_id"] == "permits-office" and c["has_grant"] for c in callers
    )
    revoked = run_json(capsys, "admin", "tokens", "revoke", listed[0]["token_id"], *conn, "--json")
    assert isinstance(revoked, dict) and revoked["active"] is False
    assert (
        main(
            [
                "check",
                new_uscc(),
                "--matter",
                "MOHURD-0001",
                "--gateway",
                target,
                "--token-file",
                str(token_file),
            ]
        )
        == 4
    )
    assert "revoked" in capsys.readouterr().err
    assert main(["admin", "grants", "revoke", "permits-office", *conn]) == 0
    assert "no grant" in capsys.readouterr().out


def test_admin_errors_exit_with_their_codes(
    target: str, admin_file: Path, token: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = ["--gateway", target, "--token-file", str(admin_file)]
    assert main(["admin", "callers", "add", "bad", "--department", "nowhere", *conn]) == 2
    refused = capsys.readouterr().err
    assert "unknown department" in refused and "known: approval, caac," in refused  # the valid codes listed
    assert main(["admin", "grants", "show", "nobody", *conn]) == 2
    assert "no caller" in capsys.readouterr().err
    checker = tmp_path / "checker.token"
    checker.write_text(token)
    assert main(["admin", "callers", "list", "--gateway", target, "--token-file", str(checker)]) == 4
    assert "admin role" in capsys.readouterr().err
    assert (
        main(["admin", "callers", "list", "--gateway", target, "--token-file", str(tmp_path / "none")]) == 2
    )


def test_certs_init_writes_private_keys_owner_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "init", str(tmp_path / "certs"), "--client", "approval-system"]) == 0
    names = {path.name for path in (tmp_path / "certs").iterdir()}
    assert names == {
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "approval-system.pem",
        "approval-system.key",
    }
    for key in (tmp_path / "certs").glob("*.key"):
        assert key.stat().st_mode & 0o777 == 0o600


def test_rotated_audit_keys_keep_old_records_verifiable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run_checks() -> None:
        config = GatewayConfig(data_dir=tmp_path, listen="127.0.0.1:0", policy_dir=POLICY_DIR)
        with (
            GatewayThread(config) as gateway,
            Client(f"127.0.0.1:{gateway.port}") as client,
            pytest.raises(AuthenticationFailed),
        ):
            client.check(new_uscc(), "MOF-0001")  # unauthenticated, and audited all the same

    run_checks()
    for kind in ("hmac", "enc", "sign"):
        assert main(["audit", "rotate-key", kind, "--data-dir", str(tmp_path)]) == 0
    run_checks()
    capsys.readouterr()
    assert main(["audit", "verify", "--data-dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["records"] == 3  # the bootstrap and two checks
    signers = list((tmp_path / "keys" / "public").glob("sign-*.pem"))
    assert len(signers) == 2
