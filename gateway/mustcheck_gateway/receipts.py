"""Signing receipts (R11) with the gateway's Ed25519 keys (those of the audit log's key ring).

A receipt names the audit record of its check (``audit_seq``), so an auditor can go from a receipt
kept with an approval decision to the record, and back.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from cryptography.hazmat.primitives import serialization

from mustcheck.receipts import sign_receipt

from .audit import KeyKind, KeyRing
from .audit.protect import SubjectProtector


class ReceiptSigner:
    """Signs with the key ring's current signing key; hashes subjects with its current HMAC key, so that
    a receipt's subject hash matches the audit record's."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        self.protector = SubjectProtector(keyring)

    def sign(
        self,
        *,
        caller: str,
        matter: str,
        subject: str,
        outcome: str,
        measure_ids: Sequence[str],
        data_version: int,
        issued_at: dt.datetime,
        audit_seq: int,
    ) -> str:
        key_id = self.keyring.current_id(KeyKind.SIGN)
        subject_key, subject_hash = self.protector.keyed_hash(subject)
        fields = {
            "id": uuid.uuid4().hex,
            "caller": caller,
            "matter": matter,
            "subject": subject_hash,
            "subject_key": subject_key,
            "outcome": outcome,
            "measures": list(measure_ids),
            "data_version": data_version,
            "issued_at": issued_at.astimezone(dt.UTC).isoformat(),
            "audit_seq": audit_seq,
        }
        return sign_receipt(fields, key_id, self.keyring.signer(key_id))

    def public_keys_pem(self) -> dict[str, str]:
        return {
            key_id: key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode()
            for key_id, key in self.keyring.public_keys().items()
        }
