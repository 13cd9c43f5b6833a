"""The gateway's cache of subject data: what ``store.lookup`` read, kept until a write touches it.

Every lookup first asks the store for its data version (one indexed read). When it has moved, the
change feed catches up and drops exactly the subjects the new versions touched — whichever process
wrote them — before the cache answers, so a fresh blacklisting is never hidden behind a cached
"no record" (R12). A hit is valid as of the current version and says so.

A load that raced with a write is not kept: each invalidation moves an epoch, and a value read
before the epoch moved is returned but not stored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import replace

from cachetools import LRUCache

from .change_feed import ChangeFeed
from .store.base import ListStore, Lookup
from .store.changes import SubjectChange

DEFAULT_CACHE_ENTRIES = 100_000


class LookupCache:
    def __init__(
        self, store: ListStore, feed: ChangeFeed, *, max_entries: int = DEFAULT_CACHE_ENTRIES
    ) -> None:
        self.store = store
        self.feed = feed
        self._entries: LRUCache[tuple[str, bool], Lookup] = LRUCache(maxsize=max(1, max_entries))
        self._enabled = max_entries > 0
        self._lock = threading.Lock()
        self._epoch = 0
        self.hits = 0
        self.misses = 0
        feed.add_listener(self.invalidate)

    def lookup(self, subject_code: str, *, person: bool, current: int | None = None) -> Lookup:
        """The subject's data as of the store's version now (``current``, if the caller has just read it)."""
        if current is None:
            current = self.store.data_version()
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
