"""The callers, grants and tokens in force, held in memory and refreshed when they change.

Reads on the request path cost a dictionary look-up. The registry re-reads the store
when its ``auth_version`` moves, checking at most every ``refresh_interval`` seconds,
so an administrative change (from this gateway or another one on the same store)
takes effect within one second without a restart. ``invalidate`` makes this
gateway's own changes visible at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from ..store.base import AuthData, ListStore
from .model import Caller, Grant, TokenRecord

DEFAULT_REFRESH_INTERVAL = 0.25


@dataclass(frozen=True)
class AuthSnapshot:
    version: int = -1
    callers: dict[str, Caller] = field(default_factory=dict)
    by_tls_identity: dict[str, Caller] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    tokens_by_hash: dict[str, TokenRecord] = field(default_factory=dict)
    tokens: tuple[TokenRecord, ...] = ()

    @classmethod
    def of(cls, data: AuthData) -> AuthSnapshot:
        return cls(
            version=data.version,
            callers={caller.caller_id: caller for caller in data.callers},
            by_tls_identity={caller.tls_identity: caller for caller in data.callers if caller.tls_identity},
            grants={grant.caller_id: grant for grant in data.grants},
            tokens_by_hash={token.token_hash: token for token in data.tokens},
            tokens=tuple(data.tokens),
        )


class AuthRegistry:
    def __init__(self, store: ListStore, *, refresh_interval: float = DEFAULT_REFRESH_INTERVAL) -> None:
        self.store = store
        self.refresh_interval = refresh_interval
        self._lock = threading.Lock()
        self._snapshot = AuthSnapshot.of(store.load_auth())
        self._checked_at = time.monotonic()

    def snapshot(self) -> AuthSnapshot:
        now = time.monotonic()
        if now - self._checked_at >= self.refresh_interval:
            with self._lock:
                if now - self._checked_at >= self.refresh_interval:
                    self._checked_at = now
                    if self.store.auth_version() != self._snapshot.version:
                        self._snapshot = AuthSnapshot.of(self.store.load_auth())
        return self._snapshot

    def invalidate(self) -> None:
        with self._lock:
            self._snapshot = AuthSnapshot.of(self.store.load_auth())
            self._checked_at = time.monotonic()
