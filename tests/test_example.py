"""The example integration runs against a real gateway: it decides, keeps receipts and reports outcomes."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from mustcheck_gateway.server import Gateway

from conftest import REPO
from factories import days, make_entry, new_uscc


def test_permit_flow_example(
    gateway: Gateway, target: str, token: str, tmp_path: Path, now: dt.datetime
) -> None:
    listed, clean = new_uscc(), new_uscc()
    gateway.store.write_entries([make_entry(listed, effective=now - days(5))], actor="test", action="add")
    token_file = tmp_path / "token"
    token_file.write_text(token)
    decisions = tmp_path / "decisions.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "permit_flow.py"),
            listed,
            clean,
            "914403001922038217",
            "--gateway",
            target,
            "--token-file",
            str(token_file),
            "--decisions",
            str(decisions),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    kept = [json.loads(line) for line in decisions.read_text().splitlines()]
    assert [d["decision"] for d in kept] == ["rejected", "approved", "rejected"]
    assert kept[0]["applied_measures"] and kept[0]["receipt"].startswith("mcr2.")
    assert "invalid applicant identifier" in kept[2]["why"] and kept[2]["receipt"] == ""
    reports = gateway.store.feedback_between(None, None)
    assert {r.approval_id for r in reports} >= {kept[0]["application_id"], kept[1]["application_id"]}
