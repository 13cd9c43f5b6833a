"""Failed authentications per peer: throttled past a burst, one alert, aggregated accounting.

Each peer (the client's address, without its port) has a token bucket of failed authentications. While
it holds tokens, a failure is refused with UNAUTHENTICATED and audited on its own, as any refusal. When
the bucket runs dry the peer is throttled: one ``alert`` record is raised, and every further failure is
refused at once with RESOURCE_EXHAUSTED and a retry-after, and counted — not audited one by one — in
the peer's aggregated ``refused`` record of the current window (requests, items, reasons, the window's
start and end). So every denied query stays accounted for (R10) while a flood adds a record per peer
and window, not one per request. The throttle lifts when the bucket is full again (the peer has been
quiet long enough).

Valid credentials are never refused here: a token carries 256 random bits, so the throttle is not
what stops guessing; it keeps a flood from filling the audit disk, and raises the alarm.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ..audit import AuditEvent

MAX_PEERS = 10_000


@dataclass(frozen=True)
class FailedAuthLimit:
    """How many failed authentications a peer may make before it is throttled."""

    burst: int = 50
    per_second: float = 2.0
    # Throttled refusals are written as one record per peer and window of this many seconds.
    window_s: float = 10.0


@dataclass
class _Window:
    started: dt.datetime
    opened: float  # monotonic
    requests: int = 0
    items: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass
class _Peer:
    tokens: float
    updated: float
    throttled: bool = False
    window: _Window | None = None


def peer_address(peer: str) -> str:
    """Whom a connection is counted against: ``ipv4:127.0.0.1:53412`` → ``127.0.0.1``; an IPv6 address
    by its /64 network (one host holds a whole /64: ``ipv6:[2001:db8::5]:53412`` → ``2001:db8::/64``);
    others as they are."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6") and rest:
        host = (rest.rsplit(":", 1)[0] if ":" in rest else rest).strip("[]")
        if kind == "ipv6":
            with contextlib.suppress(ValueError):
                return str(ipaddress.IPv6Network(f"{host.split('%', 1)[0]}/64", strict=False))
        return host
    return peer


class PeerThrottle:
    def __init__(
        self,
        limit: FailedAuthLimit | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        max_peers: int = MAX_PEERS,
    ) -> None:
        self.limit = limit or FailedAuthLimit()
        self._monotonic = monotonic
        self._max_peers = max_peers
        self._peers: OrderedDict[str, _Peer] = OrderedDict()
        self._due: list[AuditEvent] = []
        self._lock = threading.Lock()
        # Called (without the lock) when an alert is due, so that it is written at once.
        self.on_alert: Callable[[], None] = lambda: None

    def failed(self, peer: str, reason: str, items: int = 1) -> float:
        """Count a failed authentication from ``peer``: 0.0 if it is refused and audited as usual, else
        the seconds after which the peer may try again (the refusal is counted in its aggregate)."""
        limit = self.limit
        now = self._monotonic()
        alert = False
        with self._lock:
            state = self._peers.get(peer)
            if state is None:
                state = self._peers[peer] = _Peer(float(limit.burst), now)
                self._evict()
            else:
                self._peers.move_to_end(peer)
            state.tokens = min(float(limit.burst), state.tokens + (now - state.updated) * limit.per_second)
            state.updated = now
            if state.throttled and state.tokens >= limit.burst:
                state.throttled = False  # quiet for long enough: a new episode starts
            if not state.throttled and state.tokens >= 1:
                state.tokens -= 1
                return 0.0
            if not state.throttled:
                state.throttled = alert = True
                self._due.append(self._alert(peer))
            # A failure while throttled starts the quiet period again: a flood that never stops never
            # earns a new allowance of records one by one (it stays in its aggregate).
            state.tokens = 0.0
            self._count(peer, state, now, reason, items)
            wait = (limit.burst - state.tokens) / limit.per_second if limit.per_second > 0 else 3600.0
        if alert:
            self.on_alert()
        return max(1.0, wait)

    def _alert(self, peer: str) -> AuditEvent:
        limit = self.limit
        return AuditEvent(
            kind="alert",
            caller_id="",
            outcome="alert",
            status="RESOURCE_EXHAUSTED",
            detail={
                "reason": "auth.failures",
                "peer": peer,
                "burst": limit.burst,
                "per_second": limit.per_second,
                "message": f"{limit.burst} failed authentications from {peer}: throttled",
            },
        )

    def _count(self, peer: str, state: _Peer, now: float, reason: str, items: int) -> None:
        window = state.window
        if window is not None and now - window.opened >= self.limit.window_s:
            self._due.append(self._aggregate(peer, window))
            window = None
        if window is None:
            window = state.window = _Window(dt.datetime.now(dt.UTC), now)
        window.requests += 1
        window.items += max(1, items)
        window.reasons[reason] += 1

    @staticmethod
    def _aggregate(peer: str, window: _Window) -> AuditEvent:
        return AuditEvent(
            kind="refused",
            caller_id="",
            outcome="throttled",
            status="RESOURCE_EXHAUSTED",
            detail={
                "peer": peer,
                "requests": window.requests,
                "items": window.items,
                "reasons": dict(sorted(window.reasons.items())),
                "from": window.started.isoformat(),
                "until": dt.datetime.now(dt.UTC).isoformat(),
            },
        )

    def _evict(self) -> None:
        while len(self._peers) > self._max_peers:
            peer, state = self._peers.popitem(last=False)
            if state.window is not None:
                self._due.append(self._aggregate(peer, state.window))

    def due(self, *, everything: bool = False) -> list[AuditEvent]:
        """The records to write now: alerts, and the aggregates of closed windows (of every open one
        too with ``everything``, when the gateway stops)."""
        now = self._monotonic()
        with self._lock:
            for peer, state in self._peers.items():
                window = state.window
                if window is not None and (everything or now - window.opened >= self.limit.window_s):
                    self._due.append(self._aggregate(peer, window))
                    state.window = None
            due, self._due = self._due, []
        return due

    def requeue(self, events: list[AuditEvent]) -> None:
        """Records that could not be written: kept for the next attempt."""
        with self._lock:
            self._due[:0] = events
