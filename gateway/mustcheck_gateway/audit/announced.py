"""How many requests that will append a record are in progress: a counter the writer process reads.

The gateway counts them (:meth:`GroupCommitWriter.announce`, :meth:`RemoteWriter.announce`); the
writer, once it has a record to commit, waits up to its group window for them while the count is
above zero, so that one sync serves many records. The count lives in a page of shared memory (a
``memfd`` whose descriptor the writer process inherits): reading it costs the gateway nothing.
"""

from __future__ import annotations

import mmap
import os


class SharedCounter:
    """One signed 64-bit count; changed by one process (under its own lock), read by another."""

    def __init__(self, descriptor: int | None = None) -> None:
        if descriptor is None:
            descriptor = os.memfd_create("mustcheck-audit-announced", os.MFD_CLOEXEC)
            os.ftruncate(descriptor, mmap.PAGESIZE)
        self.descriptor = descriptor
        self._map = mmap.mmap(descriptor, mmap.PAGESIZE)
        self._cell = memoryview(self._map).cast("q")

    @property
    def value(self) -> int:
        return int(self._cell[0])

    def add(self, delta: int) -> None:
        self._cell[0] += delta

    def close(self) -> None:
        self._cell.release()
        self._map.close()
        os.close(self.descriptor)
