"""Domain exceptions of the gateway; each carries the gRPC status it maps to.

Handlers raise these; one interceptor (``interceptors.ErrorMapping``) turns them
into a status, a message and a machine-readable reason in the trailing metadata
key ``mustcheck-reason``. Nothing else calls ``context.abort``.
"""

from __future__ import annotations

import grpc

REASON_METADATA_KEY = "mustcheck-reason"


class GatewayError(Exception):
    status: grpc.StatusCode = grpc.StatusCode.INTERNAL
    default_reason = "internal"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
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
    status = grpc.StatusCode.UNAUTHENTICATED
    default_reason = "unauthenticated"


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


class FailedPrecondition(GatewayError):
    """The request is well-formed but the state does not allow it (e.g. repair too early)."""

    status = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "failed_precondition"
