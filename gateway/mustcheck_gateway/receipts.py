"""Signing receipts (R11) with the gateway's signing keys (those of the audit log's key ring, of its suite).

With the audit log on, receipts are proofs (``mcr2``): the audit writer process makes them when it
commits the records, as inclusion proofs against the one tree head it signs per commit
(:meth:`.audit.writer.GroupCommitWriter.receipt`, docs/receipts.md). This signer makes receipts of the
first format (``mcr1``, one signature each) only for a gateway without its audit log (the
benchmarks' baseline): they name ``audit_seq`` 0.
"""

from __future__ import annotations

import datetime as dt
import uuid

from mustcheck.receipts import sign_receipt

from .audit import AuditEvent, KeyKind, KeyRing
from .audit.protect import SubjectProtector
from .audit.record import PendingRecord


class ReceiptSigner:
    """Signs with the key ring's current signing key; subjects are hashed with its current HMAC key."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        self.protector = SubjectProtector(keyring)

    def sign(self, record: PendingRecord, audit_seq: int) -> str:
        """The receipt for the allowed check that ``record``, committed as ``audit_seq``, audits."""
        key_id = self.keyring.current_id(KeyKind.SIGN)
        fields = {
            "id": uuid.uuid4().hex,
            "caller": record.caller_id,
            "matter": record.matter,
            "subject": record.subject_hash,
            "subject_key": record.hmac_key_id,
            "outcome": record.outcome,
            "measures": list(record.measure_ids),
            "data_version": record.data_version,
            "issued_at": record.at,
            "audit_seq": audit_seq,
        }
        return sign_receipt(fields, key_id, self.keyring.signer(key_id))

    def sign_unaudited(self, event: AuditEvent) -> str:
        """A receipt for a check that no audit log records (the benchmarks' baseline): ``audit_seq`` 0."""
        return self.sign(PendingRecord.from_event(event, self.protector, dt.datetime.now(dt.UTC)), 0)

    def public_keys_pem(self) -> dict[str, str]:
        return {key_id: key.pem().decode() for key_id, key in self.keyring.public_keys().items()}
