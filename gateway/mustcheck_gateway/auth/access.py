"""Access control for one check, step by step: who, which grant, how fast, which subject (R8)."""

from __future__ import annotations

import datetime as dt
import math
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

    def subject(
        self, caller: Caller, grant: Grant, subject: ValidSubject, authorization_ref: str, at: dt.datetime
    ) -> None:
        check_subject(caller, grant, subject.kind, authorization_ref)
        if subject.kind is SubjectKind.PERSON and not self.person_quota.take(
            caller.caller_id, at, grant.daily_person_quota
        ):
            raise ResourceExhausted(
                f"caller {caller.caller_id} has used its daily quota of "
                f"{grant.daily_person_quota} person lookups",
                reason="quota.persons",
            )
