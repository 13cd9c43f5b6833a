"""Build a list store of N entries for the scale benchmark, straight through the store API (no gRPC).

Run by ``run.py`` in a process of its own. The rows are the deterministic demo data set (as
``mustcheck demo-data`` writes it), validated by ``entry_from_row`` and written with
``SqliteStore.import_entries`` in one streaming transaction. Writes ``subjects.json`` next to the
store: a random sample of distinct subject codes (for checks that miss every cache).

    python benchmarks/build_store.py --data-dir DIR --entries N [--sample K] [--today YYYY-MM-DD]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mustcheck_gateway.demo_data import generate_rows
from mustcheck_gateway.list_rows import entry_from_row
from mustcheck_gateway.policy import PolicySet, default_policy_dir, load_policies
from mustcheck_gateway.store import DEFAULT_FILE_NAME, ListEntry, open_store
from mustcheck_gateway.store.codec import encode_entry

SEED = 2016
SUBJECTS_FILE = "subjects.json"


def entries(rows: Iterator[dict[str, Any]], policy: PolicySet, codes: list[str]) -> Iterator[ListEntry]:
    for row in rows:
        codes.append(row["subject_code"])
        yield entry_from_row(row, policy)


def build(data_dir: Path, count: int, sample: int, today: dt.date) -> dict[str, Any]:
    policy = load_policies(default_policy_dir())
    started = time.perf_counter()
    store = open_store(data_dir)
    codes: list[str] = []
    try:
        rows = itertools.islice(generate_rows(count, SEED, today, policy), count)
        outcome = store.import_entries(
            map(encode_entry, entries(rows, policy, codes)),
            actor="bench",
            action="bench-build",
            keep=lambda: True,
        )
    finally:
        store.close()
    distinct = list(dict.fromkeys(codes))
    subjects = random.Random(SEED).sample(distinct, min(sample, len(distinct)))
    (data_dir / SUBJECTS_FILE).write_text(json.dumps(subjects), encoding="utf-8")
    with sqlite3.connect(data_dir / DEFAULT_FILE_NAME) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {
        "entries": outcome.inserted,
        "subjects": len(distinct),
        "seconds": round(time.perf_counter() - started, 1),
        "store_mb": round((data_dir / DEFAULT_FILE_NAME).stat().st_size / 1e6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--entries", type=int, required=True)
    parser.add_argument("--sample", type=int, default=5000)
    parser.add_argument("--today", type=dt.date.fromisoformat, default=dt.date.today())
    options = parser.parse_args()
    options.data_dir.mkdir(parents=True, exist_ok=True)
    print(json.dumps(build(options.data_dir, options.entries, options.sample, options.today)), flush=True)


if __name__ == "__main__":
    main()
