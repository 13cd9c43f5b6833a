"""The crypto suites on the gateway's side: the one module that signs, encrypts and keys-hashes.

The suite table itself (names, hashes, verification) is the SDK's :mod:`mustcheck.suites`; this twin adds
what needs secrets, for each suite by the same name:

- ``international``: Ed25519 signing keys (PKCS#8 PEM), AES-256-GCM with 32-byte keys, HMAC-SHA256;
- ``sm``: SM2 signing keys (PKCS#8 PEM with the SM2 curve's OID; signatures with SM3 and the default
  user id, DER), SM4-GCM with 16-byte keys, HMAC-SM3.

Nothing else in the gateway imports a hash, cipher or signature primitive for the audit log, its keys or
its receipts: they ask the key ring's :class:`ServerSuite`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mustcheck import _sm2
from mustcheck.suites import DEFAULT_SUITE, INTERNATIONAL, SM, PublicKey, Suite, SuiteUnavailable

__all__ = [
    "DEFAULT_SUITE_NAME",
    "SUITE_NAMES",
    "AeadCipher",
    "AuthenticationFailed",
    "ServerSuite",
    "Signer",
    "SuiteUnavailable",
    "server_suite",
]

DEFAULT_SUITE_NAME = DEFAULT_SUITE.name
TAG_BYTES = 16


class AuthenticationFailed(Exception):
    """A ciphertext (or its associated data) was altered: the cipher's tag does not verify."""


class Signer(Protocol):
    """A signing key of either suite."""

    algorithm: str

    def sign(self, data: bytes) -> bytes: ...

    def public_key(self) -> PublicKey: ...

    def private_pem(self) -> bytes: ...


class AeadCipher(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes) -> bytes: ...


class _Ed25519Signer:
    algorithm = "ed25519"

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._public = PublicKey.ed25519(key.public_key())

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def public_key(self) -> PublicKey:
        return self._public

    def private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


class _SM2Signer:
    algorithm = "sm2"

    def __init__(self, private: bytes, public: bytes) -> None:
        self._private = private
        self._public = PublicKey.sm2(public)
        # Z (the signer's id, the curve and the public key) is the same for every signature: hashed once.
        self._user_hash = _sm2.user_hash(public)

    def sign(self, data: bytes) -> bytes:
        return _sm2.sign_digest(self._private, _sm2.sm3(self._user_hash + data))

    def public_key(self) -> PublicKey:
        return self._public

    def private_pem(self) -> bytes:
        return _sm2.pem("PRIVATE KEY", _sm2.private_key_der(self._private, self._public.raw))


class _AesGcm:
    def __init__(self, key: bytes) -> None:
        self._cipher = AESGCM(key)

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes) -> bytes:
        return self._cipher.encrypt(nonce, data, associated_data)

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes) -> bytes:
        try:
            return self._cipher.decrypt(nonce, data, associated_data)
        except InvalidTag:
            raise AuthenticationFailed("the ciphertext fails authentication") from None


class _Sm4Gcm:
    """SM4 in GCM mode (GB/T 32907 with the GCM of NIST SP 800-38D): ciphertext || 16-byte tag."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes) -> bytes:
        encryptor = Cipher(algorithms.SM4(self._key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(associated_data)
        sealed = encryptor.update(data) + encryptor.finalize()
        return sealed + encryptor.tag

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes) -> bytes:
        if len(data) < TAG_BYTES:
            raise AuthenticationFailed("the ciphertext is shorter than its tag")
        try:
            decryptor = Cipher(algorithms.SM4(self._key), modes.GCM(nonce, data[-TAG_BYTES:])).decryptor()
            decryptor.authenticate_additional_data(associated_data)
            return decryptor.update(data[:-TAG_BYTES]) + decryptor.finalize()
        except (InvalidTag, ValueError):
            raise AuthenticationFailed("the ciphertext fails authentication") from None


@dataclass(frozen=True, slots=True)
class ServerSuite:
    """A suite with its secrets' side: key sizes, signing keys, the subject cipher, the keyed hash."""

    public: Suite
    cipher_key_bytes: int
    hmac_key_bytes: int = 32

    @property
    def name(self) -> str:
        return self.public.name

    def keyed_hash(self, key: bytes, data: bytes) -> str:
        """The keyed hash (HMAC-SHA256 or HMAC-SM3) of ``data``, hex."""
        return self.public.keyed_hash(key, data).hex()

    def cipher(self, key: bytes) -> AeadCipher:
        if len(key) != self.cipher_key_bytes:
            raise ValueError(f"a {self.public.cipher} key has {self.cipher_key_bytes} bytes, not {len(key)}")
        return _Sm4Gcm(key) if self.public is SM else _AesGcm(key)

    def generate_signer(self) -> Signer:
        if self.public is SM:
            private, public = _generate_sm2()
            return _SM2Signer(private, public)
        return _Ed25519Signer(Ed25519PrivateKey.generate())

    def load_signer(self, pem: bytes) -> Signer:
        """The signing key in ``pem`` (PKCS#8); ``ValueError`` if it is not one of this suite."""
        if self.public is SM:
            der = _sm2.unpem(pem, "PRIVATE KEY")
            private = None if der is None else _sm2.private_key_from_der(der)
            if private is None:
                raise ValueError("not an SM2 private key (PKCS#8 PEM)")
            return _SM2Signer(private, _sm2.public_from_private(private))
        try:
            loaded = serialization.load_pem_private_key(pem, password=None)
        except UnsupportedAlgorithm as error:  # an SM2 key: cryptography knows no such curve
            raise ValueError(f"not an Ed25519 private key: {error}") from None
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError("not an Ed25519 private key")
        return _Ed25519Signer(loaded)

    def check_available(self) -> None:
        """Raise :class:`SuiteUnavailable` (naming the extra) if this suite's library is missing."""
        if self.public is SM:
            try:
                _sm2.available()
            except _sm2.SM2Unavailable as error:
                raise SuiteUnavailable(str(error)) from None


def _generate_sm2() -> tuple[bytes, bytes]:
    try:
        return _sm2.generate()
    except _sm2.SM2Unavailable as error:
        raise SuiteUnavailable(str(error)) from None


_SERVER_SUITES: Mapping[str, ServerSuite] = {
    INTERNATIONAL.name: ServerSuite(INTERNATIONAL, cipher_key_bytes=32),
    SM.name: ServerSuite(SM, cipher_key_bytes=16),
}
SUITE_NAMES: tuple[str, ...] = tuple(_SERVER_SUITES)


def server_suite(name: str) -> ServerSuite:
    """The suite called ``name``; ``ValueError`` naming the known ones otherwise."""
    found = _SERVER_SUITES.get(name)
    if found is None:
        raise ValueError(f"unknown crypto suite {name!r}: one of {', '.join(SUITE_NAMES)}")
    return found


def random_key(size: int) -> bytes:
    return secrets.token_bytes(size)
