"""How many requests that will append a record are in progress: a counter the writer process reads.

The gateway counts them (:meth:`GroupCommitWriter.announce`, :meth:`RemoteWriter.announce`); the
writer, once it has a record to commit, waits up to its group window for them while the count is
above zero, so that one sync serves many records. The count lives in a page of shared memory (a
``memfd`` whose descriptor the writer process inherits): reading it costs the gateway nothing.

Several processes may announce to one writer (the workers of one gateway, ``serve --workers``): each
changes a cell of its own (``slot``), never another's, and the writer reads the sum of the cells.
"""

from __future__ import annotations

import mmap
import os

# Cells of one count: the process that made it (0) and the workers attached to its writer (1 and up).
SLOTS = 64


class SharedCounter:
    """One signed 64-bit count in ``SLOTS`` cells; each cell changed by one process (under its own lock),
    the sum read by another."""

    def __init__(self, descriptor: int | None = None, *, slot: int = 0) -> None:
        if descriptor is None:
            descriptor = os.memfd_create("mustcheck-audit-announced", os.MFD_CLOEXEC)
            os.ftruncate(descriptor, mmap.PAGESIZE)
        if not 0 <= slot < SLOTS:
            raise ValueError(f"slot {slot} is not in 0..{SLOTS - 1}")
        self.descriptor = descriptor
        self.slot = slot
        self._map = mmap.mmap(descriptor, mmap.PAGESIZE)
        self._cells = memoryview(self._map).cast("q")
        self.span = 1  # the reader sums cells 0 .. span - 1 (it widens this as processes attach)

    @property
    def value(self) -> int:
        if self.span == 1:
            return int(self._cells[0])
        return sum(self._cells[: self.span])

    def add(self, delta: int) -> None:
        self._cells[self.slot] += delta

    def reset(self, slot: int) -> None:
        """Zero ``slot``: the process that held it is gone (its announcements with it)."""
        self._cells[slot] = 0

    def close(self) -> None:
        self._cells.release()
        self._map.close()
        os.close(self.descriptor)
