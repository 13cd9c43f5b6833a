"""The server factory: build a gateway from a config, start it, stop it gracefully.

``start_gateway`` runs inside an asyncio loop; ``GatewayThread`` runs a gateway on its
own loop in a background thread (for the demo and for tests that use the sync SDK).
Stopping flushes the audit log and writes a final signed checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

from mustcheck._generated.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    check_pb2,
    check_pb2_grpc,
    lists_pb2,
    lists_pb2_grpc,
)

from .admin_service import AdminService
from .audit import KEYS_DIR_NAME, AuditError, AuditEvent, AuditLog, KeyRing
from .audit.backends import AnyAuditLog, audit_store_for, is_audit_log, open_postgres_log
from .audit.space import DEFAULT_MIN_FREE_MB
from .audit_health import AuditHealth
from .audit_service import AuditService
from .auth.access import AccessControl
from .auth.authenticate import Authenticator
from .auth.peers import FailedAuthLimit
from .auth.registry import AuthRegistry
from .bootstrap import bootstrap_admin
from .bounds import MAX_RECEIVE_BYTES
from .chain_heads import HeadPublisher, head_checkpoint, published_head, replica_id
from .change_feed import DEFAULT_POLL_INTERVAL_S, ChangeFeed
from .check.replay import Replays
from .checks import CheckEngine, Clock, utc_now
from .data_lock import DataDirInUse, DataDirLock
from .http.listener import HttpListener, HttpTLS
from .http.pipeline import CallPipeline
from .import_workers import ImportWorkers, default_import_workers
from .interceptors import ErrorMapping
from .lists_service import LegacyCodes, ListsService
from .lookup_cache import DEFAULT_CACHE_ENTRIES, LookupCache
from .malformed_requests import MalformedRequestAudit
from .metrics import GatewayMetrics, MeteredAudit
from .observability.tracing import available as tracing_available
from .observability.tracing import tracing_interceptors
from .person_quota import person_quota_for
from .policy import PolicySet, default_policy_dir
from .policy.served import keep_served
from .policy.sets import ServedPolicySet, load_served
from .private_files import make_private
from .quota_seed import seed_person_quota
from .receipts import ReceiptSigner
from .reflection import enable_reflection
from .refusals import RefusalAudit, RefusalFlusher
from .service import AuditSink, CheckService
from .store import AuditHead, ListStore, open_store, redacted
from .watch import DEFAULT_HEARTBEAT_S, WatchStreams
from .workers.limits import SharedRateLimiter, SharedTable

log = structlog.get_logger("mustcheck.gateway")
SERVICE_NAMES = tuple(
    module.DESCRIPTOR.services_by_name[name].full_name
    for module, name in (
        (check_pb2, "CheckService"),
        (admin_pb2, "AdminService"),
        (audit_pb2, "AuditService"),
        (lists_pb2, "ListsService"),
    )
)
DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_ADMIN_DEPARTMENT = "ndrc"


@dataclass(frozen=True)
class TLSFiles:
    """The server's certificate and key; ``client_ca`` turns on mutual TLS (client certificates required)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass(frozen=True)
class WorkerRole:
    """This process is worker ``index`` of a gateway's ``count`` serving one port (``serve --workers``,
    workers/): its supervisor holds the data directory's lock, the port and the embedded audit log."""

    index: int
    count: int
    # The descriptor of the table of rate limits (and person lookups) the workers share (workers/limits.py).
    limits: int


def worker_log_id(replica: str, worker: WorkerRole | None) -> str:
    """The PostgreSQL audit log a (worker) process appends to: one log per worker, the first the
    replica's own (a gateway run with one process or many keeps the same first log)."""
    return replica if worker is None or worker.index == 0 else f"{replica}-w{worker.index}"


@dataclass(frozen=True)
class GatewayConfig:
    # The audit log, the keys and the first admin's token live here, and the embedded store too
    # unless ``store_url`` names a PostgreSQL database that several gateways may share.
    data_dir: Path
    listen: str = DEFAULT_LISTEN
    policy_dir: Path = field(default_factory=default_policy_dir)
    tls: TLSFiles | None = None
    # Plaintext on a non-loopback address needs this, and is warned about on every start.
    insecure: bool = False
    # The HTTP/JSON binding on HOST:PORT (None: not served); TLS and --insecure as for gRPC (docs/http.md).
    http_listen: str | None = None
    # Department of the first admin caller created on an empty store.
    admin_department: str = DEFAULT_ADMIN_DEPARTMENT
    clock: Clock = utc_now
    checkpoint_every: int = 1000
    checkpoint_interval_s: float = 10.0
    # Only benchmarks turn auditing off, to measure what it costs (R10 wants it on).
    audit_enabled: bool = True
    store_url: str | None = None
    # Where the audit log goes: a postgresql:// URL, "embedded" (the data directory's files), or None:
    # PostgreSQL when the store is, else the files (audit/backends.py).
    audit_store: str | None = None
    # Subject data kept in memory until a write touches it (0 turns the cache off).
    lookup_cache_entries: int = DEFAULT_CACHE_ENTRIES
    # How often the change feed looks for writes made by other processes, and Watch's heartbeat.
    change_poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    watch_heartbeat_s: float = DEFAULT_HEARTBEAT_S
    # Prometheus metrics over HTTP on HOST:PORT (None: not served; still collected).
    metrics_listen: str | None = None
    # Processes that validate an import's rows while the gateway writes them (0: in the gateway itself).
    import_workers: int = field(default_factory=default_import_workers)
    # A graceful stop first turns health to NOT_SERVING, then waits this long before the listener closes,
    # so that load balancers and health watchers move callers away first (serve: --drain-seconds).
    drain_s: float = 0.0
    # Failed authentications a peer may make before it is throttled (auth/peers.py).
    failed_auth_limit: FailedAuthLimit = field(default_factory=FailedAuthLimit)
    # Below this much free space on the data directory's disk, checks get UNAVAILABLE (0: no watermark).
    audit_min_free_mb: float = DEFAULT_MIN_FREE_MB
    # The crypto suite (international or sm, crypto/suites.py): a new key ring is made of it; an existing
    # one of another suite is refused. None: the key ring's (international for a new one).
    crypto: str | None = None
    # OpenTelemetry server spans under the callers' W3C trace context (serve --otel; extra mustcheck[otel]).
    tracing: bool = False
    # Set in the worker processes of a multi-process gateway (serve --workers N; workers/).
    worker: WorkerRole | None = None


class ConfigError(Exception):
    """The gateway cannot start with this configuration (the message says why)."""


class _NoAnnouncement:
    def release(self) -> None:
        return None

    def __enter__(self) -> _NoAnnouncement:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


class NoAudit:
    """The benchmark baseline: records nothing, but signs receipts all the same (``audit_seq`` 0), so
    that a gateway without its audit log still does the rest of a check's work."""

    def __init__(self, receipts: ReceiptSigner) -> None:
        self.receipts = receipts

    def announce(self) -> Any:
        return _NoAnnouncement()

    async def append(self, event: AuditEvent, *, announcement: Any = None) -> int:
        return 0

    async def append_many(self, events: list[AuditEvent], *, announcement: Any = None) -> list[int]:
        return [0] * len(events)

    async def append_receipted(
        self, events: list[AuditEvent], receipts_for: Sequence[int], *, announcement: Any = None
    ) -> tuple[list[int], list[str]]:
        return [0] * len(events), [self.receipts.sign_unaudited(events[i]) for i in receipts_for]

    def close(self) -> None:
        return None


@dataclass
class Gateway:
    server: grpc.aio.Server
    port: int
    store: ListStore
    policy: PolicySet
    engine: CheckEngine
    audit: AnyAuditLog | NoAudit
    access: AccessControl
    admin_token_file: Path | None
    import_workers: ImportWorkers
    feed: ChangeFeed
    lookup_cache: LookupCache
    watch: WatchStreams
    metrics: GatewayMetrics
    metrics_port: int | None = None
    heads: HeadPublisher | None = None
    health: health_aio.HealthServicer | None = None
    drain_s: float = 0.0
    refusals: RefusalFlusher | None = None
    data_lock: DataDirLock | None = None
    audit_health: AuditHealth | None = None
    http: HttpListener | None = None

    @property
    def http_port(self) -> int | None:
        return None if self.http is None else self.http.port

    async def stop(self, grace: float = 2.0) -> None:
        if self.health is not None:
            # Health watchers see NOT_SERVING while the gateway still answers, then the drain period passes.
            await self.health.enter_graceful_shutdown()
            log.info("gateway_draining", port=self.port, drain_s=self.drain_s)
            await asyncio.sleep(self.drain_s)
        self.watch.close()  # open streams end, so that the grace period is not spent waiting on them
        if self.audit_health is not None:
            await self.audit_health.stop()
        if self.http is not None:
            await self.http.stop()
        await self.server.stop(grace)
        if self.refusals is not None:  # the throttled peers' last counts, before the log closes
            await self.refusals.stop()
        await self.feed.stop()
        if self.heads is not None:
            await self.heads.stop()
            with contextlib.suppress(Exception):  # the store may be away; the last head stays published
                await asyncio.get_running_loop().run_in_executor(None, self.heads.publish_final)
        self.metrics.close()
        await asyncio.get_running_loop().run_in_executor(None, self.import_workers.close)
        await asyncio.get_running_loop().run_in_executor(None, self.audit.close)
        self.store.close()
        if self.data_lock is not None:
            self.data_lock.release()
        log.info("gateway_stopped", port=self.port)


def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listener(config: GatewayConfig) -> None:
    """Refuse plaintext on a non-loopback address unless ``insecure``; then warn on every start. The
    HTTP/JSON listener, if any, is held to the same rule. Refuse tracing without OpenTelemetry installed."""
    if config.tracing and not tracing_available():
        raise ConfigError("tracing needs OpenTelemetry: pip install 'mustcheck[otel]'")
    for listen, binding in ((config.listen, "gRPC"), (config.http_listen, "HTTP")):
        if listen is None or config.tls is not None or is_loopback(listen):
            continue
        if not config.insecure:
            raise ConfigError(
                f"refusing a plaintext {binding} listener on non-loopback address {listen}: "
                "give --tls-cert/--tls-key, or --insecure to accept the risk"
            )
        log.warning(
            "insecure_listener",
            listen=listen,
            message=f"plaintext {binding} on a non-loopback address: tokens and answers travel in clear",
        )


def _add_port(server: grpc.aio.Server, config: GatewayConfig) -> int:
    if config.tls is None:
        return server.add_insecure_port(config.listen)
    credentials = grpc.ssl_server_credentials(
        [(config.tls.key.read_bytes(), config.tls.cert.read_bytes())],
        root_certificates=config.tls.client_ca.read_bytes() if config.tls.client_ca else None,
        require_client_auth=config.tls.client_ca is not None,
    )
    return server.add_secure_port(config.listen, credentials)


async def start_gateway(config: GatewayConfig) -> Gateway:
    served = load_served(config.policy_dir)  # raises PolicyError: refuse to start on bad policies
    policy = served.policy
    if config.admin_department not in policy.departments:
        raise ConfigError(f"unknown department {config.admin_department!r}; see departments.toml")
    check_listener(config)
    make_private(config.data_dir)
    if config.worker is not None:  # the supervisor holds the data directory's lock for its workers
        return await _start(config, served)
    # One gateway per data directory: taken before anything in it is opened, held until stop().
    try:
        data_lock = DataDirLock.acquire(config.data_dir, listen=config.listen)
    except DataDirInUse as error:
        raise ConfigError(str(error)) from None
    try:
        gateway = await _start(config, served)
    except BaseException:
        data_lock.release()
        raise
    gateway.data_lock = data_lock
    data_lock.describe(f"{config.listen.rsplit(':', 1)[0]}:{gateway.port}")
    return gateway


def open_embedded_audit(
    config: GatewayConfig,
    keyring: KeyRing,
    published: AuditHead | None,
    *,
    workers: bool = False,
    attach: bool = False,
) -> AuditLog:
    """The embedded audit log in ``config``'s data directory, extending the head last ``published``.

    ``workers``: the log's writer serves the worker processes of one gateway (its supervisor opens it);
    ``attach``: a worker appends through that writer.
    """
    return AuditLog.open(
        config.data_dir,
        checkpoint_every=config.checkpoint_every,
        checkpoint_interval_s=config.checkpoint_interval_s,
        min_free_mb=config.audit_min_free_mb,
        published_head=None if published is None else head_checkpoint(published),
        published_tree_head="" if published is None else published.tree_head,
        keyring=keyring,
        workers=workers,
        attach=attach,
    )


async def _start(config: GatewayConfig, served: ServedPolicySet) -> Gateway:
    policy = served.policy
    store = open_store(config.data_dir, url=config.store_url)
    try:
        # The key ring decides the suite (a ring of another suite than --crypto is refused here). It is
        # loaded once, here, and handed to the audit log (or its stand-in).
        keyring = KeyRing.load_or_create(config.data_dir / KEYS_DIR_NAME, config.crypto)
        suite = keyring.suite.name
    except BaseException:
        store.close()
        raise
    try:
        audit_url = (
            audit_store_for(config.audit_store, config.store_url, suite) if config.audit_enabled else None
        )
    except AuditError as error:
        store.close()
        raise ConfigError(str(error)) from None
    # The log must extend the head this gateway last published (no rewind): AuditLog.open refuses otherwise.
    published = (
        published_head(store, replica_id(config.data_dir))
        if config.audit_enabled and audit_url is None and config.worker is None
        else None
    )
    try:
        audit: AnyAuditLog | NoAudit
        if not config.audit_enabled:
            audit = NoAudit(ReceiptSigner(keyring))
        elif audit_url is not None:
            audit = open_postgres_log(
                audit_url,
                worker_log_id(replica_id(config.data_dir), config.worker),
                keyring,
                checkpoint_every=config.checkpoint_every,
                checkpoint_interval_s=config.checkpoint_interval_s,
                crypto=config.crypto,
            )
        else:
            # A worker appends through its supervisor's writer: one log for the whole gateway.
            audit = open_embedded_audit(config, keyring, published, attach=config.worker is not None)
    except BaseException:
        store.close()
        raise
    try:  # every record names the policy set in force; the store keeps it for replays
        keep_served(store, served, replica=replica_id(config.data_dir), at=config.clock())
    except BaseException:
        audit.close()
        store.close()
        raise
    if is_audit_log(audit):
        audit.policy_set = served.digest
    metrics = GatewayMetrics()
    metered = MeteredAudit(audit, metrics)
    sink: AuditSink = metered
    server: grpc.aio.Server | None = None
    http: HttpListener | None = None
    import_workers: ImportWorkers | None = None
    try:
        admin_token_file = await bootstrap_admin(
            store, sink, config.data_dir, config.admin_department, config.clock()
        )
        registry = AuthRegistry(store)
        # A caller's rate limit is one across the workers of a gateway (workers/limits.py), its daily
        # person quota one across the workers and, on PostgreSQL, the replicas (person_quota.py).
        limits = None if config.worker is None else SharedTable(config.worker.limits)
        access = AccessControl(
            registry,
            Authenticator(registry, config.clock),
            config.failed_auth_limit,
            limiter=None if limits is None else SharedRateLimiter(limits),
            person_quota=person_quota_for(store, limits),
        )
        if is_audit_log(audit):
            seed_person_quota(access.person_quota, audit, config.clock())
        legacy = LegacyCodes(policy, store)
        import_workers = ImportWorkers(config.import_workers)
        feed = ChangeFeed(store, poll_interval_s=config.change_poll_interval_s)
        lookup_cache = LookupCache(
            store,
            feed,
            max_entries=config.lookup_cache_entries,
            # Over the network, the version is leased from the change feed's polls (lookup_cache.py).
            version_lease_s=4 * config.change_poll_interval_s if config.store_url else None,
        )
        engine = CheckEngine(
            store, policy, clock=config.clock, legacy_codes=lambda: legacy.codes, lookups=lookup_cache
        )
        watch = WatchStreams(feed, access, sink, policy, heartbeat_s=config.watch_heartbeat_s)
        _register_gauges(metrics, audit, lookup_cache, watch, metered)
        # One gateway per port: without SO_REUSEPORT (gRPC's default sets it) a second gateway's bind on a
        # port in use fails, instead of the kernel silently splitting connections between the two. The
        # workers of one gateway share its port with SO_REUSEPORT; their supervisor keeps other gateways
        # off it (workers/ports.py).
        # The refusal audit runs inside the error mapping: it sees the domain exceptions. The HTTP binding
        # runs its calls through these same interceptors (http/pipeline.py).
        interceptors: list[grpc.aio.ServerInterceptor[Any, Any]] = [
            *tracing_interceptors(config.tracing),
            ErrorMapping(on_malformed=MalformedRequestAudit(access, sink)),
            RefusalAudit(access, sink),
        ]
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
                ("grpc.so_reuseport", 0 if config.worker is None else 1),
            ],
        )
        # Receipts (R11) are signed with the gateway's keys, audited or not (so benchmarks compare alike);
        # the audit log's writer process signs them, this signer publishes the keys and reads receipts.
        receipts = audit.receipts if isinstance(audit, NoAudit) else ReceiptSigner(audit.keyring)
        check_service = CheckService(
            engine,
            access,
            sink,
            receipts,
            watch,
            lambda method, seconds: metrics.latency.labels(method).observe(seconds),
            replays=Replays(
                engine,
                audit if is_audit_log(audit) else None,
                replica_id(config.data_dir),
                audit.keyring if is_audit_log(audit) else None,
                served=served.digest,
            ),
        )
        check_pb2_grpc.add_CheckServiceServicer_to_server(check_service, server)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            AdminService(store, policy, access, sink, config.clock), server
        )
        audit_pb2_grpc.add_AuditServiceServicer_to_server(
            AuditService(audit, access, sink, policy, store), server
        )
        lists_pb2_grpc.add_ListsServiceServicer_to_server(
            ListsService(store, policy, access, sink, config.clock, legacy, import_workers), server
        )
        health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        enable_reflection(
            server, (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
        )
        try:
            port = _add_port(server, config)
        except RuntimeError:
            raise ConfigError(
                f"cannot listen on {config.listen}: the address is in use (another gateway?) or not available"
            ) from None
        # Metrics first: a metrics port in use fails the start before the gRPC listener is taken.
        metrics_port = metrics.serve(config.metrics_listen) if config.metrics_listen else None
        await server.start()
        if config.http_listen is not None:
            http = await _start_http(config, CallPipeline(check_service, interceptors), health)
        refusals = RefusalFlusher(access.peers, sink)
        refusals.start()
        feed.start()
        heads = (
            HeadPublisher(
                audit,
                store,
                replica_id(config.data_dir),
                interval_s=config.checkpoint_interval_s,
                published=published,
            )
            if isinstance(audit, AuditLog) and config.worker is None  # a worker's supervisor publishes
            else None
        )
        if heads is not None:
            heads.start()
    except BaseException:
        if http is not None:
            await http.stop()
        if server is not None:
            await server.stop(None)
        if import_workers is not None:
            import_workers.close()
        metrics.close()
        audit.close()
        store.close()
        raise
    for service in ("", *SERVICE_NAMES):
        await health.set(service, health_pb2.HealthCheckResponse.SERVING)
    audit_health = AuditHealth(audit, health, ("", *SERVICE_NAMES)) if is_audit_log(audit) else None
    if audit_health is not None:
        audit_health.start()
    log.info(
        "gateway_started",
        listen=config.listen,
        port=port,
        tls=config.tls is not None,
        mutual_tls=bool(config.tls and config.tls.client_ca),
        data_dir=str(config.data_dir),
        store=redacted(config.store_url) if config.store_url else "sqlite",
        audit_store=redacted(audit_url) if audit_url else "embedded",
        policies=str(config.policy_dir),
        data_version=store.data_version(),
        audit=config.audit_enabled,
        metrics_port=metrics_port,
        http_port=http.port if http is not None else None,
    )
    return Gateway(
        server,
        port,
        store,
        policy,
        engine,
        audit,
        access,
        admin_token_file,
        import_workers,
        feed,
        lookup_cache,
        watch,
        metrics,
        metrics_port,
        heads,
        health=health,
        drain_s=config.drain_s,
        refusals=refusals,
        audit_health=audit_health,
        http=http,
    )


async def _start_http(config: GatewayConfig, pipeline: CallPipeline, health: Any) -> HttpListener:
    assert config.http_listen is not None
    tls = HttpTLS(config.tls.cert, config.tls.key, config.tls.client_ca) if config.tls is not None else None
    try:
        return await HttpListener.start(
            config.http_listen, pipeline, tls=tls, health=health, reuse_port=config.worker is not None
        )
    except (OSError, ValueError):
        raise ConfigError(
            f"cannot listen for HTTP on {config.http_listen}: the address is in use or not available"
        ) from None


def _register_gauges(
    metrics: GatewayMetrics,
    audit: AnyAuditLog | NoAudit,
    cache: LookupCache,
    watch: WatchStreams,
    metered: MeteredAudit,
) -> None:
    metrics.counter(
        "mustcheck_lookup_cache_hits", "Lookups answered from the gateway cache", lambda: cache.hits
    )
    metrics.counter("mustcheck_lookup_cache_misses", "Lookups read from the store", lambda: cache.misses)
    metrics.gauge("mustcheck_lookup_cache_hit_ratio", "Hits over all lookups since start", cache.hit_ratio)
    metrics.gauge("mustcheck_lookup_cache_entries", "Subjects held in the gateway cache", lambda: len(cache))
    metrics.gauge("mustcheck_watch_subscribers", "Open Watch streams", lambda: watch.subscribers)
    metrics.gauge(
        "mustcheck_audit_waiting_records", "Audit records requests are waiting on", lambda: metered.waiting
    )
    if is_audit_log(audit):
        log_ = audit
        metrics.gauge(
            "mustcheck_audit_queue_depth", "Audit records queued for commit", lambda: log_.queue_depth
        )
        metrics.gauge(
            "mustcheck_audit_last_commit_seconds",
            "Duration of the audit writer's last commit",
            lambda: log_.last_commit_latency_s,
        )


class GatewayThread:
    """A gateway on its own event loop in a daemon thread: ``start()`` returns it."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.gateway: Gateway | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="mustcheck-gateway", daemon=True)

    def start(self) -> Gateway:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(start_gateway(self.config), self.loop)
        try:
            self.gateway = future.result(timeout=30)
        except BaseException:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            raise
        return self.gateway

    def stop(self, grace: float = 2.0) -> None:
        if self.gateway is not None:
            asyncio.run_coroutine_threadsafe(self.gateway.stop(grace), self.loop).result(timeout=grace + 30)
            self.gateway = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
