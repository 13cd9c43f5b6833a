"""``mustcheck serve``: run the gateway until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from ..audit import AuditIntegrityError, KeyRingError
from ..audit.space import DEFAULT_MIN_FREE_MB
from ..crypto.suites import SUITE_NAMES
from ..i18n import _
from ..import_workers import default_import_workers
from ..lookup_cache import DEFAULT_CACHE_ENTRIES
from ..policy import PolicyError, default_policy_dir
from ..server import (
    DEFAULT_ADMIN_DEPARTMENT,
    DEFAULT_LISTEN,
    ConfigError,
    GatewayConfig,
    TLSFiles,
    start_gateway,
)
from ..store import StoreError, is_postgres_url
from ..workers.supervisor import Supervisor, WorkerFailed, default_workers, max_workers
from .common import (
    EXIT_FAILURE,
    EXIT_INVALID,
    EXIT_OK,
    Subparsers,
    add_logging_options,
    add_policies_option,
    configure_logging_from,
    fail,
)
from .numbers import finite, whole

DEFAULT_DATA_DIR = Path("mustcheck-data")


def store_url(text: str) -> str:
    if not is_postgres_url(text):
        raise argparse.ArgumentTypeError(
            _("give a postgresql:// URL (without --store: the embedded SQLite store)")
        )
    return text


# Long enough for a load balancer's health check (typically every 1-5 s) to notice a draining gateway.
DEFAULT_DRAIN_S = 5.0
MOST_DRAIN_S = 600.0  # a load balancer moves callers in seconds; more only delays a stop
MOST_CACHE_ENTRIES = 10_000_000
MOST_MIN_FREE_MB = 1_048_576.0  # a terabyte


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "serve",
        help=_("run the gateway"),
        description=_(
            "Run the gateway: check, admin and audit services, health checking and reflection on one "
            "port. The audit log and the embedded store are created in the data directory on first run (with "
            "--store, the store's tables in that PostgreSQL database instead); a store with no caller yet "
            "gets a first admin caller whose token is written to DATA_DIR/admin.token (mode 0600)."
        ),
    )
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=_("address to listen on (default {address}; port 0 picks a free one)").format(
            address=DEFAULT_LISTEN
        ),
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help=_("where the audit log, the keys and the embedded store live (default ./{directory})").format(
            directory=DEFAULT_DATA_DIR
        ),
    )
    parser.add_argument(
        "--store",
        type=store_url,
        metavar="postgresql://…",
        help=_(
            "keep the lists, callers and feedback in this PostgreSQL database instead of the embedded "
            "SQLite file, so that several gateways can share them (put the password in PGPASSWORD or "
            "~/.pgpass rather than the URL). The audit log goes there too, unless --audit-store says "
            "otherwise."
        ),
    )
    parser.add_argument(
        "--audit-store",
        metavar="postgresql://…|embedded",
        help=_(
            "where the audit log lives: a PostgreSQL database that every gateway of the deployment shares "
            "(each appends its own log), or 'embedded' for the data directory's files (default: the "
            "--store database if given, else the files)"
        ),
    )
    add_policies_option(parser)
    parser.add_argument(
        "--http",
        metavar="HOST:PORT",
        help=_(
            "also serve the HTTP/JSON binding (POST /v1/Check, /v1/BatchCheck, /v1/ReportOutcome, "
            "/v1/ReceiptKeys; GET /openapi.json) on this address, with the same TLS options; off by "
            "default (docs/http.md)"
        ),
    )
    parser.add_argument(
        "--tls-cert", type=Path, metavar="FILE", help=_("server certificate (PEM): serve TLS")
    )
    parser.add_argument("--tls-key", type=Path, metavar="FILE", help=_("the server certificate's key (PEM)"))
    parser.add_argument(
        "--client-ca", type=Path, metavar="FILE", help=_("CA of client certificates: require mutual TLS")
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help=_("allow plaintext on a non-loopback address (warned about on every start)"),
    )
    parser.add_argument(
        "--admin-department",
        default=DEFAULT_ADMIN_DEPARTMENT,
        metavar="CODE",
        help=_("department of the first admin caller of an empty store (default {department})").format(
            department=DEFAULT_ADMIN_DEPARTMENT
        ),
    )
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help=_("serve Prometheus metrics over HTTP at /metrics on this address"),
    )
    parser.add_argument(
        "--cache-entries",
        type=whole(0, MOST_CACHE_ENTRIES),
        default=DEFAULT_CACHE_ENTRIES,
        metavar="N",
        help=_(
            "subjects the gateway keeps in memory until a write touches them (default {count}; 0: off)"
        ).format(count=DEFAULT_CACHE_ENTRIES),
    )
    parser.add_argument(
        "--import-workers",
        type=int,
        default=default_import_workers(),
        metavar="N",
        help=_(
            "processes that validate list imports while the gateway writes them (default: one per core, "
            "at most 2; 0: validate in the gateway process)"
        ),
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help=_(
            "gateway processes serving the port, all of one gateway: one audit log, rate limits and "
            "quotas across them, one metrics scrape; a worker that dies is started again (default: one "
            "per core; 1: a single process)"
        ),
    )
    parser.add_argument(
        "--drain-seconds",
        type=finite(0.0, MOST_DRAIN_S),
        default=DEFAULT_DRAIN_S,
        metavar="S",
        help=_(
            "on SIGTERM or Ctrl-C, report NOT_SERVING on gRPC health this long before the listener "
            "closes, so that load balancers move callers away first (default {seconds})"
        ).format(seconds=f"{DEFAULT_DRAIN_S:g}"),
    )
    parser.add_argument(
        "--audit-min-free-mb",
        type=finite(0.0, MOST_MIN_FREE_MB),
        default=DEFAULT_MIN_FREE_MB,
        metavar="MB",
        help=_(
            "free space the data directory's disk must keep: below it checks get UNAVAILABLE and health "
            "says NOT_SERVING until space is freed (default {megabytes}; 0: no watermark)"
        ).format(megabytes=DEFAULT_MIN_FREE_MB),
    )
    parser.add_argument(
        "--otel",
        action="store_true",
        help=_(
            "OpenTelemetry: a server span per call under the caller's W3C trace context, without "
            "identifiers (needs the extra mustcheck[otel] and a configured OpenTelemetry SDK)"
        ),
    )
    add_crypto_option(parser)
    add_logging_options(parser, default_level="info")
    parser.set_defaults(run=run)


def add_crypto_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--crypto",
        choices=SUITE_NAMES,
        default=None,
        help=_(
            "the crypto suite, chosen when the key ring is created and kept with it: international "
            "(Ed25519, SHA-256, AES-GCM) or sm (SM2, SM3, SM4); a key ring of another suite is refused "
            "(default: the key ring's; international for a new one)"
        ),
    )


def config_from(options: argparse.Namespace) -> GatewayConfig:
    if (options.tls_cert is None) != (options.tls_key is None):
        raise ConfigError(_("--tls-cert and --tls-key go together"))
    if options.client_ca and not options.tls_cert:
        raise ConfigError(_("--client-ca (mutual TLS) needs --tls-cert and --tls-key"))
    tls = TLSFiles(options.tls_cert, options.tls_key, options.client_ca) if options.tls_cert else None
    return GatewayConfig(
        data_dir=options.data_dir,
        listen=options.listen,
        http_listen=options.http,
        policy_dir=options.policies or default_policy_dir(),
        tls=tls,
        insecure=options.insecure,
        admin_department=options.admin_department,
        metrics_listen=options.metrics,
        lookup_cache_entries=options.cache_entries,
        store_url=options.store,
        audit_store=options.audit_store,
        import_workers=options.import_workers,
        drain_s=options.drain_seconds,
        audit_min_free_mb=max(0.0, options.audit_min_free_mb),
        crypto=options.crypto,
        tracing=options.otel,
    )


def run(options: argparse.Namespace) -> int:
    configure_logging_from(options)
    workers = default_workers() if options.workers is None else options.workers
    most = max_workers()
    if not 1 <= workers <= most:
        return fail(
            _("refusing to start: --workers must be from 1 to {most} (four per core), not {workers}").format(
                most=most, workers=workers
            ),
            EXIT_INVALID,
        )
    # One per core (those this process may run on), and never below the default, which counts every core
    # of the machine (a container's CPU set may be smaller).
    most_importers = max(default_workers(), default_import_workers())
    if not 0 <= options.import_workers <= most_importers:
        return fail(
            _(
                "refusing to start: --import-workers must be from 0 to {most} (one per core), not {count}"
            ).format(most=most_importers, count=options.import_workers),
            EXIT_INVALID,
        )
    try:
        if workers == 1:
            asyncio.run(_serve(config_from(options)))
        else:
            asyncio.run(_supervise(config_from(options), workers, options))
    except WorkerFailed as error:
        return fail(_("refusing to start: {error}").format(error=error), error.code)
    except PolicyError as error:
        return fail(_("refusing to start: {error}").format(error=error), EXIT_FAILURE)
    except ConfigError as error:
        return fail(_("refusing to start: {error}").format(error=error), EXIT_INVALID)
    except (StoreError, AuditIntegrityError, KeyRingError) as error:
        return fail(_("refusing to start: {error}").format(error=error), EXIT_FAILURE)
    return EXIT_OK


async def _serve(config: GatewayConfig) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    gateway = await start_gateway(config)
    _announce(gateway.admin_token_file, gateway.port, gateway.http_port)
    await stopping.wait()
    await gateway.stop()


async def _supervise(config: GatewayConfig, workers: int, options: argparse.Namespace) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    supervisor = Supervisor(config, workers, log_level=options.log_level, log_format=options.log_format)
    await supervisor.start()
    _announce(supervisor.admin_token_file, supervisor.port, supervisor.http_port)
    print(_("{count} worker processes serve it").format(count=workers), file=sys.stderr, flush=True)
    await stopping.wait()
    await supervisor.stop()


def _announce(admin_token_file: Path | None, port: int, http_port: int | None) -> None:
    if admin_token_file is not None:
        print(
            _("first start: the admin caller's token is in {path} (mode 0600)").format(path=admin_token_file),
            file=sys.stderr,
        )
    # tests/processes.py reads the port from the English line ("listening on port N").
    print(
        _("mustcheck gateway listening on port {port} (Ctrl-C stops it)").format(port=port),
        file=sys.stderr,
        flush=True,
    )
    if http_port is not None:
        # Not "listening on port": tests/processes.py reads the gRPC port from that line.
        print(_("HTTP/JSON binding on port {port}").format(port=http_port), file=sys.stderr, flush=True)
