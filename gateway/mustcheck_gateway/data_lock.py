"""One gateway per data directory: ``DIR/gateway.lock``, held with ``flock`` for the gateway's life.

Two gateways on one data directory would share the embedded store and fight over the audit log (and a
``mustcheck demo`` would empty a directory a running gateway holds). The lock is taken before anything
in the directory is opened and released when the gateway stops; the kernel releases it when the
process ends, however it ends, so a crash leaves nothing to clean up.

The lock identifies the *gateway*: the file says which gateway holds it (an id, the process that took
it, the address it listens on) for the refusal message. Processes the gateway starts itself run under
this one lock and never take it again: its audit writer and import workers do not inherit the
descriptor (a writer left finishing after its gateway was killed does not keep a restart out; the audit
log's own writer lock covers it), and worker processes serving one port would be handed the descriptor
(``os.set_inheritable``), sharing the gateway's lock rather than taking one each.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from pathlib import Path

LOCK_FILE_NAME = "gateway.lock"


class DataDirInUse(Exception):
    """Another gateway holds the data directory (the message says which, where known)."""


class DataDirLock:
    def __init__(self, data_dir: Path, descriptor: int, gateway_id: str) -> None:
        self.path = data_dir / LOCK_FILE_NAME
        self.gateway_id = gateway_id
        self._descriptor = descriptor

    @classmethod
    def acquire(cls, data_dir: Path, *, listen: str = "") -> DataDirLock:
        """Take the lock of ``data_dir`` (which must exist), or raise :class:`DataDirInUse`."""
        path = data_dir / LOCK_FILE_NAME
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            os.close(descriptor)
            raise DataDirInUse(
                f"the data directory {data_dir} is in use by another gateway{holder}"
            ) from None
        except BaseException:
            os.close(descriptor)
            raise
        lock = cls(data_dir, descriptor, uuid.uuid4().hex)
        lock.describe(listen)
        return lock

    def describe(self, listen: str) -> None:
        """Record the address the gateway listens on, once it is known (port 0 picks one)."""
        text = json.dumps({"gateway": self.gateway_id, "pid": os.getpid(), "listen": listen}) + "\n"
        os.ftruncate(self._descriptor, 0)
        os.pwrite(self._descriptor, text.encode(), 0)

    def release(self) -> None:
        if self._descriptor >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._descriptor, 0)
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)
            self._descriptor = -1


def in_use(data_dir: Path) -> str | None:
    """Why ``data_dir`` is in use by a running gateway, or ``None`` if it is not (nothing is locked)."""
    if not (data_dir / LOCK_FILE_NAME).exists():
        return None
    try:
        lock = DataDirLock.acquire(data_dir)
    except DataDirInUse as error:
        return str(error)
    lock.release()
    return None


def _holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return ""
    if not isinstance(holder, dict) or "pid" not in holder:
        return ""
    where = f", listening on {holder['listen']}" if holder.get("listen") else ""
    return f" (process {holder['pid']}{where})"
