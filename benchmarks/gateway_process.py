"""A gateway for benchmarks, in a process of its own: real store, demo data, one provisioned caller.

Run by the benchmark scripts, not by people: prints one JSON line (port, token, admin token, sample
subjects) on stdout when ready and serves until its standard input closes.

    python benchmarks/gateway_process.py --data-dir DIR [--no-audit] [--subjects N] [--prebuilt]
        [--lookup-cache-entries N] [--strict-grant] [--store URL [--no-load]]

``--prebuilt`` serves the store already in DIR (see ``build_store.py``) instead of loading demo
rows; ``--strict-grant`` grants as production would (a purpose always, an authorisation reference
for persons) instead of the most permissive grant. With ``--store postgresql://…`` several such
processes are replicas on one database: the first loads the demo data and provisions the caller; the
others (``--no-load``) find them there.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import os
import resource
import sys
from pathlib import Path

from mustcheck._channel import auth_metadata, sync_channel
from mustcheck._generated.v1 import admin_pb2, admin_pb2_grpc
from mustcheck_gateway.audit.backends import is_audit_log
from mustcheck_gateway.demo_data import generate_rows
from mustcheck_gateway.list_rows import load_rows
from mustcheck_gateway.logs import configure_logging
from mustcheck_gateway.lookup_cache import DEFAULT_CACHE_ENTRIES
from mustcheck_gateway.server import GatewayConfig, start_gateway

CALLER = "bench"


def provision(target: str, admin_token: str, *, strict: bool = False) -> str:
    metadata = auth_metadata(admin_token)
    with sync_channel(target, None) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        admin.CreateCaller(
            admin_pb2.CreateCallerRequest(caller_id=CALLER, department="approval"),
            metadata=metadata,
            timeout=10,
        )
        grant = admin_pb2.Grant(
            caller_id=CALLER,
            matters=["*"],
            subject_kinds=["organization", "person"],
            purpose_required=strict,
            authorization_ref_required_for_persons=strict,
            rate_per_second=1e9,
            burst=1_000_000_000,
            daily_person_quota=1_000_000_000,
        )
        admin.SetGrant(admin_pb2.SetGrantRequest(grant=grant), metadata=metadata, timeout=10)
        return admin.IssueToken(
            admin_pb2.IssueTokenRequest(caller_id=CALLER), metadata=metadata, timeout=10
        ).token


async def serve(options: argparse.Namespace) -> None:
    config = GatewayConfig(
        data_dir=options.data_dir,
        listen="127.0.0.1:0",
        audit_enabled=not options.no_audit,
        store_url=options.store,
        audit_store=options.audit_store,
        lookup_cache_entries=options.lookup_cache_entries,
        crypto=options.crypto,
    )
    gateway = await start_gateway(config)
    rows = (
        []
        if options.prebuilt
        else list(generate_rows(options.subjects, 2016, dt.date.today(), gateway.policy))
    )
    if rows and not options.no_load:
        load_rows(gateway.store, rows, gateway.policy, actor="bench", action="bench-load")
    target = f"127.0.0.1:{gateway.port}"
    token = admin_token = ""
    if gateway.admin_token_file is not None:
        admin_token = gateway.admin_token_file.read_text().strip()
        token = await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(provision, target, admin_token, strict=options.strict_grant)
        )
    subjects = sorted({row["subject_code"] for row in rows})
    cpu_at_ready = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    ready = {"port": gateway.port, "token": token, "admin_token": admin_token, "subjects": subjects}
    print(json.dumps(ready), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"# gateway cpu: user {usage.ru_utime:.2f} s, system {usage.ru_stime:.2f} s "
        f"(loading {cpu_at_ready:.2f} s); threads: {thread_cpu()}",
        file=sys.stderr,
    )
    audit = gateway.audit
    if is_audit_log(audit) and audit.commits:
        print(
            f"# audit: {audit.last_seq} records in {audit.commits} commits "
            f"({audit.last_seq / audit.commits:.1f} records a commit)",
            file=sys.stderr,
        )
    await gateway.stop()
    writer = resource.getrusage(resource.RUSAGE_CHILDREN)  # the audit writer process, reaped by stop()
    if writer.ru_utime + writer.ru_stime:
        print(
            f"# audit writer process cpu: user {writer.ru_utime:.2f} s, system {writer.ru_stime:.2f} s",
            file=sys.stderr,
        )


def thread_cpu() -> str:
    """CPU seconds by thread name (Linux /proc), to see where a gateway's time goes."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        totals[name] = totals.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return ", ".join(f"{name} {seconds:.2f}" for name, seconds in sorted(totals.items(), key=lambda i: -i[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--no-audit", action="store_true")
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--prebuilt", action="store_true", help="serve the store in --data-dir as it is")
    parser.add_argument("--lookup-cache-entries", type=int, default=DEFAULT_CACHE_ENTRIES)
    parser.add_argument("--strict-grant", action="store_true", help="purpose and authorisation ref required")
    parser.add_argument("--store", metavar="URL", help="a postgresql:// store shared by replicas")
    parser.add_argument("--crypto", choices=("international", "sm"), help="the crypto suite (docs/crypto.md)")
    parser.add_argument("--no-load", action="store_true", help="the store holds the data already")
    parser.add_argument(
        "--audit-store", metavar="URL|embedded", help="where the audit log goes (serve's option)"
    )
    options = parser.parse_args()
    configure_logging(level="warning")
    asyncio.run(serve(options))


if __name__ == "__main__":
    main()
