"""The command line under everyday mistakes: each gets a plain message and the right exit code, never a
traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mustcheck import Client
from mustcheck_gateway.audit import AuditLog
from mustcheck_gateway.cli import main
from mustcheck_gateway.cli.main import EXIT_BROKEN_PIPE
from mustcheck_gateway.server import Gateway

from factories import new_uscc
from provision import provision

ENV = {**os.environ, "PYTHONUTF8": "1"}


def test_output_to_a_closed_pipe_ends_quietly() -> None:
    # `true` reads nothing and exits at once: the 58 kB listing meets a closed pipe.
    done = subprocess.run(
        f"{sys.executable} -m mustcheck_gateway policies show --json | true; echo ${{PIPESTATUS[0]}}",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        executable="/bin/bash",
    )
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
    assert done.stdout.split() == [str(EXIT_BROKEN_PIPE)]


def test_a_missing_purpose_exits_2_naming_the_option(
    target: str, admin_token: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "purposeful.token"
    token.write_text(provision(target, admin_token, f"purposeful-{os.getpid()}", purpose_required=True))
    command = ["check", new_uscc(), "--matter", "MOF-0001", "--gateway", target, "--token-file", str(token)]
    assert main(command) == 2
    assert "--purpose TEXT" in capsys.readouterr().err
    assert main([*command, "--purpose", "资格审查"]) == 0


def test_no_credentials_names_the_token_file_option_and_variable(
    target: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MUSTCHECK_TOKEN_FILE", raising=False)
    assert main(["check", new_uscc(), "--matter", "MOF-0001", "--gateway", target]) == 4
    refused = capsys.readouterr().err
    assert "--token-file" in refused and "MUSTCHECK_TOKEN_FILE" in refused
    assert main(["admin", "callers", "list", "--gateway", target]) == 4
    refused = capsys.readouterr().err
    assert "--token-file" in refused and "MUSTCHECK_TOKEN_FILE" in refused


def test_receipts_verify_with_a_folder_of_private_keys_says_so(
    gateway: Gateway, target: str, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Client(target, token=token) as client:
        receipt = client.check(new_uscc(), "MOF-0001").receipt
    assert receipt is not None and isinstance(gateway.audit, AuditLog)
    keys = gateway.audit.keyring.directory  # the gateway's own keys/: private signing keys
    assert main(["receipts", "verify", receipt.compact, "--public-keys", str(keys)]) == 2
    said = capsys.readouterr().err
    assert "private keys only" in said and "Traceback" not in said
    assert main(["receipts", "verify", receipt.compact, "--public-keys", str(keys / "public")]) == 0
