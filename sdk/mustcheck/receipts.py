"""Receipts (R11): the gateway's signed word that a check happened, verifiable offline.

Every allowed check answer carries a receipt that the approval system keeps with its decision. Its
compact form is ``mcr1.<payload>.<signature>`` (base64url): the payload is canonical JSON naming the
receipt id, caller, matter, the subject as a keyed hash (never in clear), outcome, measure ids, data
version, the time of issue, the audit record's sequence number and the signing key's id; the signature
is Ed25519 over a domain tag and the payload. :func:`verify_receipt` needs only the gateway's public
keys (current and past: a receipt signed before a key rotation still verifies).
A receipt has one string: :func:`verify_receipt` and :func:`parse_receipt` refuse any other spelling of it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._errors import MustCheckError

__all__ = ["InvalidReceipt", "Receipt", "load_public_keys", "parse_receipt", "sign_receipt", "verify_receipt"]

PREFIX = "mcr1"
DOMAIN = b"mustcheck.receipt.v1\n"
_FIELDS = (
    "id",
    "caller",
    "matter",
    "subject",
    "subject_key",
    "outcome",
    "measures",
    "data_version",
    "issued_at",
    "audit_seq",
    "kid",
)


class InvalidReceipt(MustCheckError):
    """The receipt is malformed, altered, or signed by a key the verifier does not know."""


@dataclass(frozen=True, slots=True)
class Receipt:
    receipt_id: str
    caller: str
    matter: str
    subject_hash: str
    subject_key_id: str
    outcome: str
    measure_ids: tuple[str, ...]
    data_version: int
    issued_at: dt.datetime
    audit_seq: int
    key_id: str
    compact: str

    def __str__(self) -> str:
        return self.compact


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _unb64(text: str) -> bytes:
    """Strict base64url without padding: the one spelling :func:`_b64` gives, or ``ValueError``.

    A lenient decoder would take ``+``/``/`` for ``-``/``_``, padding, stray characters and unused low
    bits in the last character, so that one receipt had many strings.
    """
    if not _B64URL_ALPHABET.issuperset(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("unused bits set in the last character")
    return data


def _canonical_json(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_receipt(fields: Mapping[str, Any], key_id: str, signer: Ed25519PrivateKey) -> str:
    """The compact receipt for ``fields`` (the gateway's side)."""
    payload = _canonical_json({**fields, "kid": key_id})
    signature = signer.sign(DOMAIN + payload)
    return f"{PREFIX}.{_b64(payload)}.{_b64(signature)}"


def _split(compact: str) -> tuple[bytes, bytes, dict[str, Any]]:
    """The payload, signature and fields of a receipt in its one canonical spelling; anything else is
    refused, so that a receipt has exactly one string (stores, comparisons and indexes can rely on it)."""
    parts = compact.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise InvalidReceipt(f"not a receipt: expected {PREFIX}.<payload>.<signature>")
    try:
        payload, signature = _unb64(parts[1]), _unb64(parts[2])
    except ValueError:
        raise InvalidReceipt(
            "the receipt is not in its canonical form: payload and signature must be unpadded base64url"
        ) from None
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise InvalidReceipt("the receipt's payload is not readable") from None
    if not isinstance(data, dict) or _canonical_json(data) != payload:
        raise InvalidReceipt("the receipt is not in its canonical form: its payload is not canonical JSON")
    missing = [name for name in _FIELDS if name not in data]
    if missing:
        raise InvalidReceipt(f"the receipt lacks {', '.join(missing)}")
    return payload, signature, data


def parse_receipt(compact: str) -> Receipt:
    """Read a receipt without verifying it (use :func:`verify_receipt` to trust it)."""
    return _receipt(_split(compact)[2], compact)


def _receipt(data: dict[str, Any], compact: str) -> Receipt:
    try:
        return Receipt(
            receipt_id=str(data["id"]),
            caller=str(data["caller"]),
            matter=str(data["matter"]),
            subject_hash=str(data["subject"]),
            subject_key_id=str(data["subject_key"]),
            outcome=str(data["outcome"]),
            measure_ids=tuple(str(m) for m in data["measures"]),
            data_version=int(data["data_version"]),
            issued_at=dt.datetime.fromisoformat(data["issued_at"]),
            audit_seq=int(data["audit_seq"]),
            key_id=str(data["kid"]),
            compact=compact,
        )
    except (TypeError, ValueError):
        raise InvalidReceipt("the receipt's fields are not readable") from None


def verify_receipt(compact: str, public_keys: Mapping[str, Ed25519PublicKey | bytes]) -> Receipt:
    """The receipt, if its signature is valid under the named key; else :class:`InvalidReceipt` saying why."""
    payload, signature, data = _split(compact)
    key_id = str(data["kid"])
    key = public_keys.get(key_id)
    if key is None:
        raise InvalidReceipt(
            f"signed with key {key_id}, which is not among the {len(public_keys)} known keys"
        )
    if isinstance(key, bytes):
        try:
            loaded = serialization.load_pem_public_key(key)
        except ValueError:
            raise InvalidReceipt(f"key {key_id} is not a PEM public key") from None
        if not isinstance(loaded, Ed25519PublicKey):
            raise InvalidReceipt(f"key {key_id} is not an Ed25519 public key")
        key = loaded
    try:
        key.verify(signature, DOMAIN + payload)
    except InvalidSignature:
        raise InvalidReceipt(
            "the signature does not match: the receipt was altered or signed by another key"
        ) from None
    return _receipt(data, compact)


def load_public_keys(path: str | Path) -> dict[str, bytes]:
    """Public keys by key id: a JSON file ``{key_id: PEM}`` or a directory of ``<key_id>.pem`` files."""
    location = Path(path)
    if location.is_dir():
        pems = {pem.stem: pem.read_bytes() for pem in sorted(location.glob("*.pem"))}
        public = {key_id: pem for key_id, pem in pems.items() if b"PRIVATE KEY" not in pem}
        if pems and not public:
            # A gateway's keys/ folder: its signing keys are private; the public ones are in keys/public/.
            raise ValueError(
                f"{location} holds private keys only: give the folder of public keys "
                f"(a gateway's keys/public/) or the file `mustcheck receipts keys` writes"
            )
        return public
    data = json.loads(location.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{location} does not hold a JSON object of key id to PEM")
    return {str(key_id): str(pem).encode() for key_id, pem in data.items()}
