"""Per-caller rate limits (token buckets) and daily quotas of person lookups.

Bulk enumeration of ID numbers is the abuse to stop: a caller over its daily person
quota is denied (and an alert is audited by the caller of ``take_person``).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..china_time import CHINA_STANDARD_TIME


@dataclass
class _Bucket:
    tokens: float
    updated: float
    rate: float
    burst: int


class Limiter(Protocol):
    def take(self, caller_id: str, rate: float, burst: int, count: int = 1) -> float:
        """Take ``count`` tokens; return 0 if allowed, else the seconds to wait before retrying."""
        ...


class Quota(Protocol):
    def take(self, caller_id: str, at: dt.datetime, quota: int) -> bool:
        """Count one person lookup if the quota allows it."""
        ...

    def seed(self, caller_id: str, day: dt.date, count: int) -> None: ...

    def used(self, caller_id: str, at: dt.datetime) -> int: ...


class RateLimiter:
    """Token buckets keyed by caller; the grant's rate and burst apply from the next call."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._monotonic = monotonic

    def take(self, caller_id: str, rate: float, burst: int, count: int = 1) -> float:
        """Take ``count`` tokens; return 0 if allowed, else the seconds to wait before retrying."""
        now = self._monotonic()
        with self._lock:
            bucket = self._buckets.get(caller_id)
            if bucket is None or bucket.rate != rate or bucket.burst != burst:
                bucket = self._buckets[caller_id] = _Bucket(float(burst), now, rate, burst)
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= count:
                bucket.tokens -= count
                return 0.0
            if rate <= 0:
                return float("inf")
            return (count - bucket.tokens) / rate


class PersonQuota:
    """Person lookups per caller and day (China Standard Time)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, dt.date], int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def day_of(at: dt.datetime) -> dt.date:
        return at.astimezone(CHINA_STANDARD_TIME).date()

    def seed(self, caller_id: str, day: dt.date, count: int) -> None:
        with self._lock:
            self._counts[(caller_id, day)] = max(count, self._counts.get((caller_id, day), 0))

    def take(self, caller_id: str, at: dt.datetime, quota: int) -> bool:
        """Count one lookup if the quota allows it."""
        key = (caller_id, self.day_of(at))
        with self._lock:
            used = self._counts.get(key, 0)
            if used >= quota:
                return False
            self._counts[key] = used + 1
            return True

    def used(self, caller_id: str, at: dt.datetime) -> int:
        return self._counts.get((caller_id, self.day_of(at)), 0)
