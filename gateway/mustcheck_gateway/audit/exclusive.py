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
    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._descriptor)
            raise AuditError(f"the audit log {db_path} is already open for writing elsewhere") from None

    def release(self) -> None:
        if self._descriptor >= 0:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)
            self._descriptor = -1
