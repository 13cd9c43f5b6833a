"""The SDK's answer cache, kept honest by the gateway's ``Watch`` stream.

Rules (R12: a cached answer must never hide a fresh blacklisting):

- An answer is cached under the subject, matter, purpose and authorisation reference it was asked
  with (a client speaks for one caller, so the caller is part of every key of its cache), with the
  matter's freshness tolerance and fail mode that the gateway sent along. Negative answers
  ("no record") are cached like any other.
- It is served from the cache only while the change stream is alive (a message within 1.5 heartbeats)
  and never once it is older than the tolerance. Each ``Watch`` event drops the answers of the
  subjects it names — matched by keyed hash, since the stream never carries raw identifiers.
- An answer is only stored when the stream has not already moved past its data version (else a
  change in between might have been missed), and only when the gateway process that answered is the
  one the stream comes from (``gateway_instance``): a stream names only the subjects its caller checked
  through that process. With several gateways, answers from the others are not cached; after a
  reconnect to another process (or a restarted gateway), answers cached before are no longer served
  fresh — only as the stale fallback below.
- While the stream is down, every check goes to the gateway. If the gateway cannot answer either,
  a serve-stale matter gets its cached answer, no older than the tolerance and marked ``stale``;
  every other matter fails closed (``CheckUnavailable``).

One object serves both clients; the sync client feeds it from a thread, the async one from a task.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace

from cachetools import LRUCache

from ._generated.v1 import check_pb2 as pb
from ._models import CheckResult

HEARTBEAT_GRACE = 1.5
_NEVER = float("-inf")


@dataclass(frozen=True, slots=True)
class _Cached:
    result: CheckResult  # already marked from_cache
    subject_hash: bytes
    fetched_at: float
    tolerance_s: float
    serve_stale: bool
    instance: str  # the gateway process that answered, whose stream drops the answer


class _Entries(LRUCache[Hashable, _Cached]):
    """An LRU cache that reports evictions, so that the hash index stays in step."""

    def __init__(self, maxsize: int, on_evict: Callable[[Hashable, _Cached], None]) -> None:
        super().__init__(maxsize)
        self._on_evict = on_evict

    def popitem(self) -> tuple[Hashable, _Cached]:
        key, value = super().popitem()
        self._on_evict(key, value)
        return key, value


class AnswerCache:
    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError(f"a cache needs room for at least one answer, got {max_entries}")
        self.clock = clock
        self.hash_key = os.urandom(32)
        self._hmac = hmac.new(self.hash_key, digestmod=hashlib.sha256)
        self._entries = _Entries(max_entries, self._forget)
        self._by_hash: dict[bytes, set[Hashable]] = {}
        self._lock = threading.Lock()
        self.stream_version = 0
        self._joined = False  # a stream has told us its version: later streams resume from there
        self._last_message = _NEVER
        self._heartbeat_s = 1.0
        self._instance = ""  # the gateway process the stream comes from
        self.hits = 0
        self.misses = 0

    # -- what a check asks -------------------------------------------------------------

    def fresh(self, key: Hashable) -> CheckResult | None:
        """The cached answer if it may be served now, else ``None`` (a miss)."""
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if (
                entry is None
                or not self._alive(now)
                or entry.instance != self._instance
                or now - entry.fetched_at > entry.tolerance_s
            ):
                self.misses += 1
                return None
            self.hits += 1
            return entry.result

    def stale(self, key: Hashable) -> CheckResult | None:
        """For a gateway that cannot answer: the cached answer of a serve-stale matter within its
        tolerance, marked stale; ``None`` for every other matter (fail closed)."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or not entry.serve_stale or self.clock() - entry.fetched_at > entry.tolerance_s:
            return None
        return replace(entry.result, stale=True)

    def remember(self, key: Hashable, subject: str, response: pb.CheckResponse, result: CheckResult) -> None:
        """Keep a fresh answer (``subject`` as normalised, the form the gateway hashes)."""
        if response.freshness_tolerance_s <= 0:
            return
        digest = self._hmac.copy()
        digest.update(subject.encode())
        entry = _Cached(
            replace(result, from_cache=True),
            digest.digest(),
            self.clock(),
            float(response.freshness_tolerance_s),
            response.fail_mode == pb.FAIL_MODE_SERVE_STALE,
            response.gateway_instance,
        )
        with self._lock:
            if (
                not self._alive(self.clock())
                or response.data_version < self.stream_version
                or response.gateway_instance != self._instance
            ):
                return
            self._entries[key] = entry
            self._by_hash.setdefault(entry.subject_hash, set()).add(key)

    # -- what the stream says ----------------------------------------------------------

    def watch_request(self) -> pb.WatchRequest:
        """Resume where the stream left off, so that nothing between is missed."""
        if self._joined:
            return pb.WatchRequest(after_version=self.stream_version, hash_key=self.hash_key)
        return pb.WatchRequest(hash_key=self.hash_key)

    def apply(self, event: pb.WatchEvent) -> None:
        with self._lock:
            if event.heartbeat_interval_ms > 0:
                self._heartbeat_s = event.heartbeat_interval_ms / 1000
            self._instance = event.gateway_instance
            if event.everything:
                self._entries.clear()
                self._by_hash.clear()
            for subject_hash in event.subject_hashes:
                for key in self._by_hash.pop(subject_hash, ()):
                    self._entries.pop(key, None)
            self.stream_version = max(self.stream_version, event.data_version)
            self._joined = True
            self._last_message = self.clock()

    def stream_lost(self) -> None:
        with self._lock:
            self._last_message = _NEVER

    def alive(self) -> bool:
        with self._lock:
            return self._alive(self.clock())

    def _alive(self, now: float) -> bool:
        return now - self._last_message <= self._heartbeat_s * HEARTBEAT_GRACE

    def _forget(self, key: Hashable, entry: _Cached) -> None:
        keys = self._by_hash.get(entry.subject_hash)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_hash[entry.subject_hash]

    def __len__(self) -> int:
        return len(self._entries)
