"""Who is calling: a bearer token in the ``authorization`` metadata, or the client certificate.

The caller's identity — and so its department — comes only from here, never from a
request field. Failures raise ``Unauthenticated`` with a message that says what is
missing or wrong.

One identity per call: with mutual TLS and a token, the token names the caller, and the certificate
must not name another. A call is refused (``credentials.mismatch``) when the certificate's common
name is mapped to a different caller, or when the token's caller is bound to a certificate identity
(``--tls-identity``) and the call comes with another certificate or with none: a bound caller's token
is not enough alone (as RFC 8705 has it for certificate-bound tokens, so that a stolen token without
its certificate is worthless). A certificate mapped to no caller (a transport certificate) leaves an
unbound token's caller to decide.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import grpc

from ..errors import Unauthenticated
from .model import Caller
from .registry import AuthRegistry
from .tokens import presented_token_id, token_hash, well_formed

AUTHORIZATION_KEY = "authorization"
BEARER = "bearer "


def bearer_token(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == AUTHORIZATION_KEY:
            text = value if isinstance(value, str) else bytes(value).decode()
            if text.lower().startswith(BEARER):
                return text[len(BEARER) :].strip()
            raise Unauthenticated("the authorization metadata must be 'Bearer <token>'")
    return None


def certificate_identity(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The verified client certificate's common name (mutual TLS), if any."""
    names = list(context.auth_context().get("x509_common_name") or ())
    if not names:
        return None
    name = names[0]
    return name.decode() if isinstance(name, bytes) else str(name)


class Authenticator:
    def __init__(self, registry: AuthRegistry, clock: Callable[[], dt.datetime]) -> None:
        self.registry = registry
        self.clock = clock

    def authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        snapshot = self.registry.snapshot()
        token = bearer_token(context)
        if token is not None:
            record = snapshot.tokens_by_hash.get(token_hash(token)) if well_formed(token) else None
            if record is None:
                raise Unauthenticated(
                    "the bearer token is not known to this gateway",
                    reason="token.unknown",
                    token_id=presented_token_id(token),
                )
            presented = {"caller_id": record.caller_id, "token_id": record.token_id}
            if record.revoked_at is not None:
                raise Unauthenticated(
                    f"token {record.token_id} was revoked", reason="token.revoked", **presented
                )
            if not record.active_at(self.clock()):
                raise Unauthenticated(
                    f"token {record.token_id} expired at {record.expires_at.isoformat()}",
                    reason="token.expired",
                    **presented,
                )
            caller = snapshot.callers.get(record.caller_id)
            if caller is not None:
                identity = certificate_identity(context)
                if identity is not None or caller.tls_identity:
                    certified = None if identity is None else snapshot.by_tls_identity.get(identity)
                    _same_caller(caller, identity, certified, record.token_id)
        else:
            identity = certificate_identity(context)
            if identity is None:
                raise Unauthenticated(
                    "no credentials: send 'authorization: Bearer <token>' "
                    "or connect with a client certificate",
                    reason="credentials.missing",
                )
            caller = snapshot.by_tls_identity.get(identity)
            if caller is None:
                raise Unauthenticated(
                    f"client certificate {identity!r} is not mapped to a caller", reason="certificate.unknown"
                )
        if caller is None:
            raise Unauthenticated("the token's caller no longer exists", reason="caller.unknown")
        if caller.disabled:
            raise Unauthenticated(
                f"caller {caller.caller_id} is disabled", reason="caller.disabled", caller_id=caller.caller_id
            )
        return caller


def _same_caller(caller: Caller, identity: str | None, certified: Caller | None, token_id: str) -> None:
    """Refuse a call whose certificate (common name ``identity``, mapped to ``certified``; None: no
    client certificate) names another caller than its token (``caller``, token ``token_id``), or whose
    token's caller is bound to a certificate the call did not present. The refusal is audited with the
    token's caller and token id (the certificate's identity is in the message)."""
    presented = {"caller_id": caller.caller_id, "token_id": token_id}
    if certified is not None and certified.caller_id != caller.caller_id:
        raise Unauthenticated(
            f"the client certificate (caller {certified.caller_id}) and the bearer token (caller "
            f"{caller.caller_id}) name different callers",
            reason="credentials.mismatch",
            **presented,
        )
    if caller.tls_identity and identity is None:
        raise Unauthenticated(
            f"caller {caller.caller_id} is bound to a client certificate, and this call presented none: "
            "its token alone is not enough (connect with mutual TLS and its certificate)",
            reason="credentials.mismatch",
            **presented,
        )
    if caller.tls_identity and caller.tls_identity != identity:
        raise Unauthenticated(
            f"caller {caller.caller_id} is bound to another client certificate than this one",
            reason="credentials.mismatch",
            **presented,
        )
