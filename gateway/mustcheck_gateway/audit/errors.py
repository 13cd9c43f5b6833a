"""The audit log's exceptions, rooted at :class:`AuditError`."""

from __future__ import annotations


class AuditError(Exception):
    """Anything the audit log refuses or cannot do."""


class AuditLogClosed(AuditError):
    """The log was closed: nothing more can be appended."""


class AuditUnavailable(AuditError):
    """Records cannot be made durable now (the disk is nearly full, the writer restarts): try again."""


class RetentionError(AuditError):
    """A prune would delete records still inside their retention period (R14)."""


class AuditIntegrityError(AuditError):
    """The stored log does not verify (altered, deleted or reordered records; bad ciphertext)."""


class KeyRingError(AuditError):
    """A key is missing, malformed, or the key directory cannot be used."""
