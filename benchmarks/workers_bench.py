"""``workers_speedup``: closed-loop checks/s of ``mustcheck serve --workers 2`` ÷ ``--workers 1``.

    python benchmarks/workers_bench.py [--quick] [--cpus A-B] [--workers 1,2,4,8] [--rounds R]
                                       [--seconds S] [--concurrency C]

One data directory is prepared once (demo data, a caller with a production grant: ``gateway_process.py
--strict-grant``); then, in alternating order each round, ``mustcheck serve --workers N`` serves it
(embedded store and audit log, receipts on) and the same generator (this process, the SDK's
``AsyncClient``, ``C`` checks in flight) runs a closed loop against it for ``S`` seconds. The kernel
spreads *connections* over the workers, and the channels of one process share a connection, so the
generator reaches the gateway through 16 addresses of the loopback network (127.0.0.1 … 127.0.0.16:
16 connections, round robin); the gateway listens on 0.0.0.0 (``--insecure``; a benchmark on a
machine of one's own). ``workers_speedup`` is the median over the rounds of checks/s with 2 workers ÷
with 1; with more worker counts (``--workers 1,2,4,8``, meant for machines whose ``--cpus`` give the
gateway cores of its own) each count's ratio to 1 is printed too. The gateway's CPU a check (all its
processes: supervisor, workers, audit writer) is printed as context. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load import process_cpu
from run import AUTHORIZATION_REF, PURPOSE, child, cpu_self, descendants, parse_cpus, tree_cpu

from mustcheck import AsyncClient

HERE = Path(__file__).resolve().parent
ADDRESSES = 16
MATTERS = ("MOHURD-0001", "MOF-0001")


class Serve:
    """``mustcheck serve --workers N`` on a prepared data directory, as a child process."""

    def __init__(self, data_dir: Path, workers: int, server_cpus: set[int] | None) -> None:
        def pin() -> None:
            if server_cpus is not None:
                os.sched_setaffinity(0, server_cpus)

        self.process = subprocess.Popen(
            [sys.executable, "-m", "mustcheck_gateway", "serve", "--workers", str(workers),
             "--listen", "0.0.0.0:0", "--insecure", "--data-dir", str(data_dir),
             "--drain-seconds", "0", "--log-level", "error"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            preexec_fn=pin,
        )  # fmt: skip
        self.lines: list[str] = []
        self.port = 0
        ready = threading.Event()

        def drain() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.lines.append(line)
                found = re.search(r"listening on port (\d+)", line)
                if found:
                    self.port = int(found.group(1))
                    ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(60):
            self.process.kill()
            raise RuntimeError("the gateway did not start:\n" + "".join(self.lines))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def closed_loop(port: int, token: str, subjects: list[str], *, concurrency: int, seconds: float) -> int:
    """Checks answered in ``seconds`` by ``concurrency`` callers, each sending its next when answered."""
    rng = random.Random(port)
    targets = [f"127.0.0.{i}:{port}" for i in range(1, ADDRESSES + 1)]
    async with AsyncClient(targets, token=token, timeout=30) as client:
        for _ in range(2 * ADDRESSES):  # every connection made before the clock starts
            await client.check(subjects[0], MATTERS[0], purpose=PURPOSE, authorization_ref=AUTHORIZATION_REF)
        answered = 0
        deadline = time.perf_counter() + seconds

        async def caller() -> None:
            nonlocal answered
            while time.perf_counter() < deadline:
                await client.check(
                    rng.choice(subjects),
                    rng.choice(MATTERS),
                    purpose=PURPOSE,
                    authorization_ref=AUTHORIZATION_REF,
                )
                answered += 1

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return answered


@dataclass(frozen=True)
class Round:
    rate: float  # checks/s
    gateway_us: float  # gateway CPU (all its processes) a check
    gateway_cores: float  # cores the gateway kept busy
    generator_cores: float  # cores the generator kept busy
    by_process: dict[str, float]  # cores busy by kind of process (supervisor, worker, audit writer)


def _kind(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "gone"
    for marker, kind in (("workers.worker", "workers"), ("writer_process", "audit writer")):
        if marker in command:
            return kind
    return "supervisor" if " serve " in command else "other"


def cpu_by_kind(root: int) -> dict[int, tuple[str, float]]:
    """Each process of the gateway's tree: its kind and its CPU seconds so far."""
    found: dict[int, tuple[str, float]] = {}
    for pid in [root, *descendants(root)]:
        try:
            found[pid] = (_kind(pid), process_cpu(pid))
        except OSError:
            continue
    return found


def measure(
    data_dir: Path,
    workers: int,
    token: str,
    subjects: list[str],
    options: argparse.Namespace,
    server_cpus: set[int] | None,
) -> Round:
    """One round with ``workers`` workers."""
    served = Serve(data_dir, workers, server_cpus)
    try:
        asyncio.run(closed_loop(served.port, token, subjects, concurrency=options.concurrency, seconds=1.0))
        cpu_before, own_before = tree_cpu(served.process.pid), cpu_self()
        kinds_before = cpu_by_kind(served.process.pid)
        started = time.perf_counter()
        answered = asyncio.run(
            closed_loop(
                served.port, token, subjects, concurrency=options.concurrency, seconds=options.seconds
            )
        )
        elapsed = time.perf_counter() - started
        cpu, own = tree_cpu(served.process.pid) - cpu_before, cpu_self() - own_before
        by_process: dict[str, float] = {}
        for pid, (kind, seconds) in cpu_by_kind(served.process.pid).items():
            spent = seconds - kinds_before.get(pid, (kind, 0.0))[1]
            by_process[kind] = by_process.get(kind, 0.0) + spent / elapsed
    finally:
        served.stop()
    return Round(answered / elapsed, cpu * 1e6 / max(1, answered), cpu / elapsed, own / elapsed, by_process)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one round of 3 s a count")
    parser.add_argument(
        "--cpus", help="A-B: the gateway on the lower half of these cores, the generator above"
    )
    parser.add_argument(
        "--workers",
        help="worker counts to measure (default 1,2; with --cpus, 1,2,4,8 as far as the gateway's cores go)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3; --quick 1)")
    parser.add_argument(
        "--seconds", type=float, default=None, help="seconds a measurement (default 5; --quick 3)"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    options = parser.parse_args()
    options.rounds = options.rounds or (1 if options.quick else 3)
    options.seconds = options.seconds or (3.0 if options.quick else 5.0)
    server_cpus: set[int] | None = None
    if options.cpus:
        server_cpus, generator_cpus = parse_cpus(options.cpus)
        os.sched_setaffinity(0, generator_cpus)
    if options.workers:
        counts = sorted({int(n) for n in options.workers.split(",")} | {1, 2})
    else:
        counts = [n for n in (1, 2, 4, 8) if n <= 2 or (server_cpus is not None and n <= len(server_cpus))]
    print(
        f"# {os.cpu_count()} cores; gateway cores {sorted(server_cpus) if server_cpus else 'not pinned'}; "
        f"{options.rounds} round(s) of {options.seconds:g} s a count, concurrency {options.concurrency}, "
        f"{ADDRESSES} connections",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="mustcheck-workers-") as work:
        data_dir = Path(work) / "data"
        with child("gateway_process.py", "--data-dir", str(data_dir), "--strict-grant") as prepared:
            token = str(prepared.ready["token"])
            subjects = list(prepared.ready["subjects"])
        rates: dict[int, list[float]] = {n: [] for n in counts}
        costs: dict[int, list[float]] = {n: [] for n in counts}
        for round_ in range(options.rounds):
            for workers in counts if round_ % 2 == 0 else list(reversed(counts)):
                measured = measure(data_dir, workers, token, subjects, options, server_cpus)
                rates[workers].append(measured.rate)
                costs[workers].append(measured.gateway_us)
                print(
                    f"round {round_ + 1}: --workers {workers}: {measured.rate:,.0f} checks/s, "
                    f"{measured.gateway_us:,.0f} µs gateway CPU a check; cores busy: gateway "
                    f"{measured.gateway_cores:.2f} ("
                    + ", ".join(f"{kind} {cores:.2f}" for kind, cores in sorted(measured.by_process.items()))
                    + f"), generator {measured.generator_cores:.2f}",
                    flush=True,
                )
    speedups = [two / one for one, two in zip(rates[1], rates[2], strict=True)]
    figures: dict[str, Any] = {"workers_speedup": round(statistics.median(speedups), 3)}
    for workers in counts:
        ratio = statistics.median(rate / one for rate, one in zip(rates[workers], rates[1], strict=True))
        print(
            f"--workers {workers}: median {statistics.median(rates[workers]):,.0f} checks/s, "
            f"{ratio:.2f}x one worker, {statistics.median(costs[workers]):,.0f} µs gateway CPU a check",
            flush=True,
        )
        figures[f"checks_per_s_{workers}"] = round(statistics.median(rates[workers]), 1)
        figures[f"speedup_{workers}"] = round(ratio, 3)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
