"""The benchmark harness's own parts: its echo baseline answers like the gateway, its last line has the keys.

The harness itself (``python benchmarks/run.py``) takes minutes; these check its pieces in a second.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mustcheck import AsyncClient, Client
from mustcheck._channel import auth_metadata, sync_channel
from mustcheck._generated.v1 import check_pb2, check_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import echo_process
import run

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
        "echo_qps",
        "gateway_qps",
        "qps_ratio",
        "p99_ms_open_2000",
        "cache_hit_p99_us",
        "cache_hits_per_s",
        "batch_speedup",
        "scale_latency_ratio",
        "rss_mb_1m",
        "propagation_p99_ms",
    }
    assert "\n" not in line
    with pytest.raises(KeyError):
        run.result_line({})


def test_the_verdicts_name_missed_targets() -> None:
    assert run.verdict("qps_ratio", 0.6).endswith("met")
    assert run.verdict("qps_ratio", 0.4).endswith("MISSED")
    assert run.verdict("p99_ms_open_2000", 10.0).endswith("met")
    assert run.verdict("p99_ms_open_2000", 10.5).endswith("MISSED")


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
