"""The tamper-evident audit log (R10, R14): every check and administrative change, before the answer.

Records go to their own SQLite file through one group-commit writer (a process of its own); each
record's hash covers the previous one, Ed25519-signed checkpoints (also mirrored to
``checkpoints.jsonl``) pin the chain, and subjects are stored only as a keyed hash (search) and
AES-GCM ciphertext (authorised reveal).
``verify_log`` checks a copy of the log offline with nothing but the public keys.

    log = AuditLog.open(data_dir)
    seq = await log.append(AuditEvent(kind="check", caller_id="approval", subject=code, ...))
    log.query(subject=code); log.reveal([seq], by="auditor-7"); log.verify(); log.close()
"""

from __future__ import annotations

from .audit_log import DEFAULT_FILE_NAME, KEYS_DIR_NAME, AuditLog, verify_data_dir
from .checkpoint import Checkpoint, CheckpointKind
from .errors import AuditError, AuditIntegrityError, AuditLogClosed, KeyRingError, RetentionError
from .keys import KeyKind, KeyRing, load_public_keys
from .mirror import MIRROR_FILE_NAME
from .record import AuditEvent, AuditRecord
from .remote_writer import Announcement
from .retention import RETENTION_YEARS, retention_limit
from .verify import VerifyReport, verify_log

__all__ = [
    "DEFAULT_FILE_NAME",
    "KEYS_DIR_NAME",
    "MIRROR_FILE_NAME",
    "RETENTION_YEARS",
    "Announcement",
    "AuditError",
    "AuditEvent",
    "AuditIntegrityError",
    "AuditLog",
    "AuditLogClosed",
    "AuditRecord",
    "Checkpoint",
    "CheckpointKind",
    "KeyKind",
    "KeyRing",
    "KeyRingError",
    "RetentionError",
    "VerifyReport",
    "load_public_keys",
    "retention_limit",
    "verify_data_dir",
    "verify_log",
]
