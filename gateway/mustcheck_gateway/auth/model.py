"""Callers, their grants and their tokens (R8): who may check what, and how they prove who they are."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from mustcheck.identifiers import SubjectKind

from ..masking import MASKABLE_FIELDS
from ..policy.model import Matter

ROLE_ADMIN = "admin"
ROLE_AUDITOR = "auditor"
ROLE_REVEAL = "reveal"
ROLES = frozenset({ROLE_ADMIN, ROLE_AUDITOR, ROLE_REVEAL})
ALL_MATTERS = "*"
# Watch streams a caller may hold open at once unless its grant says otherwise.
DEFAULT_WATCH_STREAMS = 4
MAX_WATCH_STREAMS = 64
MATTER_KIND_PREFIX = "kind:"
VISIBLE_FIELDS = MASKABLE_FIELDS


@dataclass(frozen=True, slots=True)
class Caller:
    """A calling system. Its department decides the measures it implements (R2)."""

    caller_id: str
    department: str
    name: str = ""
    roles: frozenset[str] = field(default_factory=frozenset)
    tls_identity: str = ""
    disabled: bool = False
    created_at: dt.datetime | None = None

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True, slots=True)
class Grant:
    """What one caller may check, field by field (R8, R9)."""

    caller_id: str
    matters: tuple[str, ...] = ()
    subject_kinds: frozenset[SubjectKind] = frozenset({SubjectKind.ORGANIZATION})
    visible_fields: frozenset[str] = frozenset()
    purpose_required: bool = True
    authorization_ref_required_for_persons: bool = True
    rate_per_second: float = 50.0
    burst: int = 100
    daily_person_quota: int = 0
    max_watch_streams: int = DEFAULT_WATCH_STREAMS
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None

    def covers_matter(self, matter: Matter) -> bool:
        for granted in self.matters:
            if granted == ALL_MATTERS or granted == matter.code:
                return True
            if (
                granted.startswith(MATTER_KIND_PREFIX)
                and granted[len(MATTER_KIND_PREFIX) :] in matter.matter_kinds
            ):
                return True
        return False

    def valid_at(self, at: dt.datetime) -> bool:
        if self.valid_from is not None and at < self.valid_from:
            return False
        return self.valid_until is None or at < self.valid_until


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A bearer token as stored: only its SHA-256 hash, never the token."""

    token_id: str
    caller_id: str
    token_hash: str
    created_at: dt.datetime
    expires_at: dt.datetime
    label: str = ""
    revoked_at: dt.datetime | None = None

    def active_at(self, at: dt.datetime) -> bool:
        return self.revoked_at is None and at < self.expires_at
