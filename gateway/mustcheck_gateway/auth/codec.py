"""Callers, grants and tokens to and from the values the store keeps (grants as JSON documents)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from mustcheck.identifiers import SubjectKind

from ..store.codec import format_instant, parse_instant
from .model import DEFAULT_WATCH_STREAMS, Caller, Grant, TokenRecord

CALLER_COLUMNS = ("caller_id", "name", "department", "roles", "tls_identity", "disabled", "created_at")
TOKEN_COLUMNS = ("token_id", "caller_id", "token_hash", "label", "created_at", "expires_at", "revoked_at")


def _instant(value: dt.datetime | None) -> str | None:
    return None if value is None else format_instant(value)


def _parsed(value: str | None) -> dt.datetime | None:
    return None if value is None else parse_instant(value)


def caller_values(caller: Caller) -> tuple[Any, ...]:
    return (
        caller.caller_id,
        caller.name,
        caller.department,
        ",".join(sorted(caller.roles)),
        caller.tls_identity or None,
        int(caller.disabled),
        _instant(caller.created_at),
    )


def caller_from_values(values: Sequence[Any]) -> Caller:
    caller_id, name, department, roles, tls_identity, disabled, created_at = values
    return Caller(
        caller_id=caller_id,
        name=name,
        department=department,
        roles=frozenset(role for role in roles.split(",") if role),
        tls_identity=tls_identity or "",
        disabled=bool(disabled),
        created_at=_parsed(created_at),
    )


def grant_fields(grant: Grant) -> dict[str, Any]:
    """Everything a grant says but its caller, as JSON values (stored, and recorded when it changes)."""
    return {
        "matters": list(grant.matters),
        "subject_kinds": sorted(kind.value for kind in grant.subject_kinds),
        "visible_fields": sorted(grant.visible_fields),
        "purpose_required": grant.purpose_required,
        "authorization_ref_required_for_persons": grant.authorization_ref_required_for_persons,
        "rate_per_second": grant.rate_per_second,
        "burst": grant.burst,
        "daily_person_quota": grant.daily_person_quota,
        "max_watch_streams": grant.max_watch_streams,
        "valid_from": _instant(grant.valid_from),
        "valid_until": _instant(grant.valid_until),
    }


def grant_to_json(grant: Grant) -> str:
    return json.dumps(grant_fields(grant), sort_keys=True)


def grant_from_json(caller_id: str, text: str) -> Grant:
    data = json.loads(text)
    return Grant(
        caller_id=caller_id,
        matters=tuple(data["matters"]),
        subject_kinds=frozenset(SubjectKind(kind) for kind in data["subject_kinds"]),
        visible_fields=frozenset(data["visible_fields"]),
        purpose_required=bool(data["purpose_required"]),
        authorization_ref_required_for_persons=bool(data["authorization_ref_required_for_persons"]),
        rate_per_second=float(data["rate_per_second"]),
        burst=int(data["burst"]),
        daily_person_quota=int(data["daily_person_quota"]),
        # Grants stored before the bound existed get the default.
        max_watch_streams=int(data.get("max_watch_streams", DEFAULT_WATCH_STREAMS)),
        valid_from=_parsed(data["valid_from"]),
        valid_until=_parsed(data["valid_until"]),
    )


def token_values(token: TokenRecord) -> tuple[Any, ...]:
    return (
        token.token_id,
        token.caller_id,
        token.token_hash,
        token.label,
        format_instant(token.created_at),
        format_instant(token.expires_at),
        _instant(token.revoked_at),
    )


def token_from_values(values: Sequence[Any]) -> TokenRecord:
    token_id, caller_id, token_hash, label, created_at, expires_at, revoked_at = values
    return TokenRecord(
        token_id=token_id,
        caller_id=caller_id,
        token_hash=token_hash,
        label=label,
        created_at=parse_instant(created_at),
        expires_at=parse_instant(expires_at),
        revoked_at=_parsed(revoked_at),
    )
