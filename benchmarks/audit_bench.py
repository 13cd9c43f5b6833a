"""Check throughput with auditing on versus off: same run, same load (target: ratio >= 0.8).

Two gateways (one with the audit log, one without) run in child processes on the same data;
the same closed-loop load (SDK, concurrency 32) is sent to each in alternating rounds, and the
medians are compared. Its last line is one JSON object.

``--backend postgresql --postgres URL`` measures the PostgreSQL backend instead of the embedded
files: both gateways keep their lists in PostgreSQL (a fresh schema each, dropped afterwards), and the
audited one writes its audit log there too (group commits into the shared database).

    python benchmarks/audit_bench.py [--rounds 3] [--seconds 5] [--concurrency 32]
        [--backend embedded|postgresql] [--postgres postgresql://…]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from load import closed_loop, gateway_process, median, open_loop

TARGET_RATIO = 0.8


@contextmanager
def schema(url: str | None) -> Iterator[tuple[str, ...]]:
    """``--store URL`` options for a fresh schema on ``url`` (dropped afterwards); none without a URL."""
    if url is None:
        yield ()
        return
    import psycopg

    name = f"mustcheck_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {name}")
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"{query.get('options', '')} -csearch_path={name}".strip()
    try:
        yield ("--store", urlunsplit(parts._replace(query=urlencode(query))))
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {name} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--rate",
        type=float,
        default=500.0,
        help="fixed open-loop rate for the CPU-per-check phase (default 500/s)",
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s each")
    parser.add_argument("--backend", choices=("embedded", "postgresql"), default="embedded")
    parser.add_argument("--postgres", metavar="URL", help="the PostgreSQL server (--backend postgresql)")
    options = parser.parse_args()
    if options.backend == "postgresql" and not options.postgres:
        parser.error("--backend postgresql needs --postgres URL")
    server = options.postgres if options.backend == "postgresql" else None
    if options.quick:
        options.rounds, options.seconds = 1, 2.0
    print(
        f"# {dt.datetime.now().isoformat(timespec='seconds')} {platform.python_version()} "
        f"{os.cpu_count()} cores; {options.rounds} rounds x {options.seconds:g} s, "
        f"concurrency {options.concurrency}; audit backend {options.backend}"
    )
    on_qps: list[float] = []
    off_qps: list[float] = []
    with (
        schema(server) as on_store,
        schema(server) as off_store,
        gateway_process(*on_store) as audited,
        gateway_process("--no-audit", *off_store) as unaudited,
    ):
        for round_number in range(1, options.rounds + 1):
            for label, gateway, sink in (("audit on ", audited, on_qps), ("audit off", unaudited, off_qps)):
                result = asyncio.run(
                    closed_loop(
                        gateway, concurrency=options.concurrency, seconds=options.seconds, seed=round_number
                    )
                )
                sink.append(result.qps)
                print(f"round {round_number} {label}: {result.summary()}", flush=True)
        cpu_per_check = {}
        for label, gateway in (("audit on", audited), ("audit off", unaudited)):
            before = gateway.cpu_seconds()
            fixed = asyncio.run(open_loop(gateway, rate=options.rate, seconds=options.seconds))
            cpu_per_check[label] = (gateway.cpu_seconds() - before) / fixed.requests * 1e6
            print(
                f"fixed {options.rate:g}/s {label}: gateway CPU {cpu_per_check[label]:.0f} us a check; "
                f"{fixed.summary()}",
                flush=True,
            )
    ratio = median(on_qps) / median(off_qps)
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(
        f"median audit on {median(on_qps):.0f} checks/s, off {median(off_qps):.0f} checks/s: "
        f"ratio {ratio:.3f} (target >= {TARGET_RATIO}: {verdict})"
    )
    print(
        json.dumps(
            {
                "audit_on_qps": round(median(on_qps), 1),
                "audit_off_qps": round(median(off_qps), 1),
                "ratio": round(ratio, 3),
                "target": TARGET_RATIO,
                "backend": options.backend,
                "concurrency": options.concurrency,
                "fixed_rate": options.rate,
                "cpu_us_per_check_on": round(cpu_per_check["audit on"]),
                "cpu_us_per_check_off": round(cpu_per_check["audit off"]),
            }
        )
    )


if __name__ == "__main__":
    main()
