"""The supervisor of a multi-process gateway: what is the gateway's alone, and its N workers.

It takes, before any worker starts: the data directory's lock (one gateway per data directory), the
port (and the HTTP binding's; :mod:`.ports`), the key ring, the replica id, the store's migrations,
the rate-limit table the workers share (:mod:`.limits`) and, with the embedded audit log, the log
itself: its writer process takes every worker's appends (:mod:`..audit.writer_clients`), one log for
the gateway, whose heads the supervisor publishes. (On PostgreSQL each worker appends to a log of its
own in the shared database, as replicas do: :func:`~..server.worker_log_id`.)

Worker 0 starts first (it makes the first admin caller of an empty store), then the others. A worker
that ends while the gateway runs is started again (after 0.5 s, doubling up to 10 s while it keeps
failing); the others answer meanwhile. SIGTERM or SIGINT stops every worker gracefully (each drains),
then the audit log, then the locks. ``/metrics`` (``--metrics``) is served here, summing the workers'
(:mod:`.metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ..audit import KEYS_DIR_NAME, AuditError, AuditLog, KeyRing
from ..audit.backends import audit_store_for
from ..chain_heads import HeadPublisher, published_head, replica_id
from ..data_lock import DataDirInUse, DataDirLock
from ..policy.sets import load_served
from ..private_files import make_private
from ..server import ConfigError, GatewayConfig, WorkerRole, check_listener, open_embedded_audit
from ..store import ListStore, open_store
from .config import config_to_json
from .limits import SharedTable
from .metrics import GatewayMetricsServer
from .ports import HeldPort, PortInUse

log = structlog.get_logger("mustcheck.workers")

RESTART_DELAY_S = 0.5
MAX_RESTART_DELAY_S = 10.0
# A worker that ran this long before it ended is started again after the first delay.
STEADY_S = 30.0
# How long a stopping worker may take beyond its drain period before it is killed.
STOP_GRACE_S = 30.0


class WorkerFailed(Exception):
    """A worker could not start (``code``: the exit status it asks for)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def default_workers() -> int:
    """The machine's cores (those this process may run on)."""
    return max(1, len(os.sched_getaffinity(0)))


WORKERS_PER_CORE_AT_MOST = 4


def max_workers() -> int:
    """The most workers ``serve --workers`` starts: four per core. More only take turns on the cores,
    each with its own memory (a typo such as 100000 would otherwise start that many processes)."""
    return WORKERS_PER_CORE_AT_MOST * default_workers()


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    ready: dict[str, Any] | None = None
    started: float = 0.0
    delay: float = RESTART_DELAY_S


class Supervisor:
    def __init__(
        self, config: GatewayConfig, workers: int, *, log_level: str = "info", log_format: str = "json"
    ) -> None:
        if workers < 2:
            raise ConfigError("a supervised gateway has 2 workers or more")
        self.config = config
        self.count = workers
        self._log = ("--log-level", log_level, "--log-format", log_format)
        self._workers = [_Worker(index) for index in range(workers)]
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []
        self.restarts = 0
        self.port = 0
        self.http_port: int | None = None
        self.metrics_port: int | None = None
        self.admin_token_file: Path | None = None
        self._data_lock: DataDirLock | None = None
        self._ports: list[HeldPort] = []
        self._store: ListStore | None = None
        self._audit: AuditLog | None = None
        self._heads: HeadPublisher | None = None
        self._limits: SharedTable | None = None
        self._metrics: GatewayMetricsServer | None = None
        self._lifeline = (-1, -1)

    # -- start -------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self._close()
            raise

    async def _start(self) -> None:
        config = self.config
        served = load_served(config.policy_dir)  # raises PolicyError: refuse to start on bad policies
        if config.admin_department not in served.policy.departments:
            raise ConfigError(f"unknown department {config.admin_department!r}; see departments.toml")
        check_listener(config)
        make_private(config.data_dir)
        try:
            self._data_lock = DataDirLock.acquire(config.data_dir, listen=config.listen)
        except DataDirInUse as error:
            raise ConfigError(str(error)) from None
        try:
            grpc_port = HeldPort(config.listen)
            self._ports.append(grpc_port)
            http_port = HeldPort(config.http_listen, "HTTP") if config.http_listen else None
            if http_port is not None:
                self._ports.append(http_port)
        except PortInUse as error:
            raise ConfigError(str(error)) from None
        self.port = grpc_port.port
        self.http_port = None if http_port is None else http_port.port
        self._data_lock.describe(grpc_port.listen)
        keyring = KeyRing.load_or_create(config.data_dir / KEYS_DIR_NAME, config.crypto)
        replica = replica_id(config.data_dir)
        self._store = open_store(config.data_dir, url=config.store_url)  # its migrations, once
        try:
            audit_url = (
                audit_store_for(config.audit_store, config.store_url, keyring.suite.name)
                if config.audit_enabled
                else None
            )
        except AuditError as error:
            raise ConfigError(str(error)) from None
        if config.audit_enabled and audit_url is None:
            published = published_head(self._store, replica)
            self._audit = open_embedded_audit(config, keyring, published, workers=True)
            self._audit.policy_set = served.digest
            self._heads = HeadPublisher(
                self._audit,
                self._store,
                replica,
                interval_s=config.checkpoint_interval_s,
                published=published,
            )
            self._heads.start()
        self._limits = SharedTable()
        self._lifeline = os.pipe()
        first = self._workers[0]
        await self._spawn(first)
        if first.ready is None or "error" in first.ready:
            raise self._failure(first)
        if first.ready.get("admin_token_file"):
            self.admin_token_file = Path(first.ready["admin_token_file"])
        await asyncio.gather(*(self._spawn(worker) for worker in self._workers[1:]))
        for worker in self._workers[1:]:
            if worker.ready is None or "error" in worker.ready:
                raise self._failure(worker)
        if config.metrics_listen:
            try:
                self._metrics = GatewayMetricsServer(
                    config.metrics_listen, self._metrics_ports, lambda: self.restarts
                )
            except OSError:
                raise ConfigError(
                    f"cannot serve metrics on {config.metrics_listen}: the address is in use"
                ) from None
            self.metrics_port = self._metrics.port
        self._watchers = [asyncio.create_task(self._watch(worker)) for worker in self._workers]
        log.info(
            "gateway_workers_started",
            port=self.port,
            workers=self.count,
            pids=[worker.ready.get("pid") for worker in self._workers if worker.ready],
            http_port=self.http_port,
            metrics_port=self.metrics_port,
        )

    def _failure(self, worker: _Worker) -> WorkerFailed:
        ready = worker.ready or {}
        return WorkerFailed(
            str(ready.get("error", f"worker {worker.index} ended before it started")),
            int(ready.get("code", 1)),
        )

    def _worker_config(self, index: int) -> GatewayConfig:
        config = self.config
        assert self._limits is not None
        return dataclasses.replace(
            config,
            listen=self._ports[0].listen,
            http_listen=self._ports[1].listen if config.http_listen else None,
            # Each worker's own metrics, read by the supervisor's /metrics.
            metrics_listen="127.0.0.1:0" if config.metrics_listen else None,
            # The import validators are shared out: as many processes in all as one gateway would have.
            import_workers=-(-config.import_workers // self.count),
            worker=WorkerRole(index, self.count, self._limits.descriptor),
        )

    async def _spawn(self, worker: _Worker) -> None:
        """Start ``worker`` and wait for its report (``worker.ready``: its ports, or its error)."""
        assert self._limits is not None
        status_in, status_out = os.pipe()
        command = [
            sys.executable,
            "-m",
            "mustcheck_gateway.workers.worker",
            *("--config", config_to_json(self._worker_config(worker.index))),
            *("--status", str(status_out), "--lifeline", str(self._lifeline[0])),
            *self._log,
        ]
        try:
            worker.process = await asyncio.create_subprocess_exec(
                *command,
                pass_fds=(status_out, self._lifeline[0], self._limits.descriptor),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
            )
        finally:
            os.close(status_out)
        worker.started = time.monotonic()
        try:
            line = await asyncio.get_running_loop().run_in_executor(None, _read_line, status_in)
        finally:
            os.close(status_in)
        worker.ready = _parse(line)

    def _metrics_ports(self) -> list[tuple[int, int]]:
        return [
            (worker.index, int(worker.ready["metrics_port"]))
            for worker in self._workers
            if worker.ready and worker.ready.get("metrics_port")
        ]

    # -- run ---------------------------------------------------------------------

    async def _watch(self, worker: _Worker) -> None:
        """Start ``worker`` again whenever it ends while the gateway runs."""
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            if self._stopping:
                return
            ran = time.monotonic() - worker.started
            if ran >= STEADY_S:
                worker.delay = RESTART_DELAY_S
            log.error(
                "gateway_worker_ended",
                worker=worker.index,
                code=code,
                ran_s=round(ran, 1),
                restart_in_s=worker.delay,
            )
            worker.ready = None
            await asyncio.sleep(worker.delay)
            worker.delay = min(MAX_RESTART_DELAY_S, worker.delay * 2)
            if self._stopping:
                return
            await self._spawn(worker)
            self.restarts += 1
            if worker.ready is None or "error" in worker.ready:
                why = str(worker.ready["error"]) if worker.ready else "it ended before it reported"
                log.error("gateway_worker_not_started", worker=worker.index, error=why)
                continue
            log.warning(
                "gateway_worker_restarted",
                worker=worker.index,
                pid=worker.ready.get("pid"),
                restarts=self.restarts,
            )

    def pids(self) -> list[int | None]:
        """Each worker's process id (None: not running)."""
        return [
            None if worker.process is None or worker.process.returncode is not None else worker.process.pid
            for worker in self._workers
        ]

    # -- stop --------------------------------------------------------------------

    async def stop(self) -> None:
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        running = [w.process for w in self._workers if w.process is not None and w.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if running:
            _done, pending = await asyncio.wait(
                [asyncio.create_task(process.wait()) for process in running],
                timeout=self.config.drain_s + STOP_GRACE_S,
            )
            for process in running:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            if pending:
                await asyncio.wait(pending)
        await self._close()
        log.info("gateway_stopped", port=self.port, workers=self.count)

    async def _close(self) -> None:
        self._stopping = True
        for worker in self._workers:  # a start that failed half-way: its workers end too
            if worker.process is not None and worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                await worker.process.wait()
        if self._metrics is not None:
            self._metrics.close()
        loop = asyncio.get_running_loop()
        if self._heads is not None:
            await self._heads.stop()
            with contextlib.suppress(Exception):  # the store may be away; the last head stays published
                await loop.run_in_executor(None, self._heads.publish_final)
        if self._audit is not None:
            await loop.run_in_executor(None, self._audit.close)
        if self._store is not None:
            self._store.close()
        if self._limits is not None:
            self._limits.close()
        for descriptor in self._lifeline:
            if descriptor >= 0:
                os.close(descriptor)
        self._lifeline = (-1, -1)
        for port in self._ports:
            port.release()
        if self._data_lock is not None:
            self._data_lock.release()


def _read_line(descriptor: int) -> bytes:
    """Read up to a newline or the end (a worker that ended before it reported)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(descriptor, 4096)
        if not chunk:
            break
        data += chunk
    return data


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(line)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
