"""Domain exceptions of the gateway; each carries the gRPC status it maps to.

Handlers raise these; one interceptor (``interceptors.ErrorMapping``) turns them
into a status, a message and a machine-readable reason in the trailing metadata:
``mustcheck-reason`` the dotted code (``grant.purpose``), ``mustcheck-reason-name`` the name of its
``Reason`` value in proto/mustcheck/v1/reasons.proto (``REASON_GRANT_PURPOSE``, :func:`reason_name`).
Every reason raised here must have a value there (tests/test_reasons.py scans the code for them).
Nothing else calls ``context.abort``.
"""

from __future__ import annotations

import grpc

from mustcheck._generated.v1 import reasons_pb2
from mustcheck._reasons import reason_name as _reason_name

REASON_METADATA_KEY = "mustcheck-reason"
REASON_NAME_METADATA_KEY = "mustcheck-reason-name"
# An error message quotes at most this many characters of a request's input (``echo``), and is never
# longer than MAX_MESSAGE in all: a 1 MB field cannot make a 1 MB reply.
MAX_ECHO = 64
MAX_MESSAGE = 512


def reason_name(code: str) -> str:
    """The ``Reason`` enum value name of a dotted reason code (``grant.purpose`` ->
    ``REASON_GRANT_PURPOSE``; ``purpose.too_long`` -> ``REASON_FIELD_TOO_LONG``); ``REASON_UNSPECIFIED``
    for a code the proto does not list."""
    return _reason_name(code)


def reason_value(code: str) -> reasons_pb2.Reason.ValueType:
    """The ``Reason`` enum number of a dotted reason code (as :func:`reason_name`)."""
    return reasons_pb2.Reason.Value(_reason_name(code))


def reason_trailers(code: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """The trailing metadata that names a refusal's reason: its dotted code and its enum value name."""
    return ((REASON_METADATA_KEY, code), (REASON_NAME_METADATA_KEY, _reason_name(code)))


def echo(value: str) -> str:
    """``value`` as an error message may quote it: in quotes, its first MAX_ECHO characters at most."""
    if len(value) <= MAX_ECHO:
        return repr(value)
    return f"{value[:MAX_ECHO]!r}… ({len(value)} characters)"


class GatewayError(Exception):
    status: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason = "internal"
    # True where the refusal is accounted for in an aggregated audit record (a throttled peer's
    # refusals, :mod:`.auth.peers`): whoever catches it writes no record of its own.
    accounted = False

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason


class InvalidArgument(GatewayError):
    status = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "invalid_argument"


class InvalidSubject(InvalidArgument):
    """The identifier broke an R1 rule; ``reason`` is the rule, e.g. ``uscc.check_character``."""

    default_reason = "subject.invalid"


class NotFound(GatewayError):
    status = grpc.StatusCode.NOT_FOUND
    default_reason = "not_found"


class UnknownMatter(NotFound):
    default_reason = "matter.unknown"


class Unauthenticated(GatewayError):
    """``caller_id`` and ``token_id``: who the refused credentials named, where known (a revoked or
    expired token, a disabled caller), so that the refusal is audited with them."""

    status = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "unauthenticated"

    def __init__(
        self, message: str, *, reason: str | None = None, caller_id: str = "", token_id: str = ""
    ) -> None:
        super().__init__(message, reason=reason)
        self.caller_id = caller_id
        self.token_id = token_id


def presented(caller_id: str, error: GatewayError) -> tuple[str, dict[str, str]]:
    """Who a refused call is audited as: its authenticated caller (``caller_id``), or else the caller and
    token id that refused credentials named (revoked, expired, mismatched), with the token id as detail."""
    if isinstance(error, Unauthenticated):
        return error.caller_id or caller_id, {"token_id": error.token_id} if error.token_id else {}
    return caller_id, {}


class PermissionDenied(GatewayError):
    status = grpc.StatusCode.PERMISSION_DENIED
    default_reason = "permission_denied"


class ResourceExhausted(GatewayError):
    """A rate limit or quota; ``retry_after_s`` is sent as ``retry-after-ms`` trailing metadata."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "rate_limited"

    def __init__(
        self, message: str, *, reason: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_s = retry_after_s


RETRY_AFTER_METADATA_KEY = "retry-after-ms"


class AuthThrottled(ResourceExhausted):
    """Too many failed authentications from one peer: refused before any work, and counted in the
    peer's aggregated audit record rather than audited one by one."""

    default_reason = "auth.throttled"
    accounted = True


class FailedPrecondition(GatewayError):
    """The request is well-formed but the state does not allow it (e.g. repair too early)."""

    status = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "failed_precondition"
