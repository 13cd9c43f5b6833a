"""The benchmark harness's own parts: its echo baseline answers like the gateway, its last line has the keys.

The harness itself (``python benchmarks/run.py``) takes minutes; these check its pieces in a second.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mustcheck import AsyncClient, Client
from mustcheck._channel import auth_metadata, sync_channel
from mustcheck._generated.v1 import check_pb2, check_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import echo_process
import run
from load import process_cpu

SUBJECT, MATTER = "91110108551385082Q", "MOF-0001"


@pytest.mark.slow
def test_echo_server_replays_the_gateways_answer_byte_for_byte(target: str, token: str) -> None:
    with sync_channel(target, None) as channel:
        recorded = check_pb2_grpc.CheckServiceStub(channel).Check(
            check_pb2.CheckRequest(subject=SUBJECT, matter=MATTER),
            metadata=auth_metadata(token),
            timeout=10,
        )
    with Client(target, token=token) as client:
        from_gateway = client.check(SUBJECT, MATTER)

    async def through_echo() -> tuple[str, str]:
        server, port = await echo_process.start_echo({(SUBJECT, MATTER): recorded.SerializeToString()})
        try:
            async with AsyncClient(f"127.0.0.1:{port}", token=token) as client:
                echoed = await client.check(SUBJECT, MATTER)
                unknown = await client.check("91110108MA01A2B3C4", MATTER)  # any request gets an answer
            return echoed.subject, unknown.subject
        finally:
            await server.stop(None)

    echoed_subject, fallback_subject = asyncio.run(through_echo())
    assert echoed_subject == from_gateway.subject == SUBJECT
    assert fallback_subject == SUBJECT


def test_the_last_line_is_one_json_object_with_exactly_the_agreed_keys() -> None:
    figures = {key: float(number) for number, key in enumerate(run.KEYS)}
    line = run.result_line({**figures, "extra": 1.0})
    assert set(json.loads(line)) == {
        "cpu_ratio",
        "p99_ratio",
        "checks_per_core",
        "gateway_cpu_us",
        "echo_cpu_us",
        "batch_speedup",
        "batch_cpu_speedup",
        "workers_speedup",
        "echo_qps",
        "gateway_qps",
        "qps_ratio",
        "cache_hit_p99_us",
        "cache_hits_per_s",
        "scale_latency_ratio",
        "rss_mb_1m",
        "propagation_p99_ms",
    }
    assert "\n" not in line
    with pytest.raises(KeyError):
        run.result_line({})
    # A figure that could not be measured (no workers benchmark in the tree) is null, still valid JSON.
    unmeasured = json.loads(run.result_line({**figures, "workers_speedup": float("nan")}))
    assert unmeasured["workers_speedup"] is None and unmeasured["cpu_ratio"] == 0.0


def test_the_verdicts_name_missed_targets() -> None:
    assert run.verdict("cpu_ratio", 2.0).endswith("met")
    assert run.verdict("cpu_ratio", 2.01).endswith("MISSED")
    assert run.verdict("p99_ratio", 2.5).endswith("MISSED")
    assert run.verdict("checks_per_core", 1000.0).endswith("met")
    assert run.verdict("checks_per_core", 999.0).endswith("MISSED")
    assert run.verdict("batch_speedup", 9.9).endswith("MISSED")
    assert "qps_ratio" not in run.TARGETS and "p99_ms_open_2000" not in run.TARGETS  # context, not targets


def test_cpus_split_the_cores_between_the_servers_and_the_load() -> None:
    assert run.parse_cpus("0-1") == ({0}, {1})
    assert run.parse_cpus("0-3") == ({0, 1}, {2, 3})
    assert run.parse_cpus("2,4-6") == ({2, 4}, {5, 6})
    with pytest.raises(ValueError, match="at least two cores"):
        run.parse_cpus("3")


def test_a_servers_cpu_counts_the_processes_under_it() -> None:
    # The gateway's audit writer is a process of its own: its CPU is the gateway's too.
    # It burns 0.3 s of its own CPU, however fast the machine (a fixed loop took under 0.2 s on a quiet one).
    burner = "import sys, time\nwhile time.process_time() < 0.3: pass\nsys.stdin.read()"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {burner!r}]); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        for _ in range(300):
            grandchildren = run.descendants(parent.pid)
            if grandchildren and process_cpu(grandchildren[0]) >= 0.2:
                break
            time.sleep(0.05)
        assert len(run.descendants(parent.pid)) == 1
        assert run.tree_cpu(parent.pid) >= process_cpu(parent.pid) + 0.2
    finally:
        assert parent.stdin is not None
        parent.stdin.close()
        parent.wait(30)


@pytest.mark.slow
def test_the_probe_answers_every_check_of_its_timetable() -> None:
    """`probe.py open` drives a real gateway at a fixed rate and reports what each check cost."""
    probe = Path(__file__).resolve().parents[1] / "benchmarks" / "probe.py"
    finished = subprocess.run(
        [sys.executable, str(probe), "open", "--rate", "50", "--seconds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    (line,) = [line for line in finished.stdout.splitlines() if line.startswith("open")]
    assert "(50 checks in" in line and "; 0 failed;" in line
    assert re.search(r"CPU a check: gateway \d+ us, generator \d+ us", line)
