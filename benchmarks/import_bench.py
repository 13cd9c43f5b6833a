"""Import N list rows through the gateway: time and peak memory (target: 1,000,000 rows in ≤ 60 s, ≤ 300 MB).

Writes N rows of the deterministic demo data set (as ``mustcheck demo-data`` does), starts a gateway
on a fresh store in a child process, provisions nothing but its first admin, and runs
``mustcheck lists import`` in another child process, timing it. The peak resident memory of both
processes (and of the gateway's import workers) is read from the kernel. The last line is one JSON
object: rows, seconds, peak_rss_mb.

    python benchmarks/import_bench.py --rows 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from load import children, memory_mb, process_cpu

from mustcheck_gateway.demo_data import generate_rows
from mustcheck_gateway.list_rows import write_jsonl
from mustcheck_gateway.policy import default_policy_dir, load_policies

TARGET_SECONDS = 60.0
TARGET_RSS_MB = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--rows-file",
        type=Path,
        metavar="FILE",
        help="keep the generated rows in FILE and reuse it if it is there (same --rows, same day)",
    )
    parser.add_argument(
        "--import-workers", type=int, metavar="N", help="the gateway's --import-workers (default: its own)"
    )
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mustcheck-import-"))
    try:
        run(options, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(options: argparse.Namespace, work: Path) -> None:
    rows_file = options.rows_file or work / "rows.jsonl"
    if rows_file.exists():
        with rows_file.open("rb") as lines:
            written = sum(1 for _ in lines)
        print(f"# reusing {rows_file} ({written} rows)", flush=True)
    else:
        written = generate(rows_file, options.rows)

    data_dir = work / "data"
    workers = [] if options.import_workers is None else ["--import-workers", str(options.import_workers)]
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mustcheck_gateway",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
            *workers,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    port = None
    assert gateway.stderr is not None
    for line in gateway.stderr:
        found = re.search(r"listening on port (\d+)", line)
        if found:
            port = int(found.group(1))
            break
    threading.Thread(target=lambda: [None for _ in gateway.stderr], daemon=True).start()  # type: ignore[union-attr]
    try:
        command = [
            sys.executable,
            "-m",
            "mustcheck_gateway",
            "lists",
            "import",
            str(rows_file),
            "--source",
            "bench",
            "--gateway",
            f"127.0.0.1:{port}",
            "--token-file",
            str(data_dir / "admin.token"),
        ]
        started = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        importer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        importer_peak = 0.0
        while importer.poll() is None:
            importer_peak = max(importer_peak, memory_mb(importer.pid).get("VmHWM", 0.0))
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        report, err = importer.communicate()
        gateway_peak = memory_mb(gateway.pid).get("VmHWM", 0.0)
        worker_peak = max((memory_mb(pid).get("VmHWM", 0.0) for pid in children(gateway.pid)), default=0.0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        importer_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        gateway_cpu = process_cpu(gateway.pid)
        workers_cpu = sum(process_cpu(pid) for pid in children(gateway.pid))
    finally:
        gateway.terminate()
        gateway.wait(60)
    print(report.strip() or err.strip())
    if importer.returncode != 0:
        raise SystemExit(f"import failed ({importer.returncode}): {err}")
    peak = max(importer_peak, gateway_peak, worker_peak)
    print(
        f"# {written} rows in {seconds:.1f} s ({written / seconds:,.0f} rows/s); peak RSS gateway "
        f"{gateway_peak:.0f} MB, its import workers {worker_peak:.0f} MB (each, at most), importer "
        f"{importer_peak:.0f} MB (targets: <= {TARGET_SECONDS:.0f} s, "
        f"<= {TARGET_RSS_MB:.0f} MB)"
    )
    print(
        json.dumps(
            {
                "rows": written,
                "seconds": round(seconds, 1),
                "peak_rss_mb": round(peak, 1),
                "gateway_peak_rss_mb": round(gateway_peak, 1),
                "worker_peak_rss_mb": round(worker_peak, 1),
                "cpu_seconds": {
                    "gateway": round(gateway_cpu, 1),
                    "import_workers": round(workers_cpu, 1),
                    "importer": round(importer_cpu, 1),
                },
                "importer_peak_rss_mb": round(importer_peak, 1),
            }
        )
    )


def generate(rows_file: Path, rows: int) -> int:
    policy = load_policies(default_policy_dir())
    started = time.perf_counter()
    with rows_file.open("w", encoding="utf-8") as out:
        written = write_jsonl(itertools.islice(generate_rows(rows, 2016, dt.date.today(), policy), rows), out)
    print(
        f"# generated {written} rows ({rows_file.stat().st_size / 1e6:.0f} MB) in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return written


if __name__ == "__main__":
    main()
