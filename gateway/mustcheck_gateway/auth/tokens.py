"""Bearer tokens: 256 bits from the OS's random source, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_PREFIX = "mct"
_TOKEN_SHAPE = re.compile(r"^mct_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def new_token() -> tuple[str, str]:
    """A fresh token and its id: ``mct_<id>_<secret>``; the secret carries 256 random bits."""
    token_id = secrets.token_hex(6)
    return f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}", token_id


def token_hash(token: str) -> str:
    """What the store keeps. A 256-bit random secret needs no slow hash: SHA-256 suffices."""
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str) -> bool:
    return _TOKEN_SHAPE.match(token) is not None


def presented_token_id(token: str) -> str:
    """The id part of a well-formed token (never its secret), or "" (what an audit record may name)."""
    match = _TOKEN_SHAPE.match(token)
    return match.group(1) if match else ""
