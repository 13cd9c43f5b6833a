"""Closed-loop load through the SDK: N concurrent callers checking for a fixed time."""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mustcheck import AsyncClient

HERE = Path(__file__).resolve().parent
MATTERS = ("MOF-0001", "MOHURD-0001", "PUBLIC_RESOURCES-0001", "APPROVAL-0001", "NDRC-0001")


@dataclass(frozen=True)
class RunningGateway:
    target: str
    token: str
    subjects: list[str]
    pid: int

    def cpu_seconds(self) -> float:
        """User and system CPU the gateway process and its running children (the audit writer) have
        used so far (Linux /proc)."""
        return sum(process_cpu(pid) for pid in (self.pid, *children(self.pid)))


def children(pid: int) -> list[int]:
    """The process's child processes (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def process_cpu(pid: int) -> float:
    """User plus system CPU seconds the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    """The process's resident set now (VmRSS) and at its peak (VmHWM), from the kernel."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``; NaN if there are none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


@contextmanager
def gateway_process(*extra: str, subjects: int = 2000) -> Iterator[RunningGateway]:
    """A gateway in a child process (its own core), stopped when the block ends."""
    with tempfile.TemporaryDirectory(prefix="mustcheck-bench-") as data_dir:
        process = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "gateway_process.py"),
                "--data-dir",
                data_dir,
                "--subjects",
                str(subjects),
                *extra,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            ready = json.loads(process.stdout.readline())
            yield RunningGateway(f"127.0.0.1:{ready['port']}", ready["token"], ready["subjects"], process.pid)
        finally:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(60)


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def qps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)

    def summary(self) -> str:
        return (
            f"{self.qps:9.0f} checks/s  p50 {self.percentile(50):6.2f} ms  "
            f"p95 {self.percentile(95):6.2f} ms  "
            f"p99 {self.percentile(99):6.2f} ms  ({self.requests} checks in {self.seconds:.1f} s)"
        )


async def closed_loop(
    gateway: RunningGateway, *, concurrency: int, seconds: float, seed: int = 1
) -> LoadResult:
    """``concurrency`` callers, each sending its next check when the previous answer arrives."""
    rng = random.Random(seed)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def caller(client: AsyncClient) -> None:
        while time.perf_counter() < deadline:
            subject, matter = rng.choice(gateway.subjects), rng.choice(MATTERS)
            started = time.perf_counter()
            await client.check(subject, matter, purpose="benchmark", authorization_ref="bench")
            latencies.append((time.perf_counter() - started) * 1000)

    async with AsyncClient(gateway.target, token=gateway.token, timeout=10, validate_locally=False) as client:
        await client.check(gateway.subjects[0], MATTERS[0])  # connect before timing
        started = time.perf_counter()
        await asyncio.gather(*(caller(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LoadResult(len(latencies), elapsed, latencies)


def median(values: list[float]) -> float:
    return statistics.median(values)


async def open_loop(gateway: RunningGateway, *, rate: float, seconds: float, seed: int = 1) -> LoadResult:
    """Checks sent at a fixed rate whatever the answers' latency (no coordinated omission)."""
    rng = random.Random(seed)
    latencies: list[float] = []

    async def one(client: AsyncClient, subject: str, matter: str) -> None:
        started = time.perf_counter()
        await client.check(subject, matter, purpose="benchmark", authorization_ref="bench")
        latencies.append((time.perf_counter() - started) * 1000)

    async with AsyncClient(gateway.target, token=gateway.token, timeout=10, validate_locally=False) as client:
        await client.check(gateway.subjects[0], MATTERS[0])
        count = int(rate * seconds)
        started = time.perf_counter()
        tasks = []
        for index in range(count):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client, rng.choice(gateway.subjects), rng.choice(MATTERS))))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return LoadResult(count, elapsed, latencies)
