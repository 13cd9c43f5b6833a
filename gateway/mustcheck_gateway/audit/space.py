"""The free-space watermark of the audit log's disk.

Below the watermark the audit log refuses new records (:class:`~.errors.AuditUnavailable`: checks
answer UNAVAILABLE and gRPC health says NOT_SERVING) *before* the disk is full, so that no write is
cut short by a full disk and what is already durable can still be indexed. Above it again, the log
takes records at once: no restart needed. The free space is read at most every ``REFRESH_S``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

MIB = 1 << 20
DEFAULT_MIN_FREE_MB = 64
REFRESH_S = 0.1


class FreeSpace:
    """``low()`` says why the disk holding ``path`` is below the watermark (None: it is not)."""

    def __init__(self, path: Path, min_free_bytes: int) -> None:
        if min_free_bytes < 0:
            raise ValueError("the free-space watermark cannot be negative")
        self.path = path
        self.min_free_bytes = min_free_bytes
        self._checked_at = -REFRESH_S
        self._free = 0

    def free_bytes(self) -> int:
        now = time.monotonic()
        if now - self._checked_at >= REFRESH_S:
            try:
                stats = os.statvfs(self.path)
                self._free = stats.f_bavail * stats.f_frsize
            except OSError:
                self._free = 0
            self._checked_at = now
        return self._free

    def low(self) -> str | None:
        if not self.min_free_bytes:
            return None
        free = self.free_bytes()
        if free >= self.min_free_bytes:
            return None
        return (
            f"the audit disk has {free / MIB:.1f} MiB free, below its {self.min_free_bytes / MIB:.0f} MiB "
            "watermark: checks resume once space is freed"
        )
