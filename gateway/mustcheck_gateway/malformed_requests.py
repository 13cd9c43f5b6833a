"""Audit records for requests that are no well-formed message (R10: bad input is audited too).

The error interceptor answers such a request INVALID_ARGUMENT before any handler sees it; this records
it first: the method, the reason, and the caller where its credentials say who it is (the bytes may be
garbage, the metadata need not be). The HTTP binding's undecodable requests (malformed JSON, unknown
fields, a wrong content type, a body over the size bound) are recorded here too, one record each.
"""

from __future__ import annotations

from typing import Any

import grpc

from .audit import AuditEvent
from .auth.access import AccessControl
from .auth.model import Caller
from .errors import GatewayError
from .service import AuditSink

MALFORMED_KIND = "malformed_request"


class MalformedRequestAudit:
    def __init__(self, access: AccessControl, audit: AuditSink) -> None:
        self.access = access
        self.audit = audit

    async def __call__(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any], refusal: GatewayError
    ) -> None:
        caller: Caller | None = None
        try:
            caller = self.access.caller(context)
        except GatewayError as unauthenticated:
            if (
                unauthenticated.accounted
            ):  # a throttled peer: its aggregated record counts this request (O(1))
                return
        await self.audit.append(
            AuditEvent(
                kind=MALFORMED_KIND,
                caller_id=caller.caller_id if caller else "",
                department=caller.department if caller else "",
                outcome="invalid_input",
                status=refusal.status.name,
                detail={"reason": refusal.reason, "method": method[:128]},
            )
        )
