"""The SM2 signature example of GB/T 32918.2 and the ``openssl`` command line, shared by the SM tests
(tests/test_rules_suites.py, tests/test_crypto_suites.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

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
# The order of the SM2 curve (GB/T 32918.5).
SM2_N = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
OPENSSL = shutil.which("openssl")


def openssl(*arguments: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *arguments], input=data, capture_output=True, check=False, timeout=60)


def openssl_has_sm2() -> bool:
    """Whether the ``openssl`` command is there and its library has SM2 (Debian's OpenSSL 3 has)."""
    return OPENSSL is not None and openssl("genpkey", "-algorithm", "SM2").returncode == 0


def openssl_verifies(tmp_path: Path, public_pem: bytes, message: bytes, signature: bytes) -> bool:
    (tmp_path / "key.pem").write_bytes(public_pem)
    (tmp_path / "message").write_bytes(message)
    (tmp_path / "signature").write_bytes(signature)
    result = openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "key.pem"), "-rawin",
        "-in", str(tmp_path / "message"), "-sigfile", str(tmp_path / "signature"),
        "-digest", "sm3", "-pkeyopt", "distid:1234567812345678",
    )  # fmt: skip
    return result.returncode == 0 and b"Signature Verified Successfully" in result.stdout
