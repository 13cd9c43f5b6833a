"""The crypto suites end to end (docs/crypto.md): OpenSSL 3 verifying what an SM gateway signs (a tree head
and a receipt), an SM gateway audited, a gateway refusing a key ring of the other suite, and the SDK naming
the extra it needs for SM2. The standards' vectors and formats, without a gateway:
tests/test_rules_suites.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sm2_vectors import OPENSSL
from sm2_vectors import openssl as _openssl
from sm2_vectors import openssl_verifies as _openssl_verifies

from mustcheck import Client, verify_receipt
from mustcheck.receipts import parse_receipt
from mustcheck.suites import INTERNATIONAL, SM, load_public_key, suite_of
from mustcheck.tree_head import TreeHead
from mustcheck_gateway.cli import main
from mustcheck_gateway.crypto.suites import server_suite
from mustcheck_gateway.server import GatewayConfig, GatewayThread

from conftest import POLICY_DIR
from factories import new_uscc
from provision import provision


@pytest.fixture(scope="module")
def sm_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    """A gateway of the SM suite on a data directory of its own: (its directory, target, a caller's token)."""
    data_dir = tmp_path_factory.mktemp("sm-gateway")
    config = GatewayConfig(data_dir=data_dir, listen="127.0.0.1:0", policy_dir=POLICY_DIR, crypto="sm")
    with GatewayThread(config) as gateway:
        assert gateway.admin_token_file is not None
        target = f"127.0.0.1:{gateway.port}"
        yield data_dir, target, provision(target, gateway.admin_token_file.read_text().strip(), "gm-caller")


@pytest.mark.skipif(OPENSSL is None, reason="needs Debian's openssl command (OpenSSL 3)")
def test_openssl_verifies_a_tree_head_and_a_receipt_the_sm_gateway_signed(
    sm_gateway: tuple[Path, str, str], tmp_path: Path
) -> None:
    data_dir, target, token = sm_gateway
    with Client(target, token=token) as client:
        result = client.check(new_uscc(), "MOF-0001")
        keys = client.receipt_keys()
    assert result.receipt is not None
    receipt = verify_receipt(result.receipt.compact, keys)
    head = receipt.tree_head
    assert head is not None and dict(head.algorithms) == {"hash": "sm3", "sig": "sm2"}
    assert suite_of(head.algorithms) is SM
    public_pem = keys[head.key_id]
    assert b"BEGIN PUBLIC KEY" in public_pem
    # OpenSSL reads the published key as an SM2 key.
    text = _openssl("pkey", "-pubin", "-noout", "-text", data=public_pem)
    assert text.returncode == 0 and b"SM2" in text.stdout, text.stderr
    # The receipt's signature (the last part) over its head's signed bytes.
    signature = parse_receipt(result.receipt.compact).tree_head
    assert signature is not None
    assert _openssl_verifies(tmp_path, public_pem, head.signed_bytes(), head.signature)
    assert not _openssl_verifies(tmp_path, public_pem, head.signed_bytes() + b" ", head.signature)
    # A tree head as stored in the audit log (and published to the shared store).
    connection = sqlite3.connect(data_dir / "audit.sqlite3")
    try:
        (text_head,) = connection.execute(
            "SELECT head FROM audit_tree_heads ORDER BY size DESC LIMIT 1"
        ).fetchone()
    finally:
        connection.close()
    stored = TreeHead.from_json(str(text_head))
    assert json.loads(text_head)["alg"] == {"hash": "sm3", "sig": "sm2"}
    assert _openssl_verifies(tmp_path, public_pem, stored.signed_bytes(), stored.signature)


def test_an_sm_gateway_is_audited_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    config = GatewayConfig(data_dir=data_dir, listen="127.0.0.1:0", policy_dir=POLICY_DIR, crypto="sm")
    with GatewayThread(config) as gateway:
        assert gateway.admin_token_file is not None
        target = f"127.0.0.1:{gateway.port}"
        token = provision(target, gateway.admin_token_file.read_text().strip(), "gm-audited")
        with Client(target, token=token) as client:
            batch = client.batch_check([new_uscc() for _ in range(5)], "MOF-0001")
            keys = client.receipt_keys()
    # Stopped: the journal is indexed, so the database holds the newest head (a running gateway indexes
    # its journal in the background, and `audit prove` reads the database).
    receipts = [item.result.receipt.compact for item in batch.items if item.result and item.result.receipt]
    assert len(receipts) == 5
    assert len({verify_receipt(receipt, keys).tree_head.signature for receipt in receipts}) == 1  # type: ignore[union-attr]
    held = tmp_path / "held.txt"
    held.write_text("\n".join(receipts) + "\n")
    capsys.readouterr()
    assert main(["audit", "verify", "--data-dir", str(data_dir), "--receipts", str(held)]) == 0
    assert (
        main(["audit", "prove", str(parse_receipt(receipts[0]).audit_seq), "--data-dir", str(data_dir)]) == 0
    )
    assert "proven" in capsys.readouterr().out


def test_a_gateway_refuses_a_key_ring_of_the_other_suite(
    tmp_path: Path, crypto_suite: str, capsys: pytest.CaptureFixture[str]
) -> None:
    other = "international" if crypto_suite == "sm" else "sm"
    config = GatewayConfig(
        data_dir=tmp_path, listen="127.0.0.1:0", policy_dir=POLICY_DIR, crypto=crypto_suite
    )
    with GatewayThread(config):
        pass
    assert (tmp_path / "keys" / "suite").read_text().strip() == crypto_suite
    capsys.readouterr()
    code = main(
        ["serve", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0", "--policies", str(POLICY_DIR),
         "--crypto", other]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "refusing to start" in err and f"'{crypto_suite}'" in err and f"'{other}'" in err
    # Without --crypto the gateway takes its key ring's suite; rotate-key keeps it.
    assert main(["audit", "rotate-key", "sign", "--data-dir", str(tmp_path)]) == 0
    public = sorted((tmp_path / "keys" / "public").glob("sign-*.pem"))
    assert len(public) == 2
    assert {load_public_key(path.read_bytes()).algorithm for path in public} == {
        server_suite(crypto_suite).public.signature
    }
    with GatewayThread(GatewayConfig(data_dir=tmp_path, listen="127.0.0.1:0", policy_dir=POLICY_DIR)) as gw:
        assert gw.audit.keyring.suite.name == crypto_suite  # type: ignore[union-attr]


def test_the_sdk_names_the_extra_it_needs_for_an_sm2_receipt(sm_gateway: tuple[Path, str, str]) -> None:
    """Without the SM2 library (as after ``pip install mustcheck`` alone) an SM2 receipt is not called
    invalid: the SDK says which extra to install."""
    _, target, token = sm_gateway
    with Client(target, token=token) as client:
        result = client.check(new_uscc(), "MOF-0001")
        keys = client.receipt_keys()
    assert result.receipt is not None
    script = (
        "import json, sys\n"
        "sys.modules['gmssl_pyx'] = None  # the library is not installed\n"
        "from mustcheck import SuiteUnavailable, verify_receipt\n"
        "keys = {k: v.encode() for k, v in json.loads(sys.argv[2]).items()}\n"
        "try:\n"
        "    verify_receipt(sys.argv[1], keys)\n"
        "except SuiteUnavailable as error:\n"
        "    print(error.message)\n"
    )
    keys_json = json.dumps({key_id: pem.decode() for key_id, pem in keys.items()})
    out = subprocess.run(
        [sys.executable, "-c", script, result.receipt.compact, keys_json],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "pip install 'mustcheck[sm]'" in out


def test_the_demo_runs_on_the_sm_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo_dir = tmp_path / "demo"
    arguments = ["demo", "--crypto", "sm", "--data-dir", str(demo_dir), "--listen", "127.0.0.1:0"]
    assert main([*arguments, "--subjects", "100", "--exit-after-tour"]) == 0
    assert "receipt" in capsys.readouterr().out
    assert (demo_dir / "keys" / "suite").read_text().strip() == "sm"
    (public,) = (demo_dir / "keys" / "public").glob("sign-*.pem")
    assert load_public_key(public.read_bytes()).algorithm == "sm2"
    assert main(["audit", "verify", "--data-dir", str(demo_dir)]) == 0


@pytest.mark.parametrize("key_bytes", [0, 1, 32, 63, 64, 65, 200])
def test_the_international_keyed_hash_is_hmac_sha256_for_a_key_of_any_length(key_bytes: int) -> None:
    # The keyed hash keeps each key's inner and outer states (RFC 2104) to copy: every digest, for keys
    # shorter than, as long as and longer than SHA-256's block, is the standard library's HMAC, also
    # after other keys were used in between.
    keys = [bytes((index * 7 + key_bytes) % 256 for index in range(key_bytes)), b"other key"]
    for data in (b"", b"110101199003077777", "张三 91110000100000000X".encode() * 20):
        for key in keys * 2:
            assert INTERNATIONAL.keyed_hash(key, data) == hmac.new(key, data, hashlib.sha256).digest()
