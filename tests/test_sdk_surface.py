"""The SDK's public surface: ``__all__`` is the contract; errors form one tree; results are frozen."""

from __future__ import annotations

import dataclasses
import datetime as dt

import grpc
import pytest

import mustcheck
from mustcheck._errors import error_for

EXPECTED_ALL = {
    "DEFAULT_TIMEOUT",
    "AsyncClient",
    "AuthenticationFailed",
    "BatchItem",
    "BatchResult",
    "CheckResult",
    "CheckUnavailable",
    "Client",
    "DeadlineExceeded",
    "EntryStatus",
    "GatewayFault",
    "GatewayUnreachable",
    "InvalidReceipt",
    "SuiteUnavailable",
    "InvalidRequest",
    "InvalidSubject",
    "LegalBasis",
    "Link",
    "ListKind",
    "Measure",
    "MeasureKind",
    "Membership",
    "MustCheckError",
    "Outcome",
    "OutcomeAck",
    "PermissionDenied",
    "RateLimited",
    "Receipt",
    "RetryPolicy",
    "SubjectKind",
    "TLSConfig",
    "UnknownMatter",
    "__version__",
    "verify_receipt",
}


def test_public_surface_is_pinned() -> None:
    assert set(mustcheck.__all__) == EXPECTED_ALL
    public = {name for name in vars(mustcheck) if not name.startswith("_")} - {
        "identifiers",
        "merkle",
        "receipts",
        "suites",
        "tree_head",
    }
    assert public <= EXPECTED_ALL, f"exported but not in __all__: {public - EXPECTED_ALL}"
    for name in mustcheck.__all__:
        assert hasattr(mustcheck, name)


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "uscc.check_character", mustcheck.InvalidSubject),
        (grpc.StatusCode.INVALID_ARGUMENT, "matter.missing", mustcheck.InvalidRequest),
        (grpc.StatusCode.NOT_FOUND, "matter.unknown", mustcheck.UnknownMatter),
        (grpc.StatusCode.UNAUTHENTICATED, "", mustcheck.AuthenticationFailed),
        (grpc.StatusCode.PERMISSION_DENIED, "", mustcheck.PermissionDenied),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "", mustcheck.RateLimited),
        (grpc.StatusCode.UNAVAILABLE, "", mustcheck.GatewayUnreachable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "", mustcheck.DeadlineExceeded),
        (grpc.StatusCode.INTERNAL, "internal", mustcheck.GatewayFault),
        (grpc.StatusCode.UNKNOWN, "", mustcheck.GatewayFault),
        (grpc.StatusCode.DATA_LOSS, "", mustcheck.GatewayFault),
    ],
)
def test_every_status_maps_to_a_specific_error(code: grpc.StatusCode, reason: str, expected: type) -> None:
    error = error_for(code, "message", reason)
    assert type(error) is expected
    assert isinstance(error, mustcheck.MustCheckError)
    assert error.code is code and error.message == "message"


def test_no_answer_is_never_a_result() -> None:
    # Everything that means "no trustworthy answer" is a CheckUnavailable (R12).
    for cls in (mustcheck.GatewayUnreachable, mustcheck.DeadlineExceeded, mustcheck.GatewayFault):
        assert issubclass(cls, mustcheck.CheckUnavailable)
    assert mustcheck.GatewayUnreachable.retryable and not mustcheck.GatewayFault.retryable
    assert not mustcheck.InvalidSubject.retryable


def test_results_are_frozen() -> None:
    result = mustcheck.CheckResult(
        subject="x",
        subject_kind=mustcheck.SubjectKind.ORGANIZATION,
        subject_name="",
        matter="M",
        outcome=mustcheck.Outcome.NO_RECORD,
        memberships=(),
        measures=(),
        green_channel=True,
        human_review_required=False,
        review_notice="",
        legacy_code=False,
        data_version=1,
        checked_at=dt.datetime.now(dt.UTC),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.outcome = mustcheck.Outcome.RESTRICTIONS  # type: ignore[misc]


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf")])
def test_a_timeout_must_be_positive_and_finite(timeout: float) -> None:
    """NaN passed ``timeout <= 0`` and failed every call as a bare DeadlineExceeded; infinity never fails
    closed. Both clients, at construction and per call, name the timeout before any call is made."""
    with pytest.raises(ValueError, match="timeout must be a positive, finite number"):
        mustcheck.Client("127.0.0.1:1", timeout=timeout)
    with pytest.raises(ValueError, match="timeout must be a positive, finite number"):
        mustcheck.AsyncClient("127.0.0.1:1", timeout=timeout)
    with mustcheck.Client("127.0.0.1:1") as client, pytest.raises(ValueError, match="got"):
        client.check("91350100M000100Y43", matter="M", timeout=timeout)
