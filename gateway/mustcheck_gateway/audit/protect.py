"""Protecting a subject identifier: a keyed hash for search and an AEAD cipher for authorised reveal.

The key ring's suite (:mod:`..crypto.suites`) says which: HMAC-SHA256 and AES-256-GCM (international)
or HMAC-SM3 and SM4-GCM (sm). The hash is the keyed hash over the identifier's canonical form
(:func:`mustcheck.identifiers.normalise`, the one normalisation of every path: full-width folded,
trimmed, upper case), so ``…002x``, ``…002X`` and ``１１…００２Ｘ`` match, while other scripts'
digits stay distinct, as the lookup refuses them. The ciphertext keeps the identifier exactly as
given. It is bound (as associated data) to the key ids and the hash, so it cannot be moved to a record
about someone else.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from mustcheck.identifiers import normalise

from ..crypto.suites import AeadCipher, AuthenticationFailed, ServerSuite, server_suite
from .errors import AuditIntegrityError
from .keys import KeyKind, KeyRing

NONCE_BYTES = 12
_AAD_PREFIX = "mustcheck.audit.subject.v1"


def normalise_subject(subject: str) -> str:
    """The canonical form the lookup uses (R1): one function for every path."""
    return normalise(subject)


_INTERNATIONAL = server_suite("international")


def subject_hash(key: bytes, subject: str, suite: ServerSuite = _INTERNATIONAL) -> str:
    """The suite's keyed hash (HMAC-SHA256 or HMAC-SM3) of the normalised identifier, hex."""
    return suite.keyed_hash(key, normalise_subject(subject).encode())


def associated_data(enc_key_id: str, hmac_key_id: str, hashed: str) -> bytes:
    return f"{_AAD_PREFIX}\n{enc_key_id}\n{hmac_key_id}\n{hashed}".encode()


@dataclass(frozen=True, slots=True)
class _CurrentKeys:
    generation: int
    hmac_key_id: str
    hmac_key: bytes
    enc_key_id: str
    cipher: AeadCipher


@dataclass(frozen=True, slots=True)
class ProtectedSubject:
    subject_hash: str
    hmac_key_id: str
    subject_enc: str  # base64 of nonce + ciphertext
    enc_key_id: str


class SubjectProtector:
    """Hashes, encrypts and decrypts subjects with the keys of one :class:`KeyRing`."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        self.suite = keyring.suite
        self._current: _CurrentKeys | None = None

    def _keys(self) -> _CurrentKeys:
        """The current keys, looked up again only after a rotation (this is on every request's path)."""
        current = self._current
        if current is None or current.generation != self.keyring.generation:
            generation = self.keyring.generation
            hmac_key_id = self.keyring.current_id(KeyKind.HMAC)
            enc_key_id = self.keyring.current_id(KeyKind.ENC)
            current = _CurrentKeys(
                generation,
                hmac_key_id,
                self.keyring.secret(KeyKind.HMAC, hmac_key_id),
                enc_key_id,
                self.suite.cipher(self.keyring.secret(KeyKind.ENC, enc_key_id)),
            )
            self._current = current
        return current

    def keyed_hash(self, subject: str) -> tuple[str, str]:
        """(current HMAC key id, keyed hash) of ``subject``: what receipts carry instead of the subject."""
        keys = self._keys()
        return keys.hmac_key_id, subject_hash(keys.hmac_key, subject, self.suite)

    def protect(self, subject: str) -> ProtectedSubject:
        keys = self._keys()
        hashed = subject_hash(keys.hmac_key, subject, self.suite)
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = keys.cipher.encrypt(
            nonce, subject.encode(), associated_data(keys.enc_key_id, keys.hmac_key_id, hashed)
        )
        return ProtectedSubject(
            hashed, keys.hmac_key_id, base64.b64encode(nonce + sealed).decode(), keys.enc_key_id
        )

    def search_hashes(self, subject: str) -> list[tuple[str, str]]:
        """(hmac key id, hash) of ``subject`` under every HMAC key, old and current."""
        return [
            (key_id, subject_hash(key, subject, self.suite))
            for key_id, key in self.keyring.secret_keys(KeyKind.HMAC).items()
        ]

    def reveal(self, protected: ProtectedSubject, *, seq: int) -> str:
        """The identifier in clear; raises :class:`AuditIntegrityError` if the ciphertext was altered."""
        key = self.keyring.secret(KeyKind.ENC, protected.enc_key_id)
        try:
            blob = base64.b64decode(protected.subject_enc, validate=True)
            clear = self.suite.cipher(key).decrypt(
                blob[:NONCE_BYTES],
                blob[NONCE_BYTES:],
                associated_data(protected.enc_key_id, protected.hmac_key_id, protected.subject_hash),
            )
        except (AuthenticationFailed, ValueError) as error:
            raise AuditIntegrityError(f"record {seq}: the encrypted subject fails authentication") from error
        return clear.decode()
