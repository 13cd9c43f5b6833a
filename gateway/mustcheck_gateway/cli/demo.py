"""``mustcheck demo``: a fresh embedded store with demo data, a short tour, then keep serving."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from mustcheck import Client, InvalidSubject, MustCheckError
from mustcheck._channel import auth_metadata, sync_channel
from mustcheck._generated.v1 import admin_pb2, admin_pb2_grpc

from ..audit import KeyRingError
from ..bootstrap import write_secret
from ..china_time import CHINA_STANDARD_TIME
from ..data_lock import in_use
from ..demo_data import Showcase, generate_rows, showcase
from ..i18n import N_, _
from ..list_rows import load_rows
from ..policy import PolicyError, PolicySet, default_policy_dir
from ..server import DEFAULT_LISTEN, ConfigError, GatewayConfig, GatewayThread
from .common import (
    EXIT_FAILURE,
    EXIT_INVALID,
    EXIT_OK,
    Subparsers,
    add_logging_options,
    configure_logging_from,
    fail,
    render_result,
)
from .numbers import whole
from .reasons import explained, subject_error
from .rpc import CallOptions
from .serve import add_crypto_option

# The demo data's decisions go back less than ten years; it is complete since then (R6).
DEMO_COMPLETE_YEARS = 10

DEFAULT_DEMO_DIR = Path("mustcheck-demo")
DEMO_MARKER = ".mustcheck-demo"
DEMO_TOKEN_FILE = "demo.token"
DEMO_CALLER = "demo"
# The auditor (审计/监察): who queried whom, was the log altered, did every approval check.
DEMO_AUDITOR = "demo-auditor"
DEMO_AUDITOR_TOKEN_FILE = "auditor.token"
DEMO_AUDITOR_DEPARTMENT = "ndrc"  # the credit authority that supervises the joint measures
DEMO_SUBJECTS = 2000
DEMO_SEED = 2016
DEMO_DEPARTMENT = "approval"  # a consolidated approval bureau (行政审批局) handles many matters
INVALID_EXAMPLE = "914403001922038217"  # a published code with its check character changed


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "demo",
        help=_("run the gateway on demo data and take a short tour"),
        description=_(
            "Start the gateway on a fresh embedded store loaded with demo data, check a few example "
            "subjects through the SDK (red list, black list, a person linked to a black-listed company, an "
            "entry under objection, an invalid ID), then keep serving."
        ),
    )
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=_("address to listen on (default {address})").format(address=DEFAULT_LISTEN),
    )
    parser.add_argument(
        "--http",
        metavar="HOST:PORT",
        help=_("also serve the HTTP/JSON binding on this address (off by default; docs/http.md)"),
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DEMO_DIR,
        metavar="DIR",
        help=_(
            "where the demo's store, audit log and tokens are created afresh (default ./{directory})"
        ).format(directory=DEFAULT_DEMO_DIR),
    )
    parser.add_argument(
        "--subjects",
        type=whole(1, 1_000_000),
        default=DEMO_SUBJECTS,
        metavar="N",
        help=_("demo subjects to load (default {count})").format(count=DEMO_SUBJECTS),
    )
    parser.add_argument(
        "--exit-after-tour", action="store_true", help=_("stop after the tour instead of serving")
    )
    add_crypto_option(parser)
    add_logging_options(parser, default_level="warning")
    parser.set_defaults(run=run)


@contextlib.contextmanager
def _starting(directory: Path) -> Iterator[None]:
    """Hold the parent folder's lock while a demo empties ``directory`` and its gateway takes it: a demo
    started at the same moment waits, then finds the directory held (no lock file is left behind)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(directory.parent, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def fresh_demo_dir(directory: Path) -> None:
    """Empty ``directory`` for a new demo, refusing one that holds anything but an earlier demo, and one
    that a running gateway holds (another demo still serving)."""
    busy = in_use(directory)
    if busy is not None:
        raise ConfigError(_("{busy}; stop it or choose another --data-dir").format(busy=busy))
    if directory.exists() and any(directory.iterdir()):
        if not (directory / DEMO_MARKER).is_file():
            raise ConfigError(
                _("{directory} is not empty and holds no earlier demo; choose another --data-dir").format(
                    directory=directory
                )
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / DEMO_MARKER).write_text("a mustcheck demo data directory: `mustcheck demo` empties it\n")


def run(options: argparse.Namespace) -> int:
    configure_logging_from(options)
    today = dt.date.today()
    config = GatewayConfig(
        data_dir=options.data_dir,
        listen=options.listen,
        http_listen=options.http,
        policy_dir=default_policy_dir(),
        crypto=options.crypto,
    )
    gateway_thread = GatewayThread(config)
    try:
        # Two demos started at once on one directory: the second waits, then is refused, rather than
        # emptying the directory the first has just taken (its gateway's lock comes only at start).
        with _starting(options.data_dir):
            fresh_demo_dir(options.data_dir)
            gateway = gateway_thread.start()
    except PolicyError as error:
        return fail(_("refusing to start: {error}").format(error=error), EXIT_FAILURE)
    except ConfigError as error:
        return fail(str(error), EXIT_INVALID)
    except KeyRingError as error:  # --crypto sm without the SM2 library: the message names the extra
        return fail(_("refusing to start: {error}").format(error=error), EXIT_FAILURE)
    try:
        rows = generate_rows(options.subjects, DEMO_SEED, today, gateway.policy)
        count, version = load_rows(gateway.store, rows, gateway.policy, actor="demo", action="demo-load")
        # The demo data is a complete (synthetic) snapshot of the lists: it attests its years (R6).
        version = gateway.store.set_data_complete_since(
            dt.datetime(today.year - DEMO_COMPLETE_YEARS, 1, 1, tzinfo=CHINA_STANDARD_TIME),
            actor="demo",
            how="import",
            at=dt.datetime.now(dt.UTC),
        )
        host = options.listen.rsplit(":", 1)[0]
        address = f"{host}:{gateway.port}"
        token_file = options.data_dir / DEMO_TOKEN_FILE
        admin_token_file = gateway.admin_token_file
        if admin_token_file is None:
            return fail(
                _("the demo store already had callers; no admin token was bootstrapped"), EXIT_FAILURE
            )
        admin_token = admin_token_file.read_text().strip()
        write_secret(token_file, provision_demo_caller(address, admin_token))
        auditor_token_file = options.data_dir / DEMO_AUDITOR_TOKEN_FILE
        write_secret(auditor_token_file, provision_demo_auditor(address, admin_token))
        print(
            _(
                "MustCheck demo: {count} list entries for {subjects} subjects loaded (data version "
                "{version}) into {directory}"
            ).format(count=count, subjects=options.subjects, version=version, directory=options.data_dir)
        )
        print(
            _(
                "Gateway listening on {address}. The demo caller {caller!r} (department {department!r}, "
                "granted every matter) has its token in {token_file};"
            ).format(address=address, caller=DEMO_CALLER, department=DEMO_DEPARTMENT, token_file=token_file)
        )
        print(
            _(
                "the first admin's token is in {admin_token_file}, and the auditor {auditor!r}'s in "
                "{auditor_token_file}."
            ).format(
                admin_token_file=admin_token_file, auditor=DEMO_AUDITOR, auditor_token_file=auditor_token_file
            )
            + "\n"
        )
        if gateway.http_port is not None:
            http_host = options.http.rsplit(":", 1)[0]
            print(
                _("HTTP/JSON binding: http://{address}/v1/Check (OpenAPI: /openapi.json)").format(
                    address=f"{http_host}:{gateway.http_port}"
                )
                + "\n",
                flush=True,
            )
        cases = showcase(DEMO_SEED, today, gateway.policy)
        with Client(address, token=token_file.read_text().strip(), timeout=5) as client:
            tour(client, cases, gateway.policy)
        report_file = options.data_dir / "report.html"
        print(
            _("The auditor's view of these checks (who checked whom, coverage, measures, the log verified):")
        )
        print(
            f"  mustcheck audit report --out {report_file} --gateway {address} "
            f"--token-file {auditor_token_file}"
        )
        if options.exit_after_tour:
            return EXIT_OK
        print("\n" + _("The gateway keeps serving. From another terminal, try:"))
        print(
            f"  mustcheck check {cases.black_company} --matter MOF-0001 --purpose 供应商资格审查 "
            f"--gateway {address} --token-file {token_file}"
        )
        print(
            f"  mustcheck check {cases.linked_person} --matter ORGANIZATION-0001 --purpose 录用考察 "
            f"--authorization-ref 授权-0001 --gateway {address} --token-file {token_file} --json"
        )
        print(f"  mustcheck admin callers list --gateway {address} --token-file {admin_token_file}")
        print("  mustcheck policies show            # " + _("every matter code"))
        print(_("Ctrl-C stops it."), flush=True)
        _wait_for_interrupt()
        return EXIT_OK
    finally:
        gateway_thread.stop()


def provision_demo_caller(address: str, admin_token: str) -> str:
    """Through the admin API: a caller granted every matter and both subject kinds; returns its token."""
    call = CallOptions(timeout=10.0, metadata=auth_metadata(admin_token))
    with sync_channel(address, None) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        admin.CreateCaller(
            admin_pb2.CreateCallerRequest(
                caller_id=DEMO_CALLER, name="demo approval system", department=DEMO_DEPARTMENT
            ),
            **call,
        )
        grant = admin_pb2.Grant(
            caller_id=DEMO_CALLER,
            matters=["*"],
            subject_kinds=["organization", "person"],
            purpose_required=True,
            authorization_ref_required_for_persons=True,
            rate_per_second=500,
            burst=1000,
            daily_person_quota=1000,
        )
        admin.SetGrant(admin_pb2.SetGrantRequest(grant=grant), **call)
        issued = admin.IssueToken(admin_pb2.IssueTokenRequest(caller_id=DEMO_CALLER, label="demo"), **call)
    return issued.token


def provision_demo_auditor(address: str, admin_token: str) -> str:
    """Through the admin API: an auditor caller (audit queries, reports, replays); returns its token."""
    call = CallOptions(timeout=10.0, metadata=auth_metadata(admin_token))
    with sync_channel(address, None) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        admin.CreateCaller(
            admin_pb2.CreateCallerRequest(
                caller_id=DEMO_AUDITOR,
                name="demo auditor",
                department=DEMO_AUDITOR_DEPARTMENT,
                roles=["auditor"],
            ),
            **call,
        )
        issued = admin.IssueToken(admin_pb2.IssueTokenRequest(caller_id=DEMO_AUDITOR, label="demo"), **call)
    return issued.token


def tour(client: Client, cases: Showcase, policy: PolicySet) -> None:
    steps: list[tuple[str, str, str]] = [
        (
            N_("A red-listed company (A-grade taxpayer) applying through a joint approval"),
            cases.red_company,
            "APPROVAL-0001",
        ),
        (
            N_("A black-listed company (judgment defaulter) bidding in government procurement"),
            cases.black_company,
            "MOF-0001",
        ),
        (
            N_("Its legal representative, applying for civil-service recruitment (R7, R13)"),
            cases.linked_person,
            "ORGANIZATION-0001",
        ),
        (
            N_("A company whose record is under objection: measures suspended (R4)"),
            cases.objection_company,
            "MOF-0001",
        ),
        (
            N_("A company with no bad record for three years: green channel (R6)"),
            cases.clean_company,
            "APPROVAL-0001",
        ),
        (
            N_("A government body with a government-integrity record (76号)"),
            cases.government_body,
            "MOHRSS-0001",
        ),
        (
            N_("An invalid ID: a published code with a wrong check character (R1)"),
            INVALID_EXAMPLE,
            "MOF-0001",
        ),
    ]
    for number, (title, subject, matter) in enumerate(steps, start=1):
        matter_name = policy.matters[matter].name if matter in policy.matters else matter
        print(f"[{number}] {_(title)}")
        print(
            "    "
            + _("checking {subject} for matter {matter} ({name})").format(
                subject=subject, matter=matter, name=matter_name
            )
        )
        try:
            result = client.check(subject, matter, purpose="demo tour", authorization_ref="DEMO-AUTH-0001")
        except InvalidSubject as error:
            # In English the gateway's words, rule included ([uscc.check_character]: .ci/run greps it).
            print("    " + _("rejected: {message}").format(message=subject_error(error)) + "\n")
            continue
        except MustCheckError as error:
            print("    " + _("error: {message}").format(message=explained(error)) + "\n")
            continue
        print("    " + render_result(result).replace("\n", "\n    ") + "\n")


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handle)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(_("stopping"), file=sys.stderr)
