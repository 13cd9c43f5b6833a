"""One load against one production gateway, optionally under py-spy: the quick A/B and profiling tool.

    python benchmarks/probe.py single [--seconds 5] [--concurrency 32]
    python benchmarks/probe.py batch [--concurrency 4]          # BatchCheck of 100 subjects
    python benchmarks/probe.py open --rate 400                  # fixed rate; CPU a check
    python benchmarks/probe.py single --py-spy out.txt [--gil] [--writer]

Starts `gateway_process.py --strict-grant` (the gateway `run.py` measures), warms it for a second, then runs
the load with `run.py`'s own loops and prints one line: rate, latencies, and the CPU share (or, with `open`,
the CPU a check) of the gateway and of this generator. `--py-spy FILE` records the gateway (`--writer`: its
audit writer process) for the load's duration in py-spy's raw format (`--gil`: only samples holding the
interpreter lock). To compare two versions of the code, run it with `PYTHONPATH=<other checkout>/sdk:<other
checkout>/gateway` and without, alternately: on a shared machine single runs move by ±15 %.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import tempfile
from pathlib import Path

from load import MATTERS
from run import batch_loop, child, closed_loop, cpu_self, cpu_share, open_loop


def spy(pid: int, seconds: float, output: Path, *, gil: bool, writer: bool) -> subprocess.Popen[bytes]:
    if writer:
        found = subprocess.run(
            ["pgrep", "-P", str(pid), "-f", "writer_process"], capture_output=True, text=True, check=True
        )
        pid = int(found.stdout.split()[0])
    command = ["py-spy", "record", "-p", str(pid), "-r", "200", "-d", str(round(seconds)), "-f", "raw"]
    command += ["-o", str(output), "--nonblocking", *(["--gil"] if gil else [])]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def probe(options: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="mustcheck-probe-") as work,
        child("gateway_process.py", "--data-dir", str(Path(work) / "gateway"), "--strict-grant") as gateway,
    ):
        token, subjects = gateway.ready["token"], gateway.ready["subjects"]
        rng = random.Random(7)
        pairs = [(subject, rng.choice(MATTERS)) for subject in subjects]
        await closed_loop(gateway.target, token, pairs, concurrency=8, seconds=1.0, seed=1)  # warm up
        recorder = (
            spy(gateway.pid, options.seconds, options.py_spy, gil=options.gil, writer=options.writer)
            if options.py_spy
            else None
        )
        since = (gateway.cpu_seconds(), cpu_self())
        if options.load == "single":
            result = await closed_loop(
                gateway.target,
                token,
                pairs,
                concurrency=options.concurrency or 32,
                seconds=options.seconds,
                seed=2,
            )
        elif options.load == "batch":
            result = await batch_loop(
                gateway.target,
                token,
                subjects,
                size=100,
                concurrency=options.concurrency or 4,
                seconds=options.seconds,
                seed=5,
            )
        else:
            opened = await open_loop(
                gateway.target, token, pairs, rate=options.rate, seconds=options.seconds, seed=3
            )
            checks = opened.load.requests
            print(
                f"open {opened.load.summary()}; {sum(opened.errors.values())} failed; CPU a check: "
                f"gateway {(gateway.cpu_seconds() - since[0]) / checks * 1e6:.0f} us, generator "
                f"{(cpu_self() - since[1]) / checks * 1e6:.0f} us",
                flush=True,
            )
            result = None
        if result is not None:
            print(
                f"{options.load} {result.summary()}; {cpu_share(gateway, since, result.seconds)}",
                flush=True,
            )
        if recorder is not None:
            recorder.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("load", choices=("single", "batch", "open"))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=0, help="callers (default 32 single, 4 batch)")
    parser.add_argument("--rate", type=float, default=400.0, help="checks a second, for open")
    parser.add_argument("--py-spy", type=Path, help="record the gateway with py-spy into this file")
    parser.add_argument("--gil", action="store_true", help="py-spy: only samples holding the GIL")
    parser.add_argument("--writer", action="store_true", help="py-spy: the audit writer process instead")
    asyncio.run(probe(parser.parse_args()))


if __name__ == "__main__":
    main()
