"""The gateway's cache of subject data: what ``store.lookup`` read, kept until a write touches it.

Every lookup first learns the store's data version. When it has moved, the change feed catches up and
drops exactly the subjects the new versions touched — whichever process wrote them — before the cache
answers, so a fresh blacklisting is never hidden behind a cached "no record" (R12). A hit is valid as
of that version and says so.

Where the version comes from: by default the store is asked on every lookup (one indexed read in the
embedded SQLite file: writes by any process are seen at once). With ``version_lease_s`` (a database
across the network, where that read is a round trip) the version the change feed last polled is
used while the poll is younger than the lease, together with every version this process committed
itself: a replica sees its own writes at once and other replicas' writes within a poll interval; when
the polls fail or lag, each lookup asks the store again — and fails closed if it cannot.

A load that raced with a write is not kept: each invalidation moves an epoch, and a value read
before the epoch moved is returned but not stored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

from cachetools import LRUCache

from .change_feed import ChangeFeed
from .store.base import ListStore, Lookup
from .store.changes import SubjectChange

DEFAULT_CACHE_ENTRIES = 100_000


@runtime_checkable
class RemembersWrites(Protocol):
    """A store that knows the newest data version it committed itself."""

    written_version: int


class LookupCache:
    def __init__(
        self,
        store: ListStore,
        feed: ChangeFeed,
        *,
        max_entries: int = DEFAULT_CACHE_ENTRIES,
        version_lease_s: float | None = None,
    ) -> None:
        self.store = store
        self.feed = feed
        self.version_lease_s = version_lease_s
        # Decided once: a runtime protocol check is too slow for every lookup.
        self._own_writes: RemembersWrites | None = store if isinstance(store, RemembersWrites) else None
        self._entries: LRUCache[tuple[str, bool], Lookup] = LRUCache(maxsize=max(1, max_entries))
        self._enabled = max_entries > 0
        self._lock = threading.Lock()
        self._epoch = 0
        self.hits = 0
        self.misses = 0
        feed.add_listener(self.invalidate)

    def lookup(self, subject_code: str, *, person: bool, current: int | None = None) -> Lookup:
        """The subject's data as of the store's version now (``current``, if the caller just learnt it)."""
        if current is None:
            current = self.current_version()
        self.feed.catch_up(current)
        key = (subject_code, person)
        with self._lock:
            cached = self._entries.get(key)
            epoch = self._epoch
        if cached is not None:
            self.hits += 1
            # Nothing since the read touched this subject: the same data is the answer at `current`.
            return cached if cached.data_version == current else replace(cached, data_version=current)
        self.misses += 1
        loaded = self.store.lookup(subject_code, person=person)
        if self._enabled:
            with self._lock:
                if epoch == self._epoch:
                    self._entries[key] = loaded
        return loaded

    def lookup_many(self, subjects: Sequence[tuple[str, bool]], *, current: int) -> list[Lookup]:
        """``lookup`` of each ``(subject code, person)`` as of ``current``: the subjects the cache does not
        hold are read from the store together (one snapshot, a few statements)."""
        self.feed.catch_up(current)
        with self._lock:
            found = [self._entries.get(key) for key in subjects]
            epoch = self._epoch
        missing = sorted({key for key, cached in zip(subjects, found, strict=True) if cached is None})
        self.hits += len(subjects) - len(missing)
        loaded: dict[tuple[str, bool], Lookup] = {}
        if missing:
            self.misses += len(missing)
            loaded = dict(zip(missing, self.store.lookup_many(missing), strict=True))
            if self._enabled:
                with self._lock:
                    if epoch == self._epoch:
                        self._entries.update(loaded)
        return [
            loaded[key]
            if cached is None
            else cached
            if cached.data_version == current
            else replace(cached, data_version=current)
            for key, cached in zip(subjects, found, strict=True)
        ]

    def current_version(self) -> int:
        """The store's data version as this gateway may rely on now (see the module's docstring)."""
        if self.version_lease_s is not None:
            leased = self.feed.leased_version(self.version_lease_s)
            if leased is not None:
                written = self._own_writes.written_version if self._own_writes is not None else 0
                return max(leased, written)
        return self.store.data_version()

    def invalidate(self, changes: Iterable[SubjectChange]) -> None:
        with self._lock:
            self._epoch += 1
            for change in changes:
                if change.everything:
                    self._entries.clear()
                    return
                for subject in change.subjects:
                    self._entries.pop((subject, False), None)
                    self._entries.pop((subject, True), None)

    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def __len__(self) -> int:
        return len(self._entries)
