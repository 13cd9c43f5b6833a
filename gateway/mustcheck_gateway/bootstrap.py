"""First start: an empty store gets its first admin caller, whose token goes to a 0600 file."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from .admin_service import issue_token
from .audit import AuditEvent
from .auth.model import ROLE_ADMIN, Caller
from .service import AuditSink
from .store.base import ListStore

ADMIN_CALLER = "admin"
ADMIN_TOKEN_FILE = "admin.token"
BOOTSTRAP_TOKEN_TTL = dt.timedelta(days=366)


def write_secret(path: Path, secret: str) -> None:
    """Write a secret readable by its owner only (created 0600, never briefly wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")
    os.chmod(path, 0o600)


async def bootstrap_admin(
    store: ListStore, audit: AuditSink, data_dir: Path, department: str, at: dt.datetime
) -> Path | None:
    """Create the first admin and its token when the store has no caller; return the token file.

    The change is audited before it is made. Of gateways starting together on one empty store, one makes
    it (the store decides, in one transaction); the others audit that they withdrew and return None.
    """
    if store.load_auth().callers:
        return None
    caller = Caller(
        ADMIN_CALLER, department, name="first administrator", roles=frozenset({ROLE_ADMIN}), created_at=at
    )
    token, record = issue_token(caller.caller_id, BOOTSTRAP_TOKEN_TTL, "bootstrap", at)
    detail = {"action": "bootstrap", "target": caller.caller_id, "change": {"token_id": record.token_id}}
    await audit.append(AuditEvent(kind="admin", caller_id="gateway", outcome="changed", detail=detail))
    if not store.put_first_caller(caller, record):
        withdrawn = {**detail, "reason": "bootstrap.already_done"}  # another gateway was first
        await audit.append(
            AuditEvent(kind="admin", caller_id="gateway", outcome="withdrawn", detail=withdrawn)
        )
        return None
    path = data_dir / ADMIN_TOKEN_FILE
    write_secret(path, token)
    return path
