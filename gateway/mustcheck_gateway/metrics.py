"""Prometheus metrics, served on their own HTTP port (``serve --metrics HOST:PORT``).

Each gateway has its own registry, so that several gateways in one process (tests) never share
counters. Labels carry caller ids, matters' outcomes and statuses — never a subject.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from .audit import Announcement, AuditEvent
from .audit.record import CHECK_KINDS
from .service import AuditSink

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0)
# Counted as checks by outcome: replays too (an auditor's check of the past).
COUNTED_KINDS = CHECK_KINDS | {"replay"}
# A counter's ``*_created`` series doubles every counter and histogram for a start time that the process
# metrics already give; scrapers do not need it.
disable_created_metrics()  # type: ignore[no-untyped-call]


class _CounterFunction(Collector):
    """A counter whose value is read when scraped, from a count kept elsewhere (it only grows)."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self.name = name
        self.documentation = documentation
        self.read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.read())


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # process_cpu_seconds_total, process_resident_memory_bytes, open file descriptors, start time.
        ProcessCollector(registry=self.registry)
        self.checks = Counter(
            "mustcheck_checks",
            "Checked subjects (a batch item counts as one) by kind, outcome, caller and status",
            ["kind", "outcome", "caller", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mustcheck_request_latency_seconds",
            "Time from a request's arrival to its answer, by method",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.audit_commit = Histogram(
            "mustcheck_audit_commit_seconds",
            "Time a request waits for its audit records to be durable",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._http: Any = None

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read when scraped (cache sizes, queue depths, subscribers)."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def counter(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A counter read when scraped (exposed as ``NAME_total``): counts that only grow, kept elsewhere."""
        self.registry.register(_CounterFunction(name, documentation, read))

    def serve(self, listen: str) -> int:
        """Serve ``/metrics`` on ``listen`` (HOST:PORT; port 0 picks one); returns the port."""
        host, _, port = listen.rpartition(":")
        server, _thread = start_http_server(
            int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry
        )
        self._http = server
        return int(server.server_address[1])

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class MeteredAudit:
    """An audit sink that counts what it records and times how long requests wait for durability."""

    def __init__(self, inner: AuditSink, metrics: GatewayMetrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.waiting = 0

    def announce(self) -> Announcement:
        return self.inner.announce()

    async def append(self, event: AuditEvent, *, announcement: Announcement | None = None) -> int:
        return (await self.append_many([event], announcement=announcement))[0]

    async def append_many(
        self, events: list[AuditEvent], *, announcement: Announcement | None = None
    ) -> list[int]:
        return (await self.append_receipted(events, (), announcement=announcement))[0]

    async def append_receipted(
        self,
        events: list[AuditEvent],
        receipts_for: Sequence[int],
        *,
        announcement: Announcement | None = None,
    ) -> tuple[list[int], list[str]]:
        started = time.perf_counter()
        self.waiting += len(events)
        try:
            return await self.inner.append_receipted(events, receipts_for, announcement=announcement)
        finally:
            self.waiting -= len(events)
            self.metrics.audit_commit.observe(time.perf_counter() - started)
            for event in events:
                if event.kind in COUNTED_KINDS:
                    self.metrics.checks.labels(event.kind, event.outcome, event.caller_id, event.status).inc()
