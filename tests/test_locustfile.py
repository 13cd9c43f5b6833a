"""benchmarks/locustfile.py runs headless against a real gateway on demo data and reports no failure.

Locust runs in a child process: importing it monkey-patches the standard library with gevent, which must
not happen to the test process (so locust is looked up here, never imported).
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mustcheck_gateway.cli.demo import DEMO_SEED
from mustcheck_gateway.demo_data import generate_rows
from mustcheck_gateway.list_rows import load_rows
from mustcheck_gateway.policy.locate import ENVIRONMENT_VARIABLE as POLICIES_VARIABLE
from mustcheck_gateway.server import GatewayConfig, GatewayThread

from conftest import POLICY_DIR, REPO
from provision import provision

LOCUSTFILE = REPO / "benchmarks" / "locustfile.py"
SUBJECTS = 300

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("locust") is None,
        reason='locust is not installed (it comes with the dev extra: pip install -e ".[dev]")',
    ),
]


def test_locustfile_runs_headless_without_failures(tmp_path: Path) -> None:
    config = GatewayConfig(data_dir=tmp_path / "gateway", listen="127.0.0.1:0", policy_dir=POLICY_DIR)
    with GatewayThread(config) as gateway:
        rows = generate_rows(SUBJECTS, DEMO_SEED, dt.date.today(), gateway.policy)
        load_rows(gateway.store, rows, gateway.policy, actor="test", action="demo-load")
        target = f"127.0.0.1:{gateway.port}"
        assert gateway.admin_token_file is not None
        token = provision(
            target,
            gateway.admin_token_file.read_text().strip(),
            "loadtest",
            purpose_required=True,
            authorization_ref_required=True,
        )
        token_file = tmp_path / "loadtest.token"
        token_file.write_text(token + "\n")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "-u",
                "4",
                "-r",
                "4",
                "--run-time",
                "5s",
                "--host",
                target,
                "--token-file",
                str(token_file),
                "--demo-subjects",
                str(SUBJECTS),
                "--csv",
                str(tmp_path / "locust"),
                "--only-summary",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, POLICIES_VARIABLE: str(POLICY_DIR)},
        )
        reports = gateway.store.feedback_between(None, None)
    assert done.returncode == 0, done.stderr[-4000:]
    with (tmp_path / "locust_stats.csv").open(newline="") as stats_file:
        stats = {row["Name"]: row for row in csv.DictReader(stats_file)}
    assert int(stats["Check"]["Request Count"]) > 0, stats
    assert int(stats["Aggregated"]["Failure Count"]) == 0, (tmp_path / "locust_failures.csv").read_text()
    assert {row["Type"] for name, row in stats.items() if name != "Aggregated"} == {"grpc"}
    reported = int(stats["ReportOutcome"]["Request Count"]) if "ReportOutcome" in stats else 0
    assert len(reports) >= reported  # every feedback locust counted as answered reached the store
