"""A person lookup counted by the PostgreSQL store: on the event loop (as before) or in its executor.

    MUSTCHECK_TEST_POSTGRES=postgresql://... python benchmarks/person_quota_bench.py [lookups]

Prints, for each way, the wall time of one lookup awaited after another and the event loop thread's CPU
time a lookup. On the loop, the loop is blocked for the whole wall time (every other call waits); in the
executor it only hands the statement to a thread and takes the answer back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mustcheck_gateway.person_quota import StorePersonQuota
from mustcheck_gateway.store.postgres import PostgresStore

from backends import fresh_schema


async def _measure(quota: StorePersonQuota, lookups: int) -> None:
    loop = asyncio.get_running_loop()
    at = dt.datetime.now(dt.UTC)
    for way in ("on the loop", "in the executor") * 2:
        wall, cpu = time.perf_counter(), time.thread_time()
        for number in range(lookups):
            caller = f"caller-{number % 50}"
            if way == "on the loop":
                quota.take(caller, at, 10**9)
            else:
                await loop.run_in_executor(None, quota.take, caller, at, 10**9)
        wall = (time.perf_counter() - wall) / lookups * 1e6
        cpu = (time.thread_time() - cpu) / lookups * 1e6
        print(f"{way}: {wall:.0f} us wall a lookup, event loop thread CPU {cpu:.0f} us a lookup")


def main() -> None:
    lookups = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    with fresh_schema() as url:
        store = PostgresStore(url)
        try:
            asyncio.run(_measure(StorePersonQuota(store), lookups))
        finally:
            store.close()


if __name__ == "__main__":
    main()
