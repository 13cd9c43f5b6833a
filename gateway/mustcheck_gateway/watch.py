"""The ``Watch`` stream: each data version's touched subjects, as keyed hashes, and heartbeats.

A subscriber chooses its own hash key, so the stream never carries a raw identifier and only the
subscriber can match a hash against the subjects it holds. Every subscription is audited, refused
or not.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import grpc

from mustcheck._generated.v1 import check_pb2 as pb

from .audit import AuditEvent
from .auth.access import AccessControl
from .auth.model import Caller
from .change_feed import ChangeFeed
from .errors import GatewayError, InvalidArgument
from .responses import timestamp
from .service import AuditSink
from .store.changes import SubjectChange

Context = grpc.aio.ServicerContext[Any, Any]
MIN_HASH_KEY, MAX_HASH_KEY = 16, 64
# Beyond this many subjects in one version an event says "everything" instead of listing them.
MAX_LISTED_SUBJECTS = 10_000
DEFAULT_HEARTBEAT_S = 1.0
_PAGE = 100
# How often an idle stream looks whether the gateway is stopping.
_CLOSING_CHECK_S = 0.25


class WatchStreams:
    def __init__(
        self,
        feed: ChangeFeed,
        access: AccessControl,
        audit: AuditSink,
        *,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    ) -> None:
        self.feed = feed
        self.access = access
        self.audit = audit
        self.heartbeat_s = heartbeat_s
        self.subscribers = 0
        self._closing = False

    def close(self) -> None:
        """End every stream at its next wake-up (the gateway is stopping; subscribers reconnect)."""
        self._closing = True

    async def stream(self, request: pb.WatchRequest, context: Context) -> AsyncIterator[pb.WatchEvent]:
        caller: Caller | None = None
        try:
            caller = self.access.caller(context)
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
                await self.audit.append(_event(caller, request, error.status.name, error.reason))
            raise
        await self.audit.append(_event(caller, request, "OK", ""))
        self.subscribers += 1
        try:
            async for event in self._events(request):
                yield event
        finally:
            self.subscribers -= 1

    async def _events(self, request: pb.WatchRequest) -> AsyncIterator[pb.WatchEvent]:
        current = self.feed.catch_up()
        after = request.after_version if request.HasField("after_version") else current
        interval_ms = round(self.heartbeat_s * 1000)
        if after > current:  # a version this store never had (another store, a restore): start over
            yield pb.WatchEvent(data_version=current, everything=True, heartbeat_interval_ms=interval_ms)
            after = current
        else:  # the hello: where the stream starts
            yield _heartbeat(after, interval_ms)
        key = hmac.new(request.hash_key, digestmod=hashlib.sha256)
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        while not self._closing:
            seen = self.feed.version  # before reading: every change up to it is visible to the read
            # The store is read only once the feed has seen it move: an idle stream costs it nothing.
            changes = self.feed.store.subject_changes(after, limit=_PAGE) if seen > after else []
            for change in changes:
                yield _change_event(change, key, interval_ms)
                after = change.data_version
            if changes:
                last_sent = loop.time()
                continue
            after = max(after, seen)  # versions that touched no subject
            due = last_sent + self.heartbeat_s - loop.time()
            if due <= 0:
                yield _heartbeat(after, interval_ms)
                last_sent = loop.time()
                continue
            await self.feed.wait_beyond(after, min(due, _CLOSING_CHECK_S))


def _heartbeat(version: int, interval_ms: int) -> pb.WatchEvent:
    return pb.WatchEvent(
        data_version=version,
        heartbeat=True,
        sent_at=timestamp(dt.datetime.now(dt.UTC)),
        heartbeat_interval_ms=interval_ms,
    )


def _change_event(change: SubjectChange, key: Any, interval_ms: int) -> pb.WatchEvent:
    event = pb.WatchEvent(
        data_version=change.data_version,
        sent_at=timestamp(dt.datetime.now(dt.UTC)),
        heartbeat_interval_ms=interval_ms,
    )
    if change.everything or len(change.subjects) > MAX_LISTED_SUBJECTS:
        event.everything = True
        return event
    for subject in sorted(change.subjects):
        digest = key.copy()
        digest.update(subject.encode())
        event.subject_hashes.append(digest.digest())
    return event


def _event(caller: Caller | None, request: pb.WatchRequest, status: str, reason: str) -> AuditEvent:
    return AuditEvent(
        kind="watch",
        caller_id=caller.caller_id if caller else "",
        department=caller.department if caller else "",
        outcome="subscribed" if status == "OK" else "refused",
        status=status,
        data_version=max(0, request.after_version),
        detail={"reason": reason} if reason else {},
    )
