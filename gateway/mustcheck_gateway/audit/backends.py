"""The audit log behind one interface, on two backends: the embedded files (``AuditLog``, the default)
and PostgreSQL (``PostgresAuditLog``: every replica's log in the database the deployment shares).

Which one a gateway uses (:func:`audit_store_for`): ``--audit-store URL`` if given (``embedded`` for
the files), else PostgreSQL when the list store is on PostgreSQL, else the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, TypeGuard

from ..crypto.suites import DEFAULT_SUITE_NAME
from ..store.urls import is_postgres_url, redacted
from .audit_log import AuditLog
from .errors import AuditError
from .keys import KeyRing

if TYPE_CHECKING:
    from .postgres_log import PostgresAuditLog

AnyAuditLog: TypeAlias = "AuditLog | PostgresAuditLog"
EMBEDDED = "embedded"


def holds_every_replica(value: object) -> bool:
    """Whether ``value`` is the PostgreSQL audit log, which holds the logs of every replica (checked by its
    ``backend`` attribute, so that callers need not import psycopg)."""
    return getattr(value, "backend", None) == "postgresql"


def is_audit_log(value: object) -> TypeGuard[AnyAuditLog]:
    """Whether ``value`` is an audit log of either backend (not the gateway's stand-in with audit off)."""
    return isinstance(value, AuditLog) or holds_every_replica(value)


def audit_store_for(
    audit_store: str | None, store_url: str | None, suite: str = DEFAULT_SUITE_NAME
) -> str | None:
    """The PostgreSQL URL the audit log goes to, or None for the embedded files. By default the log goes
    where a PostgreSQL store is, for the international suite: the PostgreSQL log has no other suite yet,
    so an ``sm`` deployment keeps its log embedded unless it names a PostgreSQL audit store (refused)."""
    if audit_store is not None:
        if audit_store == EMBEDDED:
            return None
        if not is_postgres_url(audit_store):
            raise AuditError(
                f"unknown audit store {redacted(audit_store)!r}: give a postgresql:// URL or {EMBEDDED!r}"
            )
        return audit_store
    if suite != DEFAULT_SUITE_NAME:
        return None
    return store_url if store_url is not None and is_postgres_url(store_url) else None


def open_postgres_log(
    url: str,
    log_id: str,
    keys: Path | KeyRing,
    *,
    checkpoint_every: int = 1000,
    checkpoint_interval_s: float = 10.0,
    crypto: str | None = None,
) -> PostgresAuditLog:
    """This replica's log (``log_id``) in the PostgreSQL database at ``url``, signed with ``keys`` (a key
    ring the caller loaded, or the directory to load it from).

    The PostgreSQL log is of the international suite only (SHA-256 tree, Ed25519 heads): a key ring or a
    ``crypto`` of another suite is refused, naming it."""
    if isinstance(keys, Path):
        keys = KeyRing.load_or_create(keys, crypto)
    if keys.suite.name != DEFAULT_SUITE_NAME:
        raise AuditError(
            f"the audit log on PostgreSQL supports only the {DEFAULT_SUITE_NAME!r} crypto suite, not "
            f"{keys.suite.name!r}: keep the audit log embedded (--audit-store embedded) for an sm deployment"
        )
    try:
        from .postgres_log import PostgresAuditLog
    except ImportError as error:  # psycopg is an optional dependency
        raise AuditError(
            f"the PostgreSQL audit log needs psycopg ({error}): install mustcheck[postgresql]"
        ) from None
    try:
        import psycopg

        return PostgresAuditLog(
            url,
            log_id,
            keys,
            checkpoint_every=checkpoint_every,
            checkpoint_interval_s=checkpoint_interval_s,
        )
    except psycopg.Error as error:
        raise AuditError(f"cannot open the audit log in PostgreSQL at {redacted(url)}: {error}") from None
