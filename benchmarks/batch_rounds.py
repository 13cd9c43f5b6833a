"""Longer rounds of the batch phase, with the CPU split between the gateway and its audit writer.

    cd benchmarks && python batch_rounds.py [--seconds 8]

Starts the gateway as ``run.py`` does (``gateway_process.py --strict-grant``), then one closed loop of
single checks (concurrency 32) and one of ``BatchCheck`` of 100 subjects (concurrency 4), ``--seconds``
each, and prints one line: ``RESULT`` and a JSON object with each loop's rate and the CPU microseconds a
check or a batched subject cost the gateway's process (``gw_us``) and its audit writer (``writer_us``),
``speedup`` (subjects/s ÷ checks/s) and ``cpu_speedup`` (CPU a single check ÷ CPU a batched subject).
``run.py --quick`` gives the batch phase one 2-second round; on a shared machine its figures swing by
half, and alternating several runs of this script (a baseline tree's and the one measured) is steadier.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from load import process_cpu
from run import batch_loop, child, closed_loop, descendants, record


async def measure(seconds: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="mustcheck-batch-rounds-") as work_name:
        work = Path(work_name)
        with child("gateway_process.py", "--data-dir", str(work / "gateway"), "--strict-grant") as gateway:
            pairs, _ = await record(gateway, work)
            token = gateway.ready["token"]
            subjects = [subject for subject, _ in pairs]
            figures: dict[str, dict[str, int]] = {}
            for phase in ("single", "batch"):
                processes = [gateway.pid, *descendants(gateway.pid)]
                before = [process_cpu(pid) for pid in processes]
                if phase == "batch":
                    result = await batch_loop(
                        gateway.target, token, subjects, size=100, concurrency=4, seconds=seconds, seed=2
                    )
                else:
                    result = await closed_loop(
                        gateway.target, token, pairs, concurrency=32, seconds=seconds, seed=2
                    )
                used = [process_cpu(pid) - was for pid, was in zip(processes, before, strict=True)]
                figures[phase] = {
                    "qps": round(result.qps),
                    "gw_us": round(used[0] / result.requests * 1e6),
                    "writer_us": round(sum(used[1:]) / result.requests * 1e6),
                }
    single, batch = figures["single"], figures["batch"]
    return {
        **figures,
        "speedup": round(batch["qps"] / single["qps"], 2),
        "cpu_speedup": round(
            (single["gw_us"] + single["writer_us"]) / (batch["gw_us"] + batch["writer_us"]), 2
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each loop (default 8)")
    options = parser.parse_args()
    print("RESULT", json.dumps(asyncio.run(measure(options.seconds))), flush=True)


if __name__ == "__main__":
    main()
