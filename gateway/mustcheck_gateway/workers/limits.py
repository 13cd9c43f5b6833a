"""Limits that are the caller's across the workers of one gateway: a table in shared memory.

Each worker of a multi-process gateway would otherwise keep its own token bucket per caller, and a
caller spread over N workers would get N times its grant. The buckets live instead in one table in
shared memory (a ``memfd`` the supervisor makes and every worker inherits): a slot per caller, found
by a 64-bit hash of the caller id (open addressing; a worker remembers its callers' slots), changed
under a lock of the slot's own (``lockf`` on one byte of the table's file: the kernel releases it if
a worker dies holding it), with the system-wide monotonic clock read under the lock. A take is O(1):
two system calls and a few reads and writes of shared memory.

The same slot counts the caller's person lookups of the day (China Standard Time) for the daily quota
when the store does not: with an embedded store (one gateway, whose workers share this table). On
PostgreSQL the store counts them, across replicas too (:mod:`..quota`).

A table that is full (more than :data:`SLOTS` callers since the gateway started) leaves the callers
that find no slot to a bucket and a count per worker, and says so once in the log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterator

import structlog

from ..auth.ratelimit import PersonQuota, RateLimiter

log = structlog.get_logger("mustcheck.workers")

SLOTS = 16384
# A slot: the caller's key (int64; 0: free), burst (int64; -1: not set), rate, tokens, updated (doubles),
# the day of the person lookups counted (int64: its ordinal) and their count (int64).
_FIELDS = 7
_KEY, _BURST, _RATE, _TOKENS, _UPDATED, _DAY, _USED = range(_FIELDS)
_SIZE = SLOTS * _FIELDS * 8
_INSERT_LOCK = SLOTS  # the byte locked while a slot is claimed


def _key(caller_id: str) -> int:
    key = int.from_bytes(hashlib.blake2b(caller_id.encode(), digest_size=8).digest(), "little", signed=True)
    return key or 1


class SharedTable:
    """The table of callers' slots every worker maps (``descriptor``: none makes a new one)."""

    def __init__(self, descriptor: int | None = None) -> None:
        if descriptor is None:
            descriptor = os.memfd_create("mustcheck-limits", os.MFD_CLOEXEC)
            os.ftruncate(descriptor, _SIZE)
        self.descriptor = descriptor
        self._map = mmap.mmap(descriptor, _SIZE)
        self.ints = memoryview(self._map).cast("q")
        self.floats = memoryview(self._map).cast("d")
        self._slots: dict[str, int] = {}
        self._lock = threading.Lock()  # lockf locks are the process's: threads take turns first
        self._full_noted = False

    @contextlib.contextmanager
    def locked(self, slot: int) -> Iterator[int]:
        """Hold ``slot``'s lock (in this process and across the workers); yields its first field."""
        with self._lock:
            fcntl.lockf(self.descriptor, fcntl.LOCK_EX, 1, slot)
            try:
                yield slot * _FIELDS
            finally:
                fcntl.lockf(self.descriptor, fcntl.LOCK_UN, 1, slot)

    def slot(self, caller_id: str) -> int | None:
        """``caller_id``'s slot (claimed on first use), or None if the table is full."""
        slot = self._slots.get(caller_id)
        return slot if slot is not None else self._slot_of(caller_id)

    def _slot_of(self, caller_id: str) -> int | None:
        key = _key(caller_id)
        slot = self._probe(key)
        if slot is None or self.ints[slot * _FIELDS + _KEY] != key:
            with self.locked(_INSERT_LOCK):
                slot = self._probe(key)  # another worker may have claimed it meanwhile
                if slot is not None and self.ints[slot * _FIELDS + _KEY] != key:
                    base = slot * _FIELDS
                    self.ints[base + _BURST] = -1  # set on the first take
                    self.ints[base + _DAY] = 0
                    self.ints[base + _USED] = 0
                    self.ints[base + _KEY] = key  # last: the slot is the caller's from here
        if slot is None:
            if not self._full_noted:
                self._full_noted = True
                log.warning("limits_table_full", slots=SLOTS, message="further callers limited per worker")
            return None
        self._slots[caller_id] = slot
        return slot

    def _probe(self, key: int) -> int | None:
        """The slot holding ``key``, else the first free one on its way, else None (the table is full)."""
        ints = self.ints
        start = key % SLOTS
        for step in range(SLOTS):
            slot = (start + step) % SLOTS
            held = ints[slot * _FIELDS + _KEY]
            if held == key or held == 0:
                return slot
        return None

    def close(self) -> None:
        self.ints.release()
        self.floats.release()
        self._map.close()
        os.close(self.descriptor)


class SharedRateLimiter:
    """:class:`~..auth.ratelimit.RateLimiter`'s ``take``, over the table every worker shares."""

    def __init__(self, table: SharedTable, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._table = table
        self._monotonic = monotonic
        self._fallback = RateLimiter(monotonic)

    def take(self, caller_id: str, rate: float, burst: int, count: int = 1) -> float:
        """Take ``count`` tokens; return 0 if allowed, else the seconds to wait before retrying."""
        table = self._table
        slot = table.slot(caller_id)
        if slot is None:
            return self._fallback.take(caller_id, rate, burst, count)
        ints, floats = table.ints, table.floats
        with table.locked(slot) as base:
            now = self._monotonic()
            if ints[base + _BURST] != burst or floats[base + _RATE] != rate:
                ints[base + _BURST] = burst
                floats[base + _RATE] = rate
                tokens = float(burst)
            else:
                elapsed = max(0.0, now - floats[base + _UPDATED])
                tokens = min(float(burst), floats[base + _TOKENS] + elapsed * rate)
            floats[base + _UPDATED] = now
            if tokens >= count:
                floats[base + _TOKENS] = tokens - count
                return 0.0
            floats[base + _TOKENS] = tokens
        if rate <= 0:
            return float("inf")
        return (count - tokens) / rate


class SharedPersonQuota:
    """:class:`~..auth.ratelimit.PersonQuota` over the table every worker shares."""

    day_of = staticmethod(PersonQuota.day_of)

    def __init__(self, table: SharedTable) -> None:
        self._table = table
        self._fallback = PersonQuota()

    def take(self, caller_id: str, at: dt.datetime, quota: int) -> bool:
        """Count one lookup if the quota allows it."""
        slot = self._table.slot(caller_id)
        if slot is None:
            return self._fallback.take(caller_id, at, quota)
        day, ints = self.day_of(at).toordinal(), self._table.ints
        with self._table.locked(slot) as base:
            used = ints[base + _USED] if ints[base + _DAY] == day else 0
            if used >= quota:
                return False
            ints[base + _DAY] = day
            ints[base + _USED] = used + 1
            return True

    def seed(self, caller_id: str, day: dt.date, count: int) -> None:
        """Never less than ``count`` for ``day`` (counted before a restart: the audit log says)."""
        slot = self._table.slot(caller_id)
        if slot is None:
            self._fallback.seed(caller_id, day, count)
            return
        ints = self._table.ints
        with self._table.locked(slot) as base:
            if ints[base + _DAY] > day.toordinal():
                return  # a later day is counted already
            if ints[base + _DAY] < day.toordinal():
                ints[base + _DAY], ints[base + _USED] = day.toordinal(), 0
            ints[base + _USED] = max(count, ints[base + _USED])

    def used(self, caller_id: str, at: dt.datetime) -> int:
        slot = self._table.slot(caller_id)
        if slot is None:
            return self._fallback.used(caller_id, at)
        base, ints = slot * _FIELDS, self._table.ints
        return int(ints[base + _USED]) if ints[base + _DAY] == self.day_of(at).toordinal() else 0
