"""The sm crypto suite against the international one, measured in the same run (docs/crypto.md).

    python benchmarks/crypto_bench.py [--rounds 3] [--seconds 5]

1. Signature and verification rates, through the suites' own code paths (the gateway's signer: SM2 with
   SM3 and the default user id over gmssl-pyx; the SDK's verifier), Ed25519 beside it, interleaved in
   slices so that a busy machine slows both alike; and the tree hashes (SM3 / SHA-256) of a leaf.
2. Two gateways as child processes (``gateway_process.py --strict-grant``, audit log and receipts on),
   one of each suite, loaded in alternating rounds: single checks (closed loop, concurrency 32) and
   ``BatchCheck`` of 100 subjects (closed loop, concurrency 4). One signature per commit group: a batch
   is one signed tree head.

Targets (issue 16): sm keeps >= 0.8x the international checks/s, and its batch_speedup (batch subjects/s
over single checks/s) >= 0.8x international's. Both are also given per CPU-second of the gateway and its
audit writer (``*_cpu``), which a machine shared with other work disturbs far less than throughput.
Its last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from load import MATTERS, process_cpu
from run import Child, batch_loop, child, closed_loop, say

from mustcheck import _sm2
from mustcheck.suites import INTERNATIONAL, SM
from mustcheck_gateway.crypto.suites import server_suite

HEAD_BODY = b'{"alg":{"hash":"sm3","sig":"sm2"},"at":"2026-12-04T00:00:00.000000+00:00","kid":"sign-0001"}'
MESSAGE = b"mustcheck.tree_head.v1\n" + HEAD_BODY * 2


def rates(seconds: float) -> dict[str, float]:
    """Operations per second of each crypto operation, measured in interleaved slices of 0.2 s."""
    operations: dict[str, Callable[[], object]] = {}
    for name in ("international", "sm"):
        signer = server_suite(name).generate_signer()
        signature = signer.sign(MESSAGE)
        public = signer.public_key()
        assert public.verify(signature, MESSAGE)
        algorithm = signer.algorithm
        operations[f"{algorithm}_sign_per_s"] = functools.partial(signer.sign, MESSAGE)
        operations[f"{algorithm}_verify_per_s"] = functools.partial(public.verify, signature, MESSAGE)
    leaf = b"\x00" + MESSAGE * 2
    operations["sha256_leaf_per_s"] = lambda: INTERNATIONAL.digest(leaf)
    operations["sm3_leaf_per_s"] = lambda: SM.digest(leaf)
    counts = dict.fromkeys(operations, 0)
    spent = dict.fromkeys(operations, 0.0)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for name, operation in operations.items():
            started = time.perf_counter()
            calls = 0
            while time.perf_counter() - started < 0.2 / len(operations):
                operation()
                calls += 1
            spent[name] += time.perf_counter() - started
            counts[name] += calls
    return {name: counts[name] / spent[name] for name in operations}


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and of its living descendants (the gateway and its audit writer)."""
    total = process_cpu(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child_pid in children.read_text().split() if children.exists() else ():
        try:
            total += tree_cpu(int(child_pid))
        except (OSError, ValueError, IndexError):
            continue  # it ended meanwhile
    return total


@dataclass
class Totals:
    """Per suite: checks and subjects answered, wall and CPU seconds (gateway + audit writer)."""

    checks: int = 0
    check_seconds: float = 0.0
    check_cpu: float = 0.0
    subjects: int = 0
    batch_seconds: float = 0.0
    batch_cpu: float = 0.0


async def load_round(gateway: Child, seconds: float, seed: int, totals: Totals) -> tuple[float, float]:
    """(single checks/s, batch subjects/s) of one round against ``gateway``, added to ``totals``."""
    token, subjects = gateway.ready["token"], gateway.ready["subjects"]
    pairs = [(subject, MATTERS[index % len(MATTERS)]) for index, subject in enumerate(subjects)]
    cpu = tree_cpu(gateway.pid)
    singles = await closed_loop(gateway.target, token, pairs, concurrency=32, seconds=seconds, seed=seed)
    cpu_after_singles = tree_cpu(gateway.pid)
    batches = await batch_loop(
        gateway.target, token, subjects, size=100, concurrency=4, seconds=seconds, seed=seed
    )
    totals.checks += singles.requests
    totals.check_seconds += singles.seconds
    totals.check_cpu += cpu_after_singles - cpu
    totals.subjects += batches.requests
    totals.batch_seconds += batches.seconds
    totals.batch_cpu += tree_cpu(gateway.pid) - cpu_after_singles
    return singles.qps, batches.qps


async def run(options: argparse.Namespace) -> None:
    say(
        f"# crypto suites, {options.rounds} alternating rounds of {options.seconds:g} s; "
        f"{_sm2.library_version()}; {os.cpu_count()} cores shared by the load generator and both gateways"
    )
    figures = rates(options.rate_seconds)
    for name, value in figures.items():
        say(f"{name:24s} {value:10,.0f}")
    totals = {suite: Totals() for suite in ("international", "sm")}
    common = ("--strict-grant", "--data-dir")
    with (
        child("gateway_process.py", *common, options.work + "/intl") as international,
        child("gateway_process.py", *common, options.work + "/sm", "--crypto", "sm") as sm,
    ):
        gateways = {"international": international, "sm": sm}
        for round_number in range(options.rounds):
            order = ("international", "sm") if round_number % 2 == 0 else ("sm", "international")
            for suite in order:
                singles, batched = await load_round(
                    gateways[suite], options.seconds, round_number, totals[suite]
                )
                say(
                    f"round {round_number + 1} {suite:13s} {singles:8.0f} checks/s  "
                    f"{batched:8.0f} batch subjects/s"
                )
    for suite, total in totals.items():
        figures[f"{suite}_checks_per_s"] = total.checks / total.check_seconds
        figures[f"{suite}_batch_speedup"] = (total.subjects / total.batch_seconds) / (
            total.checks / total.check_seconds
        )
        # What a core does, whatever else the shared machine runs: checks per CPU-second of the gateway
        # and its audit writer (the load generator not counted).
        figures[f"{suite}_checks_per_cpu_s"] = total.checks / total.check_cpu
        figures[f"{suite}_batch_speedup_cpu"] = (total.subjects / total.batch_cpu) / (
            total.checks / total.check_cpu
        )
    for key in ("checks_per_s", "batch_speedup", "checks_per_cpu_s", "batch_speedup_cpu"):
        figures[f"sm_{key}_ratio"] = figures[f"sm_{key}"] / figures[f"international_{key}"]
    for key in (
        "sm_checks_per_s_ratio",
        "sm_batch_speedup_ratio",
        "sm_checks_per_cpu_s_ratio",
        "sm_batch_speedup_cpu_ratio",
    ):
        say(f"{key}: {figures[key]:.2f} (target >= 0.8: {'met' if figures[key] >= 0.8 else 'MISSED'})")
    print(json.dumps({key: round(value, 3) for key, value in figures.items()}), flush=True)


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="each round's load phase")
    parser.add_argument("--rate-seconds", type=float, default=4.0, help="the signature rates' measurement")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mustcheck-crypto-") as work:
        options.work = work
        asyncio.run(run(options))


if __name__ == "__main__":
    main()
