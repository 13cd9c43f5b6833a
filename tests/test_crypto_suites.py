"""The crypto suites (docs/crypto.md): the standards' published vectors, OpenSSL 3 verifying what an SM
gateway signs (a tree head and a receipt), standard key and signature formats, a gateway refusing a key
ring of the other suite, and the SDK naming the extra it needs for SM2."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mustcheck import Client, verify_receipt
from mustcheck import _sm2 as sm2
from mustcheck.receipts import parse_receipt
from mustcheck.suites import SM, SM3, PublicKey, load_public_key, suite_of
from mustcheck.tree_head import TreeHead
from mustcheck_gateway.cli import main
from mustcheck_gateway.crypto.suites import server_suite
from mustcheck_gateway.server import GatewayConfig, GatewayThread

from conftest import POLICY_DIR
from factories import new_uscc
from provision import provision

# GB/T 32918.2 / GM/T 0003.5 Annex A: the signature example on the recommended curve, user id
# 1234567812345678, message "message digest" (the same vector as OpenSSL's test/sm2_internal_test.c).
SM2_PRIVATE = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
SM2_PUBLIC = bytes.fromhex(
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
SM2_Z = bytes.fromhex("B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3")
SM2_E = bytes.fromhex("F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640")
SM2_R = int("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3", 16)
SM2_S = int("B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA", 16)
OPENSSL = shutil.which("openssl")


def test_sm3_published_vectors() -> None:
    """GB/T 32905 Annex A: "abc" and the 512-bit message "abcd" × 16."""
    assert SM3.digest(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert (
        SM3.digest(b"abcd" * 16).hex() == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )
    assert SM3.empty_root() == SM3.digest(b"") != bytes(32)
    # Every SM3 the module may choose (the SM2 library's, OpenSSL's through hashlib, cryptography's) agrees.
    implementations = [sm2._library_sm3(), sm2._openssl_sm3(), sm2._cryptography_sm3]
    for sm3 in (found for found in implementations if found is not None):
        assert sm3(b"abcd" * 16).hex().startswith("debe9ff92275b8a1")


def test_sm4_published_vectors() -> None:
    """GB/T 32907 Annex A (one block), and SM4-GCM as the gateway seals subjects (RFC 8998 A.1)."""
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    assert (encryptor.update(key) + encryptor.finalize()).hex() == "681edf34d206965e86b3e94f536e4246"
    cipher = server_suite("sm").cipher(key)
    nonce = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    plain = bytes.fromhex("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD" * 1)
    plain += bytes.fromhex("EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA")
    sealed = cipher.encrypt(nonce, plain, aad)
    assert sealed.hex().upper() == (
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
        "83DE3541E4C2B58177E065A9BF7B62EC"
    )
    assert cipher.decrypt(nonce, sealed, aad) == plain
    from mustcheck_gateway.crypto.suites import AuthenticationFailed

    with pytest.raises(AuthenticationFailed):
        cipher.decrypt(nonce, sealed, aad + b"x")  # bound to its associated data


def test_sm2_published_signature_example() -> None:
    """The library cannot sign with a chosen k, so the published signature is verified, and Z, e and the
    public key the standard gives are recomputed from its private key."""
    assert sm2.public_from_private(SM2_PRIVATE) == SM2_PUBLIC
    assert sm2.user_hash(SM2_PUBLIC) == SM2_Z
    assert sm2.message_digest(SM2_PUBLIC, b"message digest") == SM2_E
    published = sm2.encode_signature(SM2_R, SM2_S)
    key = PublicKey.sm2(SM2_PUBLIC)
    assert key.verify(published, b"message digest")
    assert not key.verify(published, b"message digesT")
    assert not key.verify(sm2.encode_signature(SM2_R, SM2_S + 1), b"message digest")
    # A signature has one DER spelling: a padded integer or a long-form length is refused.
    r_bytes = SM2_R.to_bytes(33, "big")
    padded = b"\x02\x22\x00" + r_bytes + b"\x02\x21" + SM2_S.to_bytes(33, "big")
    assert not key.verify(b"\x30" + bytes([len(padded)]) + padded, b"message digest")
    long_form = b"\x30\x81" + published[1:]
    assert not key.verify(long_form, b"message digest")
    # Signing with the published private key: a fresh k each time, each signature verifies.
    signer = server_suite("sm").load_signer(
        sm2.pem("PRIVATE KEY", sm2.private_key_der(SM2_PRIVATE, SM2_PUBLIC))
    )
    first, second = signer.sign(b"message digest"), signer.sign(b"message digest")
    assert first != second and key.verify(first, b"message digest") and key.verify(second, b"message digest")


def test_public_keys_are_subject_public_key_info_with_the_sm2_oid() -> None:
    der = PublicKey.sm2(SM2_PUBLIC).der()
    assert der.hex().upper().startswith("3059301306072A8648CE3D020106082A811CCF5501822D034200" + "04")
    assert load_public_key(PublicKey.sm2(SM2_PUBLIC).pem()) == PublicKey.sm2(SM2_PUBLIC)
    bad_point = bytearray(der)
    bad_point[-1] ^= 1  # no longer a point of the curve
    with pytest.raises(ValueError):
        load_public_key(sm2.pem("PUBLIC KEY", bytes(bad_point)))


def _openssl(*arguments: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *arguments], input=data, capture_output=True, check=False, timeout=60)


def _openssl_verifies(tmp_path: Path, public_pem: bytes, message: bytes, signature: bytes) -> bool:
    (tmp_path / "key.pem").write_bytes(public_pem)
    (tmp_path / "message").write_bytes(message)
    (tmp_path / "signature").write_bytes(signature)
    result = _openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "key.pem"), "-rawin",
        "-in", str(tmp_path / "message"), "-sigfile", str(tmp_path / "signature"),
        "-digest", "sm3", "-pkeyopt", "distid:1234567812345678",
    )  # fmt: skip
    return result.returncode == 0 and b"Signature Verified Successfully" in result.stdout


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


@pytest.mark.skipif(OPENSSL is None, reason="needs Debian's openssl command (OpenSSL 3)")
def test_a_signature_openssl_makes_with_an_sm2_key_verifies(tmp_path: Path) -> None:
    generated = _openssl("genpkey", "-algorithm", "SM2")
    assert generated.returncode == 0, generated.stderr
    (tmp_path / "private.pem").write_bytes(generated.stdout)
    public = _openssl("pkey", "-pubout", "-in", str(tmp_path / "private.pem")).stdout
    (tmp_path / "message").write_bytes(b"mustcheck")
    signed = _openssl(
        "pkeyutl", "-sign", "-inkey", str(tmp_path / "private.pem"), "-rawin", "-in",
        str(tmp_path / "message"), "-digest", "sm3", "-pkeyopt", "distid:1234567812345678",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    key = load_public_key(public)
    assert key.algorithm == "sm2" and key.verify(signed.stdout, b"mustcheck")
    assert not key.verify(signed.stdout, b"mustcheck!")


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
