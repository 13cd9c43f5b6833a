"""Rule tests of the crypto suites (``mustcheck.suites``, ``mustcheck._sm2``, the gateway's
``crypto.suites``), with oracles from outside the modules:

- SM3: GB/T 32905 Annex A's two messages; HMAC-SM3 built here from RFC 2104 over hashlib's or
  ``cryptography``'s SM3, not the module's.
- SM4: GB/T 32907 Annex A (one block), SM4-GCM: RFC 8998 Appendix A.1.
- SM2: GB/T 32918.2's signature example (Z, e, the public key from the private one, the signature);
  ``openssl`` (Debian's OpenSSL 3) signs and the module verifies, the module signs and ``openssl``
  verifies, ``openssl`` reads the module's PKCS#8 key.
- A signature has one DER spelling: every other one is refused.
- A key ring of the other suite is refused, naming both suites.

No gateway: each mutant of the suites (``scripts/mutation crypto-suites``) is judged within seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sm2_vectors import (
    SM2_E,
    SM2_N,
    SM2_PRIVATE,
    SM2_PUBLIC,
    SM2_R,
    SM2_S,
    SM2_Z,
    openssl,
    openssl_has_sm2,
    openssl_verifies,
)

from mustcheck import _sm2 as sm2
from mustcheck.suites import (
    INTERNATIONAL,
    SM,
    SM3,
    PublicKey,
    load_public_key,
    public_key_of,
    suite_named,
    suite_of,
)
from mustcheck_gateway.audit.keys import KeyRing, SuiteMismatch
from mustcheck_gateway.crypto.suites import AuthenticationFailed, server_suite

SM2_P = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF", 16)  # GB/T 32918.5
needs_openssl_sm2 = pytest.mark.skipif(
    not openssl_has_sm2(),
    reason="needs the openssl command with SM2 (Debian's OpenSSL 3): absent or without SM2",
)


def _independent_sm3() -> Callable[[bytes], bytes]:
    """SM3 from hashlib (the system's OpenSSL) or else ``cryptography``: not the module's choice."""
    try:
        hashlib.new("sm3", b"")
    except ValueError:
        from cryptography.hazmat.primitives import hashes

        def digest(data: bytes) -> bytes:
            h = hashes.Hash(hashes.SM3())
            h.update(data)
            return h.finalize()

        return digest
    return lambda data: hashlib.new("sm3", data).digest()


def _hmac_sm3_rfc2104(key: bytes, data: bytes) -> bytes:
    """HMAC (RFC 2104) over SM3, whose block is 64 bytes."""
    sm3 = _independent_sm3()
    key = sm3(key) if len(key) > 64 else key
    key = key.ljust(64, b"\x00")
    inner = sm3(bytes(b ^ 0x36 for b in key) + data)
    return sm3(bytes(b ^ 0x5C for b in key) + inner)


# -- SM3 and the keyed hashes --------------------------------------------------------------------


def test_sm3_published_vectors() -> None:
    """GB/T 32905 Annex A: "abc" and the 512-bit message "abcd" × 16."""
    assert SM3.digest(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert (
        SM3.digest(b"abcd" * 16).hex() == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )
    assert sm2.sm3(b"abc") == SM3.digest(b"abc") == SM.digest(b"abc")
    assert SM3.empty_root() == SM3.digest(b"") != bytes(32)
    # Every SM3 the module may choose (the SM2 library's, OpenSSL's through hashlib, cryptography's) agrees.
    implementations = [sm2._library_sm3(), sm2._openssl_sm3(), sm2._cryptography_sm3]
    for sm3 in (found for found in implementations if found is not None):
        assert sm3(b"abcd" * 16).hex() == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
        assert sm3(b"abc").hex().startswith("66c7f0f4")


@pytest.mark.parametrize("key", [b"k" * 16, b"K" * 64, b"long key " * 10])
def test_the_keyed_hashes_are_hmac_of_their_suite(key: bytes) -> None:
    data = b"91350100M000100Y43"
    assert SM.keyed_hash(key, data) == _hmac_sm3_rfc2104(key, data)
    assert server_suite("sm").keyed_hash(key, data) == _hmac_sm3_rfc2104(key, data).hex()
    assert INTERNATIONAL.keyed_hash(key, data) == hmac.new(key, data, hashlib.sha256).digest()
    assert server_suite("international").keyed_hash(key, data) == hmac.new(key, data, "sha256").hexdigest()
    # Both HMAC-SM3s the module may choose agree with the oracle.
    from mustcheck import suites

    for keyed in (suites._hmac_sm3_cryptography, suites._hmac_sm3_openssl):
        try:
            assert keyed(key, data) == _hmac_sm3_rfc2104(key, data)
        except ValueError:  # hashlib without SM3: only cryptography's
            assert keyed is suites._hmac_sm3_openssl


# -- the suites by name ----------------------------------------------------------------------------


def test_the_suites_name_their_algorithms() -> None:
    assert SM.algorithms == {"hash": "sm3", "sig": "sm2"}
    assert INTERNATIONAL.algorithms == {"hash": "sha256", "sig": "ed25519"}
    assert (SM.keyed_hash_name, SM.cipher) == ("hmac-sm3", "sm4-gcm")
    assert (INTERNATIONAL.keyed_hash_name, INTERNATIONAL.cipher) == ("hmac-sha256", "aes-256-gcm")
    assert INTERNATIONAL.digest(b"abc") == hashlib.sha256(b"abc").digest()
    assert suite_named("sm") is SM and suite_named("international") is INTERNATIONAL
    assert suite_of({"hash": "sm3", "sig": "sm2"}) is SM
    assert suite_of({"sig": "ed25519", "hash": "sha256"}) is INTERNATIONAL
    # A mixture, a part missing, or one more is no suite.
    for named in ({"hash": "sm3", "sig": "ed25519"}, {"hash": "sm3"}, {**SM.algorithms, "x": "y"}, {}):
        assert suite_of(named) is None
    for lookup in (suite_named, server_suite):
        with pytest.raises(ValueError, match=r"unknown crypto suite 'SM'.*international, sm"):
            lookup("SM")
    assert server_suite("sm").name == "sm" and server_suite("sm").public is SM
    assert server_suite("international").public is INTERNATIONAL


# -- SM4 and AES-GCM -------------------------------------------------------------------------------

RFC8998_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
RFC8998_NONCE = bytes.fromhex("00001234567800000000ABCD")
RFC8998_AAD = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
RFC8998_PLAIN = bytes.fromhex(
    "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
    "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
)
RFC8998_SEALED = bytes.fromhex(
    "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
    "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    "83DE3541E4C2B58177E065A9BF7B62EC"
)


def test_sm4_published_vectors() -> None:
    """GB/T 32907 Annex A (one block), and SM4-GCM as the gateway seals subjects (RFC 8998 A.1)."""
    key = RFC8998_KEY
    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    assert (encryptor.update(key) + encryptor.finalize()).hex() == "681edf34d206965e86b3e94f536e4246"
    cipher = server_suite("sm").cipher(key)
    assert cipher.encrypt(RFC8998_NONCE, RFC8998_PLAIN, RFC8998_AAD) == RFC8998_SEALED
    assert cipher.decrypt(RFC8998_NONCE, RFC8998_SEALED, RFC8998_AAD) == RFC8998_PLAIN
    with pytest.raises(AuthenticationFailed, match="fails authentication"):
        cipher.decrypt(RFC8998_NONCE, RFC8998_SEALED, RFC8998_AAD + b"x")  # bound to its associated data
    flipped = bytearray(RFC8998_SEALED)
    flipped[-1] ^= 1
    with pytest.raises(AuthenticationFailed, match="fails authentication"):
        cipher.decrypt(RFC8998_NONCE, bytes(flipped), RFC8998_AAD)
    # Exactly a tag's length is an empty plaintext's; shorter is refused before the cipher sees it.
    assert cipher.decrypt(RFC8998_NONCE, cipher.encrypt(RFC8998_NONCE, b"", b""), b"") == b""
    with pytest.raises(AuthenticationFailed, match="shorter than its tag"):
        cipher.decrypt(RFC8998_NONCE, RFC8998_SEALED[:15], RFC8998_AAD)


def test_aes_gcm_and_the_key_sizes_of_each_suite() -> None:
    """AES-256-GCM checked against ``cryptography``'s own AESGCM; each suite takes its key size alone."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = bytes(range(32))
    cipher = server_suite("international").cipher(key)
    sealed = cipher.encrypt(RFC8998_NONCE, b"subject", b"aad")
    assert sealed == AESGCM(key).encrypt(RFC8998_NONCE, b"subject", b"aad")
    assert cipher.decrypt(RFC8998_NONCE, sealed, b"aad") == b"subject"
    with pytest.raises(AuthenticationFailed):
        cipher.decrypt(RFC8998_NONCE, sealed, b"aaD")
    assert server_suite("sm").cipher_key_bytes == 16
    assert server_suite("international").cipher_key_bytes == 32
    assert server_suite("sm").hmac_key_bytes == server_suite("international").hmac_key_bytes == 32
    with pytest.raises(ValueError, match="a sm4-gcm key has 16 bytes, not 32"):
        server_suite("sm").cipher(key)
    with pytest.raises(ValueError, match="a aes-256-gcm key has 32 bytes, not 16"):
        server_suite("international").cipher(RFC8998_KEY)


# -- SM2 -------------------------------------------------------------------------------------------


def test_sm2_published_signature_example() -> None:
    """The library cannot sign with a chosen k, so the published signature is verified, and Z, e and the
    public key the standard gives are recomputed from its private key."""
    assert sm2.public_from_private(SM2_PRIVATE) == SM2_PUBLIC
    assert sm2.user_hash(SM2_PUBLIC) == SM2_Z
    assert sm2.message_digest(SM2_PUBLIC, b"message digest") == SM2_E
    published = sm2.encode_signature(SM2_R, SM2_S)
    assert sm2.decode_signature(published) == (SM2_R, SM2_S)
    key = PublicKey.sm2(SM2_PUBLIC)
    assert key.verify(published, b"message digest")
    assert not key.verify(published, b"message digesT")
    assert not key.verify(sm2.encode_signature(SM2_R, SM2_S + 1), b"message digest")
    # A key whose algorithm's name was read from text (an equal string, not the module's constant).
    named = PublicKey("".join(("sm", "2")), SM2_PUBLIC)
    assert named.verify(published, b"message digest") and named.der() == key.der()
    # Signing with the published private key: a fresh k each time, each signature verifies.
    signer = server_suite("sm").load_signer(
        sm2.pem("PRIVATE KEY", sm2.private_key_der(SM2_PRIVATE, SM2_PUBLIC))
    )
    assert signer.algorithm == "sm2" and signer.public_key() == key
    first, second = signer.sign(b"message digest"), signer.sign(b"message digest")
    assert first != second and key.verify(first, b"message digest") and key.verify(second, b"message digest")
    assert not key.verify(first, b"message digest!")


def _der(tag: int, content: bytes) -> bytes:
    """DER written here (X.690): short form below 128, else 0x80 | count and the big-endian length."""
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    size = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _int(value: int, pad: int = 0) -> bytes:
    body = value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True) if value else b"\x00"
    return _der(0x02, b"\x00" * pad + body)


def test_a_signature_has_one_der_spelling() -> None:
    """The minimal DER of (r, s), written here, is what the module writes and reads; every other spelling of
    the same numbers, and numbers outside [1, n-1], are refused."""
    key = PublicKey.sm2(SM2_PUBLIC)
    minimal = _der(0x30, _int(SM2_R) + _int(SM2_S))
    assert sm2.encode_signature(SM2_R, SM2_S) == minimal and key.verify(minimal, b"message digest")
    assert sm2.encode_signature(1, 0x80) == bytes.fromhex("3007020101020200 80".replace(" ", ""))
    assert sm2.encode_signature(0x7F, 0xFF00) == bytes.fromhex("30080201 7F020300FF00".replace(" ", ""))
    body = _int(SM2_R) + _int(SM2_S)
    refused = {
        "r padded": _der(0x30, _int(SM2_R, pad=1) + _int(SM2_S)),
        "s padded": _der(0x30, _int(SM2_R) + _int(SM2_S, pad=1)),
        "long-form length": b"\x30\x81" + bytes([len(body)]) + body,
        "long-form integer": b"\x30" + bytes([len(body) + 1]) + b"\x02\x81\x21" + body[2:],
        "trailing byte": minimal + b"\x00",
        "a third integer": _der(0x30, body + _int(1)),
        "one integer": _der(0x30, _int(SM2_R)),
        "not a sequence": _der(0x31, body),
        "an octet string": _der(0x30, _der(0x04, SM2_R.to_bytes(32, "big")) + _int(SM2_S)),
        "cut short": minimal[:-1],
        "length past the end": minimal[:1] + bytes([minimal[1] + 1]) + minimal[2:],
        "empty": b"",
        "one byte": b"\x30",
        "five length bytes": b"\x30\x85\x00\x00\x00\x00\x46" + body,
        "zero length bytes": b"\x30\x80" + body,
        "r = 0": _der(0x30, _int(0) + _int(SM2_S)),
        "s = 0": _der(0x30, _int(SM2_R) + _int(0)),
        "r = n": _der(0x30, _int(SM2_N) + _int(SM2_S)),
        "s = n": _der(0x30, _int(SM2_R) + _int(SM2_N)),
        "r < 0": _der(0x30, _int(-SM2_R) + _int(SM2_S)),
        "s = n + s": _der(0x30, _int(SM2_R) + _int(SM2_N + SM2_S)),
    }
    for why, signature in refused.items():
        assert sm2.decode_signature(signature) is None, why
        assert not key.verify(signature, b"message digest"), why
    assert sm2.decode_signature(_der(0x30, _int(1) + _int(SM2_N - 1))) == (1, SM2_N - 1)
    # A long content: the length written in long form, read back.
    assert sm2._read(_der(0x04, bytes(200)), 0) == (0x04, bytes(200), 203)
    assert sm2._read(_der(0x04, bytes(300)), 0) == (0x04, bytes(300), 304)
    assert (
        sm2._length(0x7F) == b"\x7f"
        and sm2._length(0x80) == b"\x81\x80"
        and sm2._length(256) == b"\x82\x01\x00"
    )


def test_public_keys_are_subject_public_key_info_with_the_sm2_oid() -> None:
    der = PublicKey.sm2(SM2_PUBLIC).der()
    # SEQUENCE { SEQUENCE { id-ecPublicKey, sm2p256v1 (1.2.156.10197.1.301) }, BIT STRING 04 || x || y }
    expected = bytes.fromhex("3059301306072A8648CE3D020106082A811CCF5501822D03420004") + SM2_PUBLIC
    assert der == expected == sm2.public_key_der(SM2_PUBLIC)
    assert sm2.public_key_from_der(expected) == SM2_PUBLIC
    pem = PublicKey.sm2(SM2_PUBLIC).pem()
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\n") and pem.endswith(b"\n-----END PUBLIC KEY-----\n")
    assert max(len(line) for line in pem.splitlines()) <= 76
    assert load_public_key(pem) == PublicKey.sm2(SM2_PUBLIC) == load_public_key(pem.decode())
    assert load_public_key(b"text before\n" + pem + b"after") == PublicKey.sm2(SM2_PUBLIC)
    refused = {
        "not on the curve": expected[:-1] + bytes([expected[-1] ^ 1]),
        "compressed point": expected[:25] + b"\x02" + expected[26:],
        "unused bits": expected[:24] + b"\x01" + expected[25:],
        "short point": _der(0x30, expected[2:23] + _der(0x03, b"\x00\x04" + SM2_PUBLIC[:-1])),
        "x = p": _der(
            0x30, expected[2:23] + _der(0x03, b"\x00\x04" + SM2_P.to_bytes(32, "big") + SM2_PUBLIC[32:])
        ),
        "another curve": expected.replace(
            bytes.fromhex("2A811CCF5501822D"), bytes.fromhex("2A8648CE3D030107")
        ),
        "trailing byte": expected + b"\x00",
        "five length bytes": b"\x30\x85\x00\x00\x00\x00" + expected[1:],
        "zero length bytes": b"\x30\x80" + expected[2:],
    }
    for why, bad in refused.items():
        assert sm2.public_key_from_der(bad) is None, why
        with pytest.raises(ValueError):
            load_public_key(sm2.pem("PUBLIC KEY", bad))
    assert sm2.is_sm2_algorithm(expected[2:23]) and not sm2.is_sm2_algorithm(expected[2:22])


def test_ed25519_keys_load_and_other_keys_are_refused_naming_why() -> None:
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key = load_public_key(pem)
    assert key.algorithm == "ed25519" and key.raw == public.public_bytes_raw() and key.pem() == pem
    assert key.verify(private.sign(b"m"), b"m") and not key.verify(private.sign(b"m"), b"n")
    assert public_key_of(pem) == key == public_key_of(pem.decode()) == public_key_of(public)
    assert public_key_of(key) is key and public_key_of(42) is None and public_key_of(b"no key") is None
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    p256_pem = p256.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match="neither an Ed25519 nor an SM2 public key"):
        load_public_key(p256_pem)
    with pytest.raises(ValueError, match="not a PEM public key"):
        load_public_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValueError, match="not a PEM public key"):
        load_public_key(b"-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ValueError, match="not a PEM public key"):
        load_public_key(b"\xff-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ValueError, match="not a usable public key"):
        load_public_key(b"-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n")


def test_private_keys_round_trip_and_the_other_suites_key_is_refused() -> None:
    for name in ("international", "sm"):
        suite = server_suite(name)
        signer = suite.generate_signer()
        assert signer.algorithm == suite.public.signature
        assert signer.public_key().algorithm == suite.public.signature
        again = suite.load_signer(signer.private_pem())
        assert again.public_key() == signer.public_key()
        assert signer.public_key().verify(again.sign(b"m"), b"m")
        assert not signer.public_key().verify(again.sign(b"m"), b"m2")
    sm_pem = server_suite("sm").generate_signer().private_pem()
    ed_pem = server_suite("international").generate_signer().private_pem()
    with pytest.raises(ValueError, match="not an SM2 private key"):
        server_suite("sm").load_signer(ed_pem)
    # An SM2 key read by an international ring: a ValueError naming what it is not (was cryptography's
    # UnsupportedAlgorithm, which the key ring did not catch: a stack trace).
    with pytest.raises(ValueError, match="not an Ed25519 private key"):
        server_suite("international").load_signer(sm_pem)
    p256 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="not an Ed25519 private key"):
        server_suite("international").load_signer(p256)
    with pytest.raises(ValueError, match="not an SM2 private key"):
        server_suite("sm").load_signer(b"no key")
    # The private key is in [1, n-2] (GB/T 32918.1): 0 and n-1 are refused, 1 and n-2 read.
    for value, accepted in ((0, False), (1, True), (SM2_N - 2, True), (SM2_N - 1, False)):
        der = sm2.private_key_der(value.to_bytes(32, "big"), SM2_PUBLIC)
        assert (sm2.private_key_from_der(der) is not None) is accepted, value
    der = sm2.private_key_der(SM2_PRIVATE, SM2_PUBLIC)
    assert sm2.private_key_from_der(der) == SM2_PRIVATE
    assert sm2.private_key_from_der(der + b"\x00") is None
    assert sm2.private_key_from_der(der.replace(b"\x02\x01\x01\x04\x20", b"\x02\x01\x02\x04\x20")) is None
    server_suite("sm").check_available()
    server_suite("international").check_available()


@needs_openssl_sm2
def test_openssl_reads_our_keys_and_verifies_our_signatures(tmp_path: Path) -> None:
    signer = server_suite("sm").generate_signer()
    (tmp_path / "private.pem").write_bytes(signer.private_pem())
    public = openssl("pkey", "-in", str(tmp_path / "private.pem"), "-pubout")
    assert public.returncode == 0, public.stderr
    assert load_public_key(public.stdout) == signer.public_key()  # (OpenSSL wraps PEM at 64, not 76)
    message = b"mustcheck tree head"
    signature = signer.sign(message)
    assert openssl_verifies(tmp_path, signer.public_key().pem(), message, signature)
    assert not openssl_verifies(tmp_path, signer.public_key().pem(), message + b"!", signature)
    # The published key, as OpenSSL reads it.
    text = openssl("pkey", "-pubin", "-noout", "-text", data=PublicKey.sm2(SM2_PUBLIC).pem())
    assert text.returncode == 0 and b"SM2" in text.stdout, text.stderr


@needs_openssl_sm2
def test_a_signature_openssl_makes_with_an_sm2_key_verifies(tmp_path: Path) -> None:
    generated = openssl("genpkey", "-algorithm", "SM2")
    assert generated.returncode == 0, generated.stderr
    (tmp_path / "private.pem").write_bytes(generated.stdout)
    public = openssl("pkey", "-pubout", "-in", str(tmp_path / "private.pem")).stdout
    (tmp_path / "message").write_bytes(b"mustcheck")
    signed = openssl(
        "pkeyutl", "-sign", "-inkey", str(tmp_path / "private.pem"), "-rawin", "-in",
        str(tmp_path / "message"), "-digest", "sm3", "-pkeyopt", "distid:1234567812345678",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    key = load_public_key(public)
    assert key.algorithm == "sm2" and key.verify(signed.stdout, b"mustcheck")
    assert not key.verify(signed.stdout, b"mustcheck!")
    # OpenSSL's PKCS#8 key signs as ours (its private key read, its public key recomputed).
    signer = server_suite("sm").load_signer(generated.stdout)
    assert signer.public_key() == key and key.verify(signer.sign(b"m"), b"m")


def test_without_the_sm2_library_sm3_works_and_sm2_names_the_extra() -> None:
    """In a fresh interpreter where the SM2 library cannot be imported: SM3 falls back to OpenSSL's or
    cryptography's and still gives GB/T 32905's digest; an SM2 signature is refused naming the extra."""
    script = (
        "import sys\n"
        "sys.modules['gmssl_pyx'] = None  # the library is not installed\n"
        "from mustcheck import _sm2\n"
        "from mustcheck.suites import SuiteUnavailable, PublicKey\n"
        "print(_sm2.sm3(b'abc').hex())\n"
        "try:\n"
        "    PublicKey.sm2(bytes.fromhex(sys.argv[1])).verify(bytes.fromhex(sys.argv[2]), b'm')\n"
        "except SuiteUnavailable as error:\n"
        "    print(error)\n"
    )
    signature = sm2.encode_signature(SM2_R, SM2_S).hex()
    out = subprocess.run(
        [sys.executable, "-c", script, SM2_PUBLIC.hex(), signature],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    digest, refusal = out.stdout.splitlines()
    assert digest == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert refusal == "SM2 signatures need the SM2 library: install it with pip install 'mustcheck[sm]'"


# -- the key ring ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("made", "asked"), [("international", "sm"), ("sm", "international")])
def test_a_key_ring_of_the_other_suite_is_refused_naming_both(tmp_path: Path, made: str, asked: str) -> None:
    ring = KeyRing.load_or_create(tmp_path, made)
    assert ring.suite.name == made
    assert {key.algorithm for key in ring.public_keys().values()} == {server_suite(made).public.signature}
    with pytest.raises(SuiteMismatch) as refused:
        KeyRing.load_or_create(tmp_path, asked)
    message = str(refused.value)
    assert f"crypto suite {made!r}" in message and f"{asked!r} was asked for" in message
    assert KeyRing.load_or_create(tmp_path).suite.name == made  # without a suite asked: the ring's
