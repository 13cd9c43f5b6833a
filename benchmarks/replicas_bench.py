"""Scale-out: one gateway versus two replicas on one PostgreSQL store, and SQLite versus PostgreSQL.

    python benchmarks/replicas_bench.py [--rounds 3] [--seconds 5] [--postgres URL]

Each gateway runs in a child process with the production configuration (authentication, grants,
masking, the audit log, receipts). The same closed-loop load — 32 concurrent checks through one
``mustcheck.AsyncClient``, which balances over every address it is given — goes to each setup in
alternating rounds, and the medians are compared. For the PostgreSQL setups the database's own
counters (pg_stat_database) give the statements and rows it served per 1,000 checks. Each setup gets
a fresh database of its own (``mustcheck_bench``, made and dropped here), which also keeps other
clients out of those counters.

The load generator shares this machine's two cores with every gateway: two replicas here compete
for the same two cores, so their ratio measures the cost of the shared store, not the gain from a
second machine. The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

import psycopg
from load import LoadResult, RunningGateway, closed_loop, gateway_process

DEFAULT_SERVER = os.environ.get("MUSTCHECK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BENCH_DATABASE = "mustcheck_bench"
# PostgreSQL 15 backends report their statistics at most once a second, idle ones within 10 s.
STATS_SETTLE_S = 11.0
COUNTERS = ("xact_commit", "tup_returned", "tup_fetched", "tup_inserted", "tup_updated", "blks_read")


@contextmanager
def bench_database(server_url: str) -> Iterator[str]:
    """A fresh database for the run, dropped afterwards."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {BENCH_DATABASE}")
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{BENCH_DATABASE}"))
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")


def counters(url: str) -> dict[str, int]:
    """The database's counters, once every connection has reported (idle ones report within 10 s)."""
    time.sleep(STATS_SETTLE_S)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SELECT pg_stat_clear_snapshot()")
        row = connection.execute(
            f"SELECT {', '.join(COUNTERS)} FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return {name: int(value) for name, value in zip(COUNTERS, row, strict=True)}


@contextmanager
def setup(name: str, server_url: str) -> Iterator[tuple[RunningGateway, str | None]]:
    """One named setup on fresh stores: ``sqlite``, ``postgresql`` (one gateway) or ``postgresql x2``
    (two replicas); yields the gateway (addresses) and the database URL."""
    with ExitStack() as stack:
        if name == "sqlite":
            yield stack.enter_context(gateway_process()), None
            return
        url = stack.enter_context(bench_database(server_url))
        first = stack.enter_context(gateway_process("--store", url))
        if name == "postgresql":
            yield first, url
            return
        second = stack.enter_context(gateway_process("--store", url, "--no-load"))
        yield replace(first, target=f"{first.target},{second.target}"), url


def run(options: argparse.Namespace) -> dict[str, object]:
    names = ("sqlite", "postgresql", "postgresql x2")
    qps: dict[str, list[float]] = {name: [] for name in names}
    p99: dict[str, list[float]] = {name: [] for name in names}
    per_thousand: dict[str, dict[str, float]] = {}
    for round_ in range(1, options.rounds + 1):
        for name in names:
            with setup(name, options.postgres) as (gateway, url):
                measure = url is not None and round_ == options.rounds
                before = counters(url) if measure and url else {}
                result: LoadResult = asyncio.run(
                    closed_loop(gateway, concurrency=options.concurrency, seconds=options.seconds)
                )
                if measure and url:
                    after = counters(url)
                    per_thousand[name] = {
                        key: (after[key] - before[key]) * 1000 / result.requests for key in COUNTERS
                    }
            qps[name].append(result.qps)
            p99[name].append(result.percentile(99))
            print(f"round {round_}  {name:14s} {result.summary()}", flush=True)
    medians = {name: statistics.median(values) for name, values in qps.items()}
    for name in names:
        print(f"median {name:14s} {medians[name]:9.0f} checks/s  p99 {statistics.median(p99[name]):6.2f} ms")
    for name, figures in per_thousand.items():
        shown = ", ".join(f"{key} {value:,.0f}" for key, value in figures.items())
        print(f"PostgreSQL per 1,000 checks ({name}, last round): {shown}")
    return {
        "sqlite_qps": round(medians["sqlite"]),
        "postgresql_qps": round(medians["postgresql"]),
        "postgresql_x2_qps": round(medians["postgresql x2"]),
        "postgresql_vs_sqlite": round(medians["postgresql"] / medians["sqlite"], 2),
        "two_vs_one_replica": round(medians["postgresql x2"] / medians["postgresql"], 2),
        "pg_per_1000_checks": {name: {k: round(v) for k, v in f.items()} for name, f in per_thousand.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--postgres", default=DEFAULT_SERVER, metavar="URL", help="a server to make the database on"
    )
    options = parser.parse_args()
    print(json.dumps(run(options)))


if __name__ == "__main__":
    main()
