"""gRPC health follows the audit log: NOT_SERVING while it refuses records, SERVING again after.

The audit log refuses records while its disk is below the free-space watermark or its writer process
is being restarted (:meth:`~.audit.AuditLog.unavailable`); checks then get UNAVAILABLE, and load
balancers and the SDK's failover should send callers elsewhere. This task polls that state and sets
every service's health to match; when records are taken again it lets the log record how many calls
it refused meanwhile. No restart of the gateway is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog
from grpc_health.v1 import health_pb2

from .audit import AuditError
from .audit.backends import AnyAuditLog
from .tasks import cancelled

log = structlog.get_logger("mustcheck.gateway")
DEFAULT_POLL_S = 0.1


class AuditHealth:
    def __init__(
        self, audit: AnyAuditLog, health: Any, services: Sequence[str], *, interval_s: float = DEFAULT_POLL_S
    ) -> None:
        self.audit = audit
        self.health = health
        self.services = tuple(services)
        self.interval_s = interval_s
        self.serving = True
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mustcheck-audit-health")

    async def stop(self) -> None:
        await cancelled(self._task)
        self._task = None

    async def _set(self, status: int) -> None:
        for service in self.services:
            await self.health.set(service, status)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            reason = self.audit.unavailable()
            if reason is not None and self.serving:
                self.serving = False
                log.error("audit_not_serving", reason=reason)
                await self._set(health_pb2.HealthCheckResponse.NOT_SERVING)
            elif reason is None and not self.serving:
                try:
                    available = await loop.run_in_executor(None, self.audit.note_available)
                except AuditError as error:  # not writable after all: stay NOT_SERVING, look again
                    log.warning("audit_still_unavailable", error=str(error))
                    available = False
                if available:
                    self.serving = True
                    log.warning("audit_serving_again")
                    await self._set(health_pb2.HealthCheckResponse.SERVING)
            await asyncio.sleep(self.interval_s)
