"""A gateway for benchmarks, in a process of its own: real store, demo data, one provisioned caller.

Run by the benchmark scripts, not by people: prints one JSON line (port, token, sample subjects)
on stdout when ready and serves until its standard input closes.

    python benchmarks/gateway_process.py --data-dir DIR [--no-audit] [--subjects N]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import resource
import sys
from pathlib import Path

from mustcheck._channel import auth_metadata, sync_channel
from mustcheck._generated.v1 import admin_pb2, admin_pb2_grpc
from mustcheck_gateway.audit import AuditLog
from mustcheck_gateway.demo_data import generate_rows
from mustcheck_gateway.list_rows import load_rows
from mustcheck_gateway.logs import configure_logging
from mustcheck_gateway.server import GatewayConfig, start_gateway

CALLER = "bench"


def provision(target: str, admin_token: str) -> str:
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
            purpose_required=False,
            authorization_ref_required_for_persons=False,
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
        data_dir=options.data_dir, listen="127.0.0.1:0", audit_enabled=not options.no_audit
    )
    gateway = await start_gateway(config)
    rows = list(generate_rows(options.subjects, 2016, dt.date.today(), gateway.policy))
    load_rows(gateway.store, rows, gateway.policy, actor="bench", action="bench-load")
    target = f"127.0.0.1:{gateway.port}"
    token = ""
    if gateway.admin_token_file is not None:
        admin_token = gateway.admin_token_file.read_text().strip()
        token = await asyncio.get_running_loop().run_in_executor(None, provision, target, admin_token)
    subjects = sorted({row["subject_code"] for row in rows})
    cpu_at_ready = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    print(json.dumps({"port": gateway.port, "token": token, "subjects": subjects}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"# gateway cpu: user {usage.ru_utime:.2f} s, system {usage.ru_stime:.2f} s "
        f"(loading {cpu_at_ready:.2f} s); threads: {thread_cpu()}",
        file=sys.stderr,
    )
    audit = gateway.audit
    if isinstance(audit, AuditLog) and audit.commits:
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
    options = parser.parse_args()
    configure_logging(level="warning")
    asyncio.run(serve(options))


if __name__ == "__main__":
    main()
