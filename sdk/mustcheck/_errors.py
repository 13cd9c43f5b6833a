"""The SDK's one exception tree. Callers never see a raw ``grpc.RpcError``.

::

    MustCheckError
    ├── InvalidRequest            INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE, FAILED_PRECONDITION
    │   ├── InvalidSubject        the identifier broke an R1 rule (also raised before sending)
    │   └── UnknownMatter         the matter code is not in the query catalog
    ├── AuthenticationFailed      UNAUTHENTICATED
    ├── PermissionDenied          PERMISSION_DENIED
    ├── RateLimited               RESOURCE_EXHAUSTED          (retryable, later)
    └── CheckUnavailable          no trustworthy answer could be had: fail closed (R12)
        ├── GatewayUnreachable    UNAVAILABLE, CANCELLED      (retryable)
        ├── DeadlineExceeded      DEADLINE_EXCEEDED           (retryable)
        └── GatewayFault          INTERNAL, UNKNOWN, DATA_LOSS, UNIMPLEMENTED, …

``CheckUnavailable`` is never a "no record": an approval flow that must check stops
(or escalates to a person) when it sees one. Each error says whether retrying can help.

Every error carries the gateway's reason twice: ``reason``, the dotted code (``grant.purpose``), and
``reason_name``, the name of its ``Reason`` value in proto/mustcheck/v1/reasons.proto
(``REASON_GRANT_PURPOSE``; ``REASON_UNSPECIFIED`` when the gateway gave none or one this SDK lacks).
"""

from __future__ import annotations

from typing import Any

import grpc

from ._reasons import reason_name as _reason_name

REASON_METADATA_KEY = "mustcheck-reason"
REASON_NAME_METADATA_KEY = "mustcheck-reason-name"
RETRY_AFTER_METADATA_KEY = "retry-after-ms"


class MustCheckError(Exception):
    """Root of every error the SDK raises."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        rule: str = "",
        reason_name: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.rule = rule
        self.reason_name = reason_name or _reason_name(reason)


class InvalidRequest(MustCheckError):
    """The request itself is wrong; sending it again will not help."""


class InvalidSubject(InvalidRequest):
    """The identifier broke an R1 rule; ``rule`` names it (e.g. ``uscc.check_character``)."""


class UnknownMatter(InvalidRequest):
    """The matter code is not in the gateway's query catalog."""


class AuthenticationFailed(MustCheckError):
    """Missing, wrong, expired or revoked credentials."""


class PermissionDenied(MustCheckError):
    """The caller's grant does not cover this matter, subject kind or purpose."""


class RateLimited(MustCheckError):
    """The caller's rate limit or quota is exhausted; ``retry_after`` (seconds) says when to retry,
    when the gateway knows (a daily quota has no such advice)."""

    retryable = True
    retry_after: float | None = None


class CheckUnavailable(MustCheckError):
    """No trustworthy answer could be had. Fail closed: never treat this as "no record" (R12)."""


class GatewayUnreachable(CheckUnavailable):
    retryable = True


class DeadlineExceeded(CheckUnavailable):
    retryable = True


class GatewayFault(CheckUnavailable):
    """The gateway failed internally; the message carries a reference for its operators."""


_BY_CODE: dict[grpc.StatusCode, type[MustCheckError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.NOT_FOUND: InvalidRequest,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequest,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidRequest,
    grpc.StatusCode.ALREADY_EXISTS: InvalidRequest,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationFailed,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNAVAILABLE: GatewayUnreachable,
    grpc.StatusCode.CANCELLED: GatewayUnreachable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def error_for(code: grpc.StatusCode, message: str, reason: str = "", reason_name: str = "") -> MustCheckError:
    """The most specific SDK error for a status code and the gateway's reason (``reason_name``: its
    ``Reason`` value's name where the gateway sent it, else derived from ``reason``)."""
    if reason == "matter.unknown":
        cls: type[MustCheckError] = UnknownMatter
    elif reason.startswith(("uscc.", "id.", "subject.")):
        cls = InvalidSubject
    else:
        cls = _BY_CODE.get(code, GatewayFault)
    rule = reason if cls is InvalidSubject else ""
    return cls(message, code=code, reason=reason, rule=rule, reason_name=reason_name)


def from_rpc_error(error: grpc.RpcError) -> MustCheckError:
    """Map a ``grpc.RpcError`` (sync or aio) to the SDK's tree."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or str(code)
    trailers: dict[str, str] = {}
    trailing: Any = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailing or ():
        trailers[key] = value if isinstance(value, str) else bytes(value).decode()
    if code is None:
        code = grpc.StatusCode.UNKNOWN
    mapped = error_for(
        code,
        details,
        trailers.get(REASON_METADATA_KEY, ""),
        trailers.get(REASON_NAME_METADATA_KEY, ""),
    )
    retry_ms = trailers.get(RETRY_AFTER_METADATA_KEY, "")
    if isinstance(mapped, RateLimited) and retry_ms.isdigit():
        mapped.retry_after = int(retry_ms) / 1000
    return mapped


def explain_transport(error: MustCheckError, *, tls: bool, client_certificate: bool) -> MustCheckError:
    """An unreachable gateway's message, saying which side refused when a TLS handshake failed.

    gRPC reports a handshake that failed on this side in OpenSSL's words, and one that the gateway
    ended only as "Socket closed"; neither names the certificate at fault. ``tls`` and
    ``client_certificate`` say how this client connected.
    """
    if not isinstance(error, GatewayUnreachable):
        return error
    details = error.message
    if "WRONG_VERSION_NUMBER" in details:
        why = "TLS failed: the gateway does not speak TLS on this port (it listens in plaintext)"
    elif "handshake failed" in details.lower() and any(
        mark in details for mark in _SERVER_CERTIFICATE_REFUSED
    ):
        why = (
            "TLS failed: this client refused the gateway's certificate — it is not signed by the CA given "
            "(ca= / --ca), or it names another host than the one dialled (server_name= overrides it)"
        )
    elif "Socket closed" in details and tls and not client_certificate:
        why = (
            "TLS failed: the gateway closed the connection during the handshake — it requires a client "
            "certificate (mutual TLS) and none was given (cert= and key= / --cert and --key)"
        )
    elif "Socket closed" in details and tls:
        why = (
            "TLS failed: the gateway closed the connection during the handshake — it refused this client's "
            "certificate (not signed by a CA the gateway trusts, or expired)"
        )
    elif "Socket closed" in details:
        why = "the gateway closed the connection at once: if it uses TLS, connect with its CA (ca= / --ca)"
    else:
        return error
    return type(error)(
        f"{why} ({details})",
        code=error.code,
        reason=error.reason,
        rule=error.rule,
        reason_name=error.reason_name,
    )


# How OpenSSL (BoringSSL) words a server certificate that this side could not verify.
_SERVER_CERTIFICATE_REFUSED = (
    "CERTIFICATE_VERIFY_FAILED",
    "certificate signature failure",
    "BAD_SIGNATURE",
    "unable to get local issuer",
    "self signed certificate",
    "certificate has expired",
    "Hostname verification",
    "Peer name",
)
