"""The server factory: build a gateway from a config, start it, stop it gracefully.

``start_gateway`` runs inside an asyncio loop; ``GatewayThread`` runs a gateway on its
own loop in a background thread (for the demo and for tests that use the sync SDK).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection

from mustcheck._generated.v1 import check_pb2, check_pb2_grpc

from .callers import Caller, StaticAuthenticator
from .checks import CheckEngine, Clock, utc_now
from .interceptors import ErrorMapping
from .policy import PolicySet, default_policy_dir, load_policies
from .service import CheckService
from .store import DEFAULT_FILE_NAME, ListStore, open_store

log = structlog.get_logger("mustcheck.gateway")
CHECK_SERVICE_NAME = check_pb2.DESCRIPTOR.services_by_name["CheckService"].full_name
DEFAULT_LISTEN = "127.0.0.1:50051"


@dataclass(frozen=True)
class GatewayConfig:
    data_dir: Path
    listen: str = DEFAULT_LISTEN
    policy_dir: Path = field(default_factory=default_policy_dir)
    # Until authentication lands, the one caller and its department (R2 filters by it).
    department: str = "ndrc"
    caller_id: str = "local"
    store_file: str = DEFAULT_FILE_NAME
    clock: Clock = utc_now


class ConfigError(Exception):
    """The gateway cannot start with this configuration (the message says why)."""


@dataclass
class Gateway:
    server: grpc.aio.Server
    port: int
    store: ListStore
    policy: PolicySet
    engine: CheckEngine

    async def stop(self, grace: float = 2.0) -> None:
        await self.server.stop(grace)
        self.store.close()
        log.info("gateway_stopped", port=self.port)


async def start_gateway(config: GatewayConfig) -> Gateway:
    policy = load_policies(config.policy_dir)  # raises PolicyError: refuse to start on bad policies
    if config.department not in policy.departments:
        raise ConfigError(f"unknown department {config.department!r}; see departments.toml")
    store = open_store(config.data_dir, file_name=config.store_file)
    engine = CheckEngine(store, policy, clock=config.clock)
    caller = Caller(config.caller_id, config.department)

    server = grpc.aio.server(interceptors=[ErrorMapping()])
    check_pb2_grpc.add_CheckServiceServicer_to_server(
        CheckService(engine, StaticAuthenticator(caller)), server
    )
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            CHECK_SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    try:
        port = server.add_insecure_port(config.listen)
    except RuntimeError as error:
        store.close()
        raise ConfigError(f"cannot listen on {config.listen}: {error}") from None
    await server.start()
    for service in ("", CHECK_SERVICE_NAME):
        await health.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "gateway_started",
        listen=config.listen,
        port=port,
        store=str(config.data_dir / config.store_file),
        policies=str(config.policy_dir),
        department=config.department,
        data_version=store.data_version(),
    )
    return Gateway(server, port, store, policy, engine)


class GatewayThread:
    """A gateway on its own event loop in a daemon thread: ``start()`` returns its port."""

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
            asyncio.run_coroutine_threadsafe(self.gateway.stop(grace), self.loop).result(timeout=grace + 10)
            self.gateway = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
