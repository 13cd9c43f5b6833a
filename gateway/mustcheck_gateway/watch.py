"""The ``Watch`` stream: each data version's changes to the caller's own subjects, as keyed hashes.

A stream is for a caller with a grant, and names only subjects that this caller checked (and was
audited for) within the longest freshness tolerance of its grant's matters (``recent_checks.py``):
the subjects whose answers its cache may hold. Any other change moves the stream's data version on
without naming anything, so a subscriber learns nothing about a subject it did not submit itself,
whatever hash key it chose. The subscriber's key keeps raw identifiers off the stream: only the
subscriber can match a hash against the subjects it holds. Every subscription is audited, refused
or not; a caller holds at most its grant's ``max_watch_streams`` streams at once; a stream ends
when its caller loses its token or its grant.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from mustcheck._generated.v1 import check_pb2 as pb

from .audit import AuditEvent
from .auth.access import AccessControl
from .auth.model import Caller, Grant
from .change_feed import ChangeFeed
from .errors import GatewayError, InvalidArgument, PermissionDenied, ResourceExhausted, presented
from .policy.model import PolicySet
from .recent_checks import RecentChecks, Selection
from .responses import timestamp
from .service import AuditSink
from .store.changes import SubjectChange

Context = grpc.aio.ServicerContext[Any, Any]
MIN_HASH_KEY, MAX_HASH_KEY = 16, 64
DEFAULT_HEARTBEAT_S = 1.0
# A check is answered a moment after it is noted, and a change reaches a stream a moment after it is
# written: subjects are named for this much longer than the tolerance, so no cached answer is missed.
WINDOW_MARGIN_S = 5.0
_PAGE = 100
# How often an idle stream looks whether the gateway is stopping (and its caller still may watch).
_CLOSING_CHECK_S = 0.25


def watch_window_s(policy: PolicySet, grant: Grant) -> float:
    """How long after a check a change to its subject is still named: the longest freshness tolerance
    of the matters ``grant`` covers (0 when it covers none), plus a margin."""
    tolerances = [m.freshness_tolerance_s for m in policy.matters.values() if grant.covers_matter(m)]
    return max(tolerances) + WINDOW_MARGIN_S if tolerances else 0.0


class WatchStreams:
    def __init__(
        self,
        feed: ChangeFeed,
        access: AccessControl,
        audit: AuditSink,
        policy: PolicySet,
        *,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    ) -> None:
        self.feed = feed
        self.access = access
        self.audit = audit
        self.policy = policy
        self.heartbeat_s = heartbeat_s
        longest = max((m.freshness_tolerance_s for m in policy.matters.values()), default=0)
        self.recent = RecentChecks(longest + WINDOW_MARGIN_S)
        # Names this process: its memory of recent checks is its own (a restarted gateway, another
        # replica or another worker process knows nothing of it), so caches pair answers and streams.
        self.instance = uuid.uuid4().hex[:16]
        self.subscribers = 0
        self._per_caller: dict[str, int] = {}
        self._closing = False

    def checked(self, caller_id: str, subject: str) -> Callable[[], None]:
        """``caller_id`` is checking ``subject`` (its grant and authorisation passed): its streams may
        name the subject's changes from now on, for as long as the window of its grant. Returns the undo,
        for a check that ends without its audit record."""
        previous = self.recent.note(caller_id, subject)
        return lambda: self.recent.withdraw(caller_id, subject, previous)

    def checked_many(self, caller_id: str, subjects: Sequence[str]) -> Callable[[], None]:
        """:meth:`checked` for the subjects of a batch, at one instant; one undo for all of them."""
        previous = self.recent.note_many(caller_id, subjects)
        return lambda: self.recent.withdraw_many(caller_id, previous)

    def close(self) -> None:
        """End every stream at its next wake-up (the gateway is stopping; subscribers reconnect)."""
        self._closing = True

    async def stream(self, request: pb.WatchRequest, context: Context) -> AsyncIterator[pb.WatchEvent]:
        caller: Caller | None = None
        try:
            caller = self.access.caller(context)
            grant = self._grant(caller)
            window_s = watch_window_s(self.policy, grant)
            open_streams = self._per_caller.get(caller.caller_id, 0)
            if open_streams >= grant.max_watch_streams:
                raise ResourceExhausted(
                    f"caller {caller.caller_id} already holds {open_streams} Watch streams, "
                    f"the most its grant allows",
                    reason="watch.streams",
                )
            if not MIN_HASH_KEY <= len(request.hash_key) <= MAX_HASH_KEY:
                raise InvalidArgument(
                    f"hash_key must be {MIN_HASH_KEY} to {MAX_HASH_KEY} random bytes, "
                    f"got {len(request.hash_key)}",
                    reason="watch.hash_key",
                )
            if request.after_version < 0:
                raise InvalidArgument("after_version must not be negative", reason="watch.after_version")
        except GatewayError as error:
            if not error.accounted:  # a throttled peer's refusals are counted in its aggregate
                await self.audit.append(_event(caller, request, error.status.name, error.reason, error=error))
            raise
        # The place is taken before the first await, so that streams opened at once cannot pass the bound.
        self.subscribers += 1
        self._per_caller[caller.caller_id] = self._per_caller.get(caller.caller_id, 0) + 1
        try:
            await self.audit.append(
                _event(caller, request, "OK", "", window_s=window_s, limit=grant.max_watch_streams)
            )
            async for event in self._events(request, context, caller, grant):
                yield event
        finally:
            self.subscribers -= 1
            left = self._per_caller.pop(caller.caller_id) - 1
            if left:
                self._per_caller[caller.caller_id] = left

    def _grant(self, caller: Caller) -> Grant:
        grant = self.access.registry.snapshot().grants.get(caller.caller_id)
        if grant is None or not grant.valid_at(self.access.authenticator.clock()):
            raise PermissionDenied(
                f"caller {caller.caller_id} has no grant in force: Watch is for callers that check",
                reason="watch.no_grant",
            )
        if watch_window_s(self.policy, grant) <= 0:
            raise PermissionDenied(
                f"the grant of caller {caller.caller_id} covers no matter", reason="watch.no_grant"
            )
        return grant

    def _still_allowed(self, context: Context, caller: Caller) -> Grant:
        """The caller's grant now; raises if its token or grant is gone (the stream ends, audited)."""
        return self._grant(self.access.caller(context))

    async def _events(
        self, request: pb.WatchRequest, context: Context, caller: Caller, grant: Grant
    ) -> AsyncIterator[pb.WatchEvent]:
        current = self.feed.catch_up()
        after = request.after_version if request.HasField("after_version") else current
        interval_ms = round(self.heartbeat_s * 1000)
        if after > current:  # a version this store never had (another store, a restore): start over
            yield pb.WatchEvent(
                data_version=current,
                everything=True,
                heartbeat_interval_ms=interval_ms,
                gateway_instance=self.instance,
            )
            after = current
        else:  # the hello: where the stream starts
            yield _heartbeat(after, interval_ms, self.instance)
        key = hmac.new(request.hash_key, digestmod=hashlib.sha256)
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        window_s = watch_window_s(self.policy, grant)
        while not self._closing:
            try:
                current_grant = self._still_allowed(context, caller)
            except GatewayError as error:
                await self.audit.append(_event(caller, request, error.status.name, error.reason, error=error))
                raise
            if current_grant is not grant:
                grant, window_s = current_grant, watch_window_s(self.policy, current_grant)
            seen = self.feed.version  # before reading: every change up to it is visible to the read
            # The store is read only once the feed has seen it move: an idle stream costs it nothing.
            changes = self.feed.store.subject_changes(after, limit=_PAGE) if seen > after else []
            for change in changes:
                own = self.recent.select(caller.caller_id, change.subjects, window_s)
                yield _change_event(change, own, key, interval_ms, self.instance)
                after = change.data_version
            if changes:
                last_sent = loop.time()
                continue
            after = max(after, seen)  # versions that touched no subject
            due = last_sent + self.heartbeat_s - loop.time()
            if due <= 0:
                yield _heartbeat(after, interval_ms, self.instance)
                last_sent = loop.time()
                continue
            await self.feed.wait_beyond(after, min(due, _CLOSING_CHECK_S))


def _heartbeat(version: int, interval_ms: int, instance: str) -> pb.WatchEvent:
    return pb.WatchEvent(
        data_version=version,
        heartbeat=True,
        sent_at=timestamp(dt.datetime.now(dt.UTC)),
        heartbeat_interval_ms=interval_ms,
        gateway_instance=instance,
    )


def _change_event(
    change: SubjectChange, own: Selection, key: Any, interval_ms: int, instance: str
) -> pb.WatchEvent:
    """The event for ``change``, naming only ``own`` (the caller's recently checked subjects in it), or
    "everything" when the caller forgot subjects early that it may hold answers of."""
    event = pb.WatchEvent(
        data_version=change.data_version,
        sent_at=timestamp(dt.datetime.now(dt.UTC)),
        heartbeat_interval_ms=interval_ms,
        gateway_instance=instance,
    )
    if change.everything or own.unsure:
        event.everything = True
        return event
    for subject in sorted(own.subjects):
        digest = key.copy()
        digest.update(subject.encode())
        event.subject_hashes.append(digest.digest())
    return event


def _event(
    caller: Caller | None,
    request: pb.WatchRequest,
    status: str,
    reason: str,
    *,
    window_s: float = 0.0,
    limit: int = 0,
    error: GatewayError | None = None,
) -> AuditEvent:
    caller_id = caller.caller_id if caller else ""
    named: dict[str, str] = {}
    if error is not None:
        caller_id, named = presented(caller_id, error)
    detail: dict[str, Any] = dict(named)
    if reason:
        detail["reason"] = reason
    if status == "OK":
        detail.update(window_s=window_s, max_streams=limit)
    return AuditEvent(
        kind="watch",
        caller_id=caller_id,
        department=caller.department if caller else "",
        outcome="subscribed" if status == "OK" else "refused",
        status=status,
        data_version=max(0, request.after_version),
        detail=detail,
    )
