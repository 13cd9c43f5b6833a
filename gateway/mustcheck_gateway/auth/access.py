"""Access control for one check, step by step: who, which grant, how fast, which subject (R8)."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import grpc

from mustcheck.identifiers import SubjectKind, ValidSubject

from ..errors import AuthThrottled, PermissionDenied, ResourceExhausted, Unauthenticated
from ..policy.model import Matter
from .authenticate import Authenticator
from .authorize import check_subject, grant_for_matter
from .model import Caller, Grant
from .peers import FailedAuthLimit, PeerThrottle, peer_address
from .ratelimit import Limiter, PersonQuota, Quota, RateLimiter
from .registry import AuthRegistry


class AccessControl:
    def __init__(
        self,
        registry: AuthRegistry,
        authenticator: Authenticator,
        failed_auth_limit: FailedAuthLimit | None = None,
        *,
        limiter: Limiter | None = None,
        person_quota: Quota | None = None,
    ) -> None:
        """``limiter``, ``person_quota``: where rate limits and person lookups are counted (default: in
        this process)."""
        self.registry = registry
        self.authenticator = authenticator
        self.limiter: Limiter = limiter or RateLimiter()
        self.person_quota: Quota = person_quota or PersonQuota()
        self.peers = PeerThrottle(failed_auth_limit)

    def caller(self, context: grpc.aio.ServicerContext[Any, Any], *, items: int = 1) -> Caller:
        """The authenticated caller. A failure counts against the peer (``items``: the queries the
        request carries); past the peer's allowance it is refused with :class:`AuthThrottled`."""
        try:
            return self.authenticator.authenticate(context)
        except Unauthenticated as error:
            wait = self.peers.failed(peer_address(context.peer() or ""), error.reason, items)
            if wait:
                raise AuthThrottled(
                    "too many failed authentications from this address: "
                    f"retry after {wait:.0f} s with valid credentials",
                    retry_after_s=wait,
                ) from None
            raise

    def require_role(self, caller: Caller, role: str) -> None:
        if not caller.has_role(role):
            raise PermissionDenied(
                f"caller {caller.caller_id} does not hold the {role} role", reason=f"role.{role}"
            )

    def grant(self, caller: Caller, matter: Matter, purpose: str, at: dt.datetime) -> Grant:
        return grant_for_matter(
            caller, self.registry.snapshot().grants.get(caller.caller_id), matter, purpose, at
        )

    def throttle(self, caller: Caller, grant: Grant, count: int = 1) -> None:
        wait = self.limiter.take(caller.caller_id, grant.rate_per_second, grant.burst, count)
        if wait > 0:
            advice = "never within this grant" if math.isinf(wait) else f"retry after {wait:.3f} s"
            raise ResourceExhausted(
                f"caller {caller.caller_id} is over its rate limit of {grant.rate_per_second:g}/s "
                f"(burst {grant.burst}): {advice}",
                reason="rate_limited",
                retry_after_s=None if math.isinf(wait) else wait,
            )

    @property
    def quota_blocks(self) -> bool:
        """Whether counting a person lookup waits on I/O (the store counts: a round trip to PostgreSQL),
        so that the gateway counts it off its event loop (:meth:`subject_counted`, :meth:`take_persons`)."""
        return bool(getattr(self.person_quota, "blocks", False))

    def subject(
        self,
        caller: Caller,
        grant: Grant,
        subject: ValidSubject,
        authorization_ref: str,
        at: dt.datetime,
        *,
        count: bool = True,
    ) -> bool:
        """Refuse a subject the grant does not allow, or a person lookup over the daily quota. Returns
        whether a person lookup is still to be counted (``count`` False: the caller counts it, with
        :meth:`take_persons`)."""
        check_subject(caller, grant, subject.kind, authorization_ref)
        if subject.kind is not SubjectKind.PERSON:
            return False
        if not count:
            return True
        if not self.person_quota.take(caller.caller_id, at, grant.daily_person_quota):
            raise self.over_quota(caller, grant)
        return False

    async def subject_counted(
        self, caller: Caller, grant: Grant, subject: ValidSubject, authorization_ref: str, at: dt.datetime
    ) -> None:
        """:meth:`subject` on the event loop, with a blocking count taken in the loop's executor."""
        uncounted = self.subject(caller, grant, subject, authorization_ref, at, count=not self.quota_blocks)
        if uncounted and not (await self.take_persons(caller, grant, at, 1))[0]:
            raise self.over_quota(caller, grant)

    async def take_persons(self, caller: Caller, grant: Grant, at: dt.datetime, count: int) -> Sequence[bool]:
        """Count ``count`` person lookups of ``caller`` in order, in the loop's executor (one hop for
        them all): whether each was allowed. Once one is refused, so are the rest (the same day)."""

        def take() -> list[bool]:
            taken: list[bool] = []
            for _ in range(count):
                if not self.person_quota.take(caller.caller_id, at, grant.daily_person_quota):
                    break
                taken.append(True)
            return taken + [False] * (count - len(taken))

        return await asyncio.get_running_loop().run_in_executor(None, take)

    @staticmethod
    def over_quota(caller: Caller, grant: Grant) -> ResourceExhausted:
        return ResourceExhausted(
            f"caller {caller.caller_id} has used its daily quota of "
            f"{grant.daily_person_quota} person lookups",
            reason="quota.persons",
        )
