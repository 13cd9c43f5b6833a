"""Rate limits that are the caller's across the workers of one gateway: token buckets in shared memory.

Each worker of a multi-process gateway would otherwise keep its own bucket per caller, and a caller
spread over N workers would get N times its grant. The buckets live instead in one table in a page
range of shared memory (a ``memfd`` the supervisor makes and every worker inherits): a slot per
caller, found by a 64-bit hash of the caller id (open addressing; a worker remembers its callers'
slots), changed under a lock of the slot's own (``lockf`` on one byte of the table's file: the kernel
releases it if a worker dies holding it), with the system-wide monotonic clock read under the lock.
A take is O(1): two system calls and a few reads and writes of shared memory.

A table that is full (more than :data:`SLOTS` callers since the gateway started) leaves the callers
that find no slot to a bucket per worker, and says so once in the log.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import threading
import time
from collections.abc import Callable

import structlog

from ..auth.ratelimit import RateLimiter

log = structlog.get_logger("mustcheck.workers")

SLOTS = 16384
# A slot: the caller's key (int64; 0: free), burst (int64; -1: not set), rate, tokens, updated (doubles).
_FIELDS = 5
_KEY, _BURST, _RATE, _TOKENS, _UPDATED = range(_FIELDS)
_SIZE = SLOTS * _FIELDS * 8
_INSERT_LOCK = SLOTS  # the byte locked while a slot is claimed


def _key(caller_id: str) -> int:
    key = int.from_bytes(hashlib.blake2b(caller_id.encode(), digest_size=8).digest(), "little", signed=True)
    return key or 1


class SharedRateLimiter:
    """:class:`~..auth.ratelimit.RateLimiter`'s ``take``, over a table every worker shares."""

    def __init__(
        self, descriptor: int | None = None, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if descriptor is None:
            descriptor = os.memfd_create("mustcheck-rate-limits", os.MFD_CLOEXEC)
            os.ftruncate(descriptor, _SIZE)
        self.descriptor = descriptor
        self._map = mmap.mmap(descriptor, _SIZE)
        self._ints = memoryview(self._map).cast("q")
        self._floats = memoryview(self._map).cast("d")
        self._monotonic = monotonic
        self._slots: dict[str, int] = {}
        self._lock = threading.Lock()  # lockf locks are the process's: threads take turns first
        self._fallback = RateLimiter(monotonic)
        self._full_noted = False

    def take(self, caller_id: str, rate: float, burst: int, count: int = 1) -> float:
        """Take ``count`` tokens; return 0 if allowed, else the seconds to wait before retrying."""
        slot = self._slots.get(caller_id)
        if slot is None:
            slot = self._slot_of(caller_id)
            if slot is None:
                return self._fallback.take(caller_id, rate, burst, count)
        ints, floats, base = self._ints, self._floats, slot * _FIELDS
        with self._lock:
            fcntl.lockf(self.descriptor, fcntl.LOCK_EX, 1, slot)
            try:
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
            finally:
                fcntl.lockf(self.descriptor, fcntl.LOCK_UN, 1, slot)
        if rate <= 0:
            return float("inf")
        return (count - tokens) / rate

    def _slot_of(self, caller_id: str) -> int | None:
        key = _key(caller_id)
        slot = self._probe(key)
        if slot is None or self._ints[slot * _FIELDS + _KEY] != key:
            with self._lock:
                fcntl.lockf(self.descriptor, fcntl.LOCK_EX, 1, _INSERT_LOCK)
                try:
                    slot = self._probe(key)  # another worker may have claimed it meanwhile
                    if slot is not None and self._ints[slot * _FIELDS + _KEY] != key:
                        base = slot * _FIELDS
                        self._ints[base + _BURST] = -1  # set on the first take
                        self._ints[base + _KEY] = key  # last: the slot is the caller's from here
                finally:
                    fcntl.lockf(self.descriptor, fcntl.LOCK_UN, 1, _INSERT_LOCK)
        if slot is None:
            if not self._full_noted:
                self._full_noted = True
                log.warning(
                    "rate_limit_table_full", slots=SLOTS, message="further callers limited per worker"
                )
            return None
        self._slots[caller_id] = slot
        return slot

    def _probe(self, key: int) -> int | None:
        """The slot holding ``key``, else the first free one on its way, else None (the table is full)."""
        ints = self._ints
        start = key % SLOTS
        for step in range(SLOTS):
            slot = (start + step) % SLOTS
            held = ints[slot * _FIELDS + _KEY]
            if held == key or held == 0:
                return slot
        return None

    def close(self) -> None:
        self._ints.release()
        self._floats.release()
        self._map.close()
        os.close(self.descriptor)
