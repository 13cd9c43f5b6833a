"""The crypto suites, by name: the one table of the algorithms a gateway's log, keys and receipts use.

A deployment chooses one suite when its key ring is created (``mustcheck serve --crypto
international|sm``) and keeps it:

============== ===================== ==================== ===================== ==============
suite          tree (leaf and node)  keyed subject hash   signatures            subject cipher
============== ===================== ==================== ===================== ==============
international  SHA-256               HMAC-SHA256          Ed25519               AES-256-GCM
sm             SM3 (GB/T 32905)      HMAC-SM3             SM2 with SM3 and the  SM4-GCM
                                                          default user id       (GB/T 32907)
                                                          (GB/T 32918, GM/T
                                                          0009)
============== ===================== ==================== ===================== ==============

Every signed or hashed structure names its algorithms (a tree head's ``alg``: ``{"hash": "sm3", "sig":
"sm2"}``), so a verifier picks the suite from the data: :func:`suite_of`. Public keys are PEM
SubjectPublicKeyInfo (the SM2 curve's OID for SM2), signatures Ed25519's 64 bytes or SM2's DER, so that
OpenSSL 3 and GmSSL verify them (docs/crypto.md). This module verifies; the gateway's twin
(``mustcheck_gateway.crypto.suites``) adds what needs secrets (signing, the cipher, key generation).
SM2 needs the extra ``mustcheck[sm]`` (:mod:`._sm2`): without it an SM2 signature is refused with
:class:`SuiteUnavailable`, which names the extra.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import _sm2
from ._errors import MustCheckError
from .merkle import SHA256, TreeHasher

__all__ = [
    "DEFAULT_SUITE",
    "INTERNATIONAL",
    "SM",
    "SM3",
    "SUITES",
    "PublicKey",
    "Suite",
    "SuiteUnavailable",
    "load_public_key",
    "public_key_of",
    "suite_named",
    "suite_of",
]

ED25519 = "ed25519"
SM2 = "sm2"
SM2_USER_ID = _sm2.DEFAULT_USER_ID


class SuiteUnavailable(MustCheckError):
    """A signature of a suite whose library is not installed: the message names the extra to install."""


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


SM3 = TreeHasher("sm3", _sm2.sm3)


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104), the same digest as ``hmac.new(key, data, hashlib.sha256).digest()``: the
    key's inner and outer hash states are made once a key and copied (``hmac.new`` sets OpenSSL's HMAC up
    anew each call, about 5 µs; this is about 1 µs, and the audit log hashes every checked subject)."""
    inner, outer = _hmac_sha256_states(key)
    first = inner.copy()
    first.update(data)
    second = outer.copy()
    second.update(first.digest())
    return second.digest()


@functools.lru_cache(maxsize=64)
def _hmac_sha256_states(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    block = hashlib.sha256(key).digest() if len(key) > 64 else key
    block = block.ljust(64, b"\0")
    return (
        hashlib.sha256(bytes(byte ^ 0x36 for byte in block)),
        hashlib.sha256(bytes(byte ^ 0x5C for byte in block)),
    )


def _hmac_sm3_openssl(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, "sm3").digest()


def _hmac_sm3_cryptography(key: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import hmac as keyed

    mac = keyed.HMAC(key, hashes.SM3())
    mac.update(data)
    return mac.finalize()


def _hmac_sm3_choice() -> Callable[[bytes, bytes], bytes]:
    try:
        hashlib.new("sm3")
    except ValueError:
        return _hmac_sm3_cryptography
    return _hmac_sm3_openssl


@dataclass(frozen=True, slots=True)
class Suite:
    """One suite: its name, the tree's hasher, the keyed hash, the signature and the subject cipher."""

    name: str
    hasher: TreeHasher
    keyed_hash_name: str
    keyed_hash: Callable[[bytes, bytes], bytes] = field(repr=False)
    signature: str
    cipher: str

    @property
    def algorithms(self) -> dict[str, str]:
        """What a tree head names in ``alg``."""
        return {"hash": self.hasher.algorithm, "sig": self.signature}

    def digest(self, data: bytes) -> bytes:
        return self.hasher.digest(data)


INTERNATIONAL = Suite("international", SHA256, "hmac-sha256", _hmac_sha256, ED25519, "aes-256-gcm")
SM = Suite("sm", SM3, "hmac-sm3", _hmac_sm3_choice(), SM2, "sm4-gcm")
SUITES: Mapping[str, Suite] = {suite.name: suite for suite in (INTERNATIONAL, SM)}
DEFAULT_SUITE = INTERNATIONAL


def suite_named(name: str) -> Suite:
    """The suite called ``name`` (``ValueError`` naming the known ones otherwise)."""
    found = SUITES.get(name)
    if found is None:
        raise ValueError(f"unknown crypto suite {name!r}: one of {', '.join(SUITES)}")
    return found


def suite_of(algorithms: Mapping[str, Any]) -> Suite | None:
    """The suite whose algorithms are exactly ``algorithms`` (a tree head's ``alg``), or None."""
    for suite in SUITES.values():
        if dict(algorithms) == suite.algorithms:
            return suite
    return None


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A verification key of either suite: its algorithm and its raw bytes (Ed25519's 32, SM2's x || y)."""

    algorithm: str
    raw: bytes
    _ed25519: Ed25519PublicKey | None = field(default=None, compare=False, repr=False)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` signs ``message`` (SM2: :class:`SuiteUnavailable` without the library)."""
        if self.algorithm == SM2:
            try:
                return _sm2.verify(self.raw, message, signature)
            except _sm2.SM2Unavailable as error:
                raise SuiteUnavailable(str(error)) from None
        assert self._ed25519 is not None
        try:
            self._ed25519.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def der(self) -> bytes:
        if self.algorithm == SM2:
            return _sm2.public_key_der(self.raw)
        assert self._ed25519 is not None
        return self._ed25519.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def pem(self) -> bytes:
        """PEM SubjectPublicKeyInfo (what ``receipts keys`` publishes and OpenSSL reads)."""
        return _sm2.pem("PUBLIC KEY", self.der())

    @classmethod
    def ed25519(cls, key: Ed25519PublicKey) -> PublicKey:
        return cls(ED25519, key.public_bytes_raw(), key)

    @classmethod
    def sm2(cls, point: bytes) -> PublicKey:
        return cls(SM2, point)


def load_public_key(pem: bytes | str) -> PublicKey:
    """A public key from its PEM SubjectPublicKeyInfo: Ed25519 or SM2 (``ValueError`` for anything else)."""
    data = pem.encode() if isinstance(pem, str) else pem
    der = _sm2.unpem(data, "PUBLIC KEY")
    if der is None:
        raise ValueError("not a PEM public key")
    point = _sm2.public_key_from_der(der)
    if point is not None:
        return PublicKey.sm2(point)
    try:
        loaded = serialization.load_der_public_key(der)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise ValueError(f"not a usable public key: {error}") from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValueError("neither an Ed25519 nor an SM2 public key")
    return PublicKey.ed25519(loaded)


@functools.lru_cache(maxsize=64)
def _loaded(pem: bytes) -> PublicKey | None:
    try:
        return load_public_key(pem)
    except ValueError:
        return None


def public_key_of(key: Any) -> PublicKey | None:
    """``key`` as a :class:`PublicKey`: one already, PEM (bytes or text; loaded once), or an Ed25519 key
    object; None if it is none of these."""
    if isinstance(key, PublicKey):
        return key
    if isinstance(key, str):
        key = key.encode()
    if isinstance(key, bytes):
        return _loaded(key)
    if isinstance(key, Ed25519PublicKey):
        return PublicKey.ed25519(key)
    return None
