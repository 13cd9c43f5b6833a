"""The admin gRPC service: callers, grants and tokens (admin role only).

Every change is audited before it is applied and answered, and is visible to every
check within one second (the registry follows the store's auth version).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from mustcheck._generated.v1 import admin_pb2 as pb
from mustcheck._generated.v1 import admin_pb2_grpc as pb_grpc
from mustcheck.identifiers import SubjectKind

from .audit import AuditEvent
from .auth.access import AccessControl
from .auth.codec import grant_fields
from .auth.model import (
    ALL_MATTERS,
    DEFAULT_WATCH_STREAMS,
    MATTER_KIND_PREFIX,
    MAX_WATCH_STREAMS,
    ROLE_ADMIN,
    ROLES,
    VISIBLE_FIELDS,
    Caller,
    Grant,
    TokenRecord,
)
from .auth.tokens import new_token, token_hash
from .checks import Clock
from .errors import InvalidArgument, NotFound, echo
from .policy.model import PolicySet
from .responses import timestamp
from .service import AuditSink
from .store.base import ListStore, StoreError

Context = grpc.aio.ServicerContext[Any, Any]
DEFAULT_TOKEN_TTL = dt.timedelta(days=90)
MAX_TOKEN_TTL = dt.timedelta(days=366)


def caller_message(caller: Caller, has_grant: bool) -> pb.CallerInfo:
    message = pb.CallerInfo(
        caller_id=caller.caller_id,
        name=caller.name,
        department=caller.department,
        roles=sorted(caller.roles),
        tls_identity=caller.tls_identity,
        disabled=caller.disabled,
        has_grant=has_grant,
    )
    if caller.created_at:
        message.created_at.CopyFrom(timestamp(caller.created_at))
    return message


def grant_message(grant: Grant | None, caller_id: str) -> pb.Grant:
    if grant is None:
        return pb.Grant(caller_id=caller_id, active=False)
    message = pb.Grant(
        caller_id=grant.caller_id,
        matters=list(grant.matters),
        subject_kinds=sorted(kind.value for kind in grant.subject_kinds),
        visible_fields=sorted(grant.visible_fields),
        purpose_required=grant.purpose_required,
        authorization_ref_required_for_persons=grant.authorization_ref_required_for_persons,
        rate_per_second=grant.rate_per_second,
        burst=grant.burst,
        daily_person_quota=grant.daily_person_quota,
        max_watch_streams=grant.max_watch_streams,
        active=True,
    )
    if grant.valid_from:
        message.valid_from.CopyFrom(timestamp(grant.valid_from))
    if grant.valid_until:
        message.valid_until.CopyFrom(timestamp(grant.valid_until))
    return message


def token_message(token: TokenRecord, at: dt.datetime) -> pb.TokenInfo:
    message = pb.TokenInfo(
        token_id=token.token_id,
        caller_id=token.caller_id,
        label=token.label,
        created_at=timestamp(token.created_at),
        expires_at=timestamp(token.expires_at),
        active=token.active_at(at),
    )
    if token.revoked_at:
        message.revoked_at.CopyFrom(timestamp(token.revoked_at))
    return message


def _instant(stamp: Timestamp, present: bool) -> dt.datetime | None:
    return stamp.ToDatetime(tzinfo=dt.UTC) if present else None


class AdminService(pb_grpc.AdminServiceServicer):
    def __init__(
        self, store: ListStore, policy: PolicySet, access: AccessControl, audit: AuditSink, clock: Clock
    ) -> None:
        self.store = store
        self.policy = policy
        self.access = access
        self.audit = audit
        self.clock = clock

    # -- helpers -----------------------------------------------------------------------

    async def _admin(self, context: Context) -> Caller:
        """The authenticated admin making this call; anyone else is refused. Every refusal of this
        service, here or later in a handler, is audited by :class:`~.refusals.RefusalAudit`."""
        caller = self.access.caller(context)
        self.access.require_role(caller, ROLE_ADMIN)
        return caller

    async def _record(self, caller: Caller, action: str, target: str, change: dict[str, Any]) -> None:
        """Audit a change before applying it: an unaudited change is worse than an unapplied one."""
        await self.audit.append(
            AuditEvent(
                kind="admin",
                caller_id=caller.caller_id,
                department=caller.department,
                outcome="changed",
                detail={"action": action, "target": target, "change": change},
            )
        )

    def _snapshot_caller(self, caller_id: str) -> Caller:
        caller = self.access.registry.snapshot().callers.get(caller_id)
        if caller is None:
            raise NotFound(f"no caller {echo(caller_id)}", reason="caller.unknown")
        return caller

    def _applied(self) -> None:
        self.access.registry.invalidate()

    # -- callers -----------------------------------------------------------------------

    async def CreateCaller(self, request: pb.CreateCallerRequest, context: Context) -> pb.CallerInfo:
        admin = await self._admin(context)
        caller = self._validated_caller(request)
        await self._record(
            admin,
            "callers.add",
            caller.caller_id,
            {
                "department": caller.department,
                "roles": sorted(caller.roles),
                "tls_identity": caller.tls_identity,
            },
        )
        self.store.put_caller(caller)
        self._applied()
        return caller_message(caller, has_grant=False)

    def _validated_caller(self, request: pb.CreateCallerRequest) -> Caller:
        caller_id = request.caller_id.strip()
        if not caller_id or not caller_id.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise InvalidArgument("caller_id must be letters, digits, '-', '_' or '.'", reason="caller.id")
        snapshot = self.access.registry.snapshot()
        if caller_id in snapshot.callers:
            raise InvalidArgument(f"caller {echo(caller_id)} already exists", reason="caller.exists")
        if request.department not in self.policy.departments:
            known = ", ".join(sorted(self.policy.departments))
            raise InvalidArgument(
                f"unknown department {echo(request.department)}; known: {known}", reason="caller.department"
            )
        unknown = sorted(set(request.roles) - ROLES)
        if unknown:
            raise InvalidArgument(
                f"unknown role(s) {', '.join(echo(role) for role in unknown[:5])}; "
                f"known: {', '.join(sorted(ROLES))}",
                reason="caller.roles",
            )
        identity = request.tls_identity.strip()
        if identity and identity in snapshot.by_tls_identity:
            raise InvalidArgument(
                f"certificate identity {echo(identity)} already maps to a caller",
                reason="caller.tls_identity",
            )
        return Caller(
            caller_id=caller_id,
            name=request.name.strip() or caller_id,
            department=request.department,
            roles=frozenset(request.roles),
            tls_identity=identity,
            created_at=self.clock(),
        )

    async def DisableCaller(self, request: pb.CallerRef, context: Context) -> pb.CallerInfo:
        admin = await self._admin(context)
        caller = replace(self._snapshot_caller(request.caller_id), disabled=True)
        await self._record(admin, "callers.disable", caller.caller_id, {"disabled": True})
        self.store.put_caller(caller)
        self._applied()
        return caller_message(caller, caller.caller_id in self.access.registry.snapshot().grants)

    async def GetCaller(self, request: pb.CallerRef, context: Context) -> pb.CallerInfo:
        await self._admin(context)
        caller = self._snapshot_caller(request.caller_id)
        return caller_message(caller, caller.caller_id in self.access.registry.snapshot().grants)

    async def ListCallers(self, request: pb.ListCallersRequest, context: Context) -> pb.ListCallersResponse:
        await self._admin(context)
        snapshot = self.access.registry.snapshot()
        return pb.ListCallersResponse(
            callers=[
                caller_message(caller, caller.caller_id in snapshot.grants)
                for caller in snapshot.callers.values()
                if request.include_disabled or not caller.disabled
            ]
        )

    # -- grants ------------------------------------------------------------------------

    async def SetGrant(self, request: pb.SetGrantRequest, context: Context) -> pb.Grant:
        admin = await self._admin(context)
        grant = self._validated_grant(request.grant)
        message = grant_message(grant, grant.caller_id)
        await self._record(
            admin,
            "grants.set",
            grant.caller_id,
            grant_fields(grant),
        )
        self.store.put_grant(grant)
        self._applied()
        return message

    def _validated_grant(self, message: pb.Grant) -> Grant:
        caller = self._snapshot_caller(message.caller_id)
        for matter in message.matters:
            if matter == ALL_MATTERS or matter in self.policy.matters:
                continue
            if (
                matter.startswith(MATTER_KIND_PREFIX)
                and matter[len(MATTER_KIND_PREFIX) :] in self.policy.matter_kinds
            ):
                continue
            raise InvalidArgument(
                f"unknown matter {echo(matter)}: use a catalog code, 'kind:<matter kind>' or '*'",
                reason="grant.matters",
            )
        if not message.matters:
            raise InvalidArgument("a grant needs at least one matter", reason="grant.matters")
        try:
            kinds = frozenset(SubjectKind(kind) for kind in message.subject_kinds)
        except ValueError:
            raise InvalidArgument(
                "subject kinds are organization and person", reason="grant.subject_kinds"
            ) from None
        if not kinds:
            raise InvalidArgument("a grant needs at least one subject kind", reason="grant.subject_kinds")
        unknown_fields = sorted(set(message.visible_fields) - VISIBLE_FIELDS)
        if unknown_fields:
            raise InvalidArgument(
                f"unknown visible field(s) {', '.join(echo(f) for f in unknown_fields[:5])}; known: "
                f"{', '.join(sorted(VISIBLE_FIELDS))}",
                reason="grant.visible_fields",
            )
        # NaN compares false with everything, so "rate <= 0" alone lets it (and infinity) through;
        # JSON spells them "NaN" and "Infinity".
        if not (math.isfinite(message.rate_per_second) and message.rate_per_second > 0) or message.burst < 1:
            raise InvalidArgument(
                "rate_per_second must be a positive finite number and burst at least 1", reason="grant.rate"
            )
        if message.daily_person_quota < 0:
            raise InvalidArgument("daily_person_quota cannot be negative", reason="grant.quota")
        if not 0 <= message.max_watch_streams <= MAX_WATCH_STREAMS:
            raise InvalidArgument(
                f"max_watch_streams must be 0 (the default, {DEFAULT_WATCH_STREAMS}) to {MAX_WATCH_STREAMS}",
                reason="grant.watch_streams",
            )
        valid_from = _instant(message.valid_from, message.HasField("valid_from"))
        valid_until = _instant(message.valid_until, message.HasField("valid_until"))
        if valid_from and valid_until and valid_until <= valid_from:
            raise InvalidArgument("valid_until must be after valid_from", reason="grant.validity")
        return Grant(
            caller_id=caller.caller_id,
            matters=tuple(dict.fromkeys(message.matters)),
            subject_kinds=kinds,
            visible_fields=frozenset(message.visible_fields),
            purpose_required=message.purpose_required,
            authorization_ref_required_for_persons=message.authorization_ref_required_for_persons,
            rate_per_second=message.rate_per_second,
            burst=message.burst,
            daily_person_quota=message.daily_person_quota,
            max_watch_streams=message.max_watch_streams or DEFAULT_WATCH_STREAMS,
            valid_from=valid_from,
            valid_until=valid_until,
        )

    async def RevokeGrant(self, request: pb.CallerRef, context: Context) -> pb.Grant:
        admin = await self._admin(context)
        caller = self._snapshot_caller(request.caller_id)
        await self._record(admin, "grants.revoke", caller.caller_id, {})
        self.store.delete_grant(caller.caller_id)
        self._applied()
        return grant_message(None, caller.caller_id)

    async def GetGrant(self, request: pb.CallerRef, context: Context) -> pb.Grant:
        await self._admin(context)
        caller = self._snapshot_caller(request.caller_id)
        return grant_message(self.access.registry.snapshot().grants.get(caller.caller_id), caller.caller_id)

    # -- tokens ------------------------------------------------------------------------

    async def IssueToken(self, request: pb.IssueTokenRequest, context: Context) -> pb.IssuedToken:
        admin = await self._admin(context)
        caller = self._snapshot_caller(request.caller_id)
        ttl = dt.timedelta(seconds=request.ttl_seconds) if request.ttl_seconds else DEFAULT_TOKEN_TTL
        if ttl <= dt.timedelta(0) or ttl > MAX_TOKEN_TTL:
            raise InvalidArgument(
                f"ttl_seconds must be between 1 and {int(MAX_TOKEN_TTL.total_seconds())}", reason="token.ttl"
            )
        token, record = issue_token(caller.caller_id, ttl, request.label, self.clock())
        await self._record(
            admin,
            "tokens.issue",
            caller.caller_id,
            {
                "token_id": record.token_id,
                "expires_at": record.expires_at.isoformat(),
                "label": record.label,
            },
        )
        self.store.put_token(record)
        self._applied()
        return pb.IssuedToken(token=token, info=token_message(record, self.clock()))

    async def RevokeToken(self, request: pb.RevokeTokenRequest, context: Context) -> pb.TokenInfo:
        admin = await self._admin(context)
        known = {token.token_id for token in self.access.registry.snapshot().tokens}
        if request.token_id not in known:
            raise NotFound(f"no token {echo(request.token_id)}", reason="token.unknown")
        await self._record(admin, "tokens.revoke", request.token_id, {})
        try:
            record = self.store.revoke_token(request.token_id, self.clock())
        except StoreError as error:
            raise NotFound(str(error), reason="token.unknown") from None
        self._applied()
        return token_message(record, self.clock())

    async def ListTokens(self, request: pb.ListTokensRequest, context: Context) -> pb.ListTokensResponse:
        await self._admin(context)
        at = self.clock()
        return pb.ListTokensResponse(
            tokens=[
                token_message(token, at)
                for token in self.access.registry.snapshot().tokens
                if not request.caller_id or token.caller_id == request.caller_id
            ]
        )


def issue_token(caller_id: str, ttl: dt.timedelta, label: str, at: dt.datetime) -> tuple[str, TokenRecord]:
    token, token_id = new_token()
    record = TokenRecord(
        token_id=token_id,
        caller_id=caller_id,
        token_hash=token_hash(token),
        created_at=at,
        expires_at=at + ttl,
        label=label.strip(),
    )
    return token, record
