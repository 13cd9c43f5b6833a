"""Setting up callers through the real admin API (no shortcuts into the store)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from mustcheck._channel import auth_metadata
from mustcheck._generated.v1 import admin_pb2, admin_pb2_grpc


def admin_stub(
    target: str, credentials: grpc.ChannelCredentials | None = None
) -> tuple[admin_pb2_grpc.AdminServiceStub, grpc.Channel]:
    """The admin service at ``target``: plaintext, or over TLS with ``credentials``."""
    channel = (
        grpc.insecure_channel(target) if credentials is None else grpc.secure_channel(target, credentials)
    )
    return admin_pb2_grpc.AdminServiceStub(channel), channel


def provision(
    target: str,
    admin_token: str,
    caller_id: str,
    *,
    department: str = "approval",
    roles: Sequence[str] = (),
    matters: Sequence[str] = ("*",),
    subject_kinds: Sequence[str] = ("organization", "person"),
    visible_fields: Sequence[str] = (),
    purpose_required: bool = False,
    authorization_ref_required: bool = False,
    rate: float = 100_000.0,
    burst: int = 100_000,
    daily_person_quota: int = 1_000_000,
    max_watch_streams: int = 0,
    grant: bool = True,
    tls_identity: str = "",
    credentials: grpc.ChannelCredentials | None = None,
) -> str:
    """Create a caller (with a grant unless ``grant=False``) and return a fresh token for it (over TLS
    with ``credentials``)."""
    admin, channel = admin_stub(target, credentials)
    metadata = auth_metadata(admin_token)
    with channel:
        admin.CreateCaller(
            admin_pb2.CreateCallerRequest(
                caller_id=caller_id, department=department, roles=list(roles), tls_identity=tls_identity
            ),
            metadata=metadata,
            timeout=10,
        )
        if grant:
            admin.SetGrant(
                admin_pb2.SetGrantRequest(
                    grant=admin_pb2.Grant(
                        caller_id=caller_id,
                        matters=list(matters),
                        subject_kinds=list(subject_kinds),
                        visible_fields=list(visible_fields),
                        purpose_required=purpose_required,
                        authorization_ref_required_for_persons=authorization_ref_required,
                        rate_per_second=rate,
                        burst=burst,
                        daily_person_quota=daily_person_quota,
                        max_watch_streams=max_watch_streams,
                    )
                ),
                metadata=metadata,
                timeout=10,
            )
        issued = admin.IssueToken(
            admin_pb2.IssueTokenRequest(caller_id=caller_id), metadata=metadata, timeout=10
        )
    return issued.token
