"""One writer per audit database: an advisory lock file held for as long as the log is open.

Two writers on one file would hand out the same sequence numbers and fork the chain; the second
:meth:`AuditLog.open` fails instead (in this process or another).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import AuditError


class WriterLock:
    """``wait``: block until the lock is free instead of failing (the writer process waits for one
    that a gateway killed a moment ago left finishing its last commit)."""

    def __init__(self, db_path: Path, *, suffix: str = ".lock", wait: bool = False) -> None:
        self.path = db_path.with_name(db_path.name + suffix)
        self._descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(self._descriptor)
            raise AuditError(f"the audit log {db_path} is already open for writing elsewhere") from None

    def release(self) -> None:
        if self._descriptor >= 0:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)
            self._descriptor = -1
