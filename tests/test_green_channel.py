"""R6 end to end: the green channel only where the store attests three complete years of list data.

Each test starts its own gateway on a fresh store (each backend): a fresh store attests nothing, so it
grants nobody; administrators record since when the data is complete (audited), and so does the import
of a complete snapshot.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mustcheck import Client
from mustcheck_gateway.audit.backends import is_audit_log
from mustcheck_gateway.cli import main
from mustcheck_gateway.server import Gateway, GatewayConfig, GatewayThread

from backends import BACKENDS, store_at
from conftest import POLICY_DIR
from factories import new_uscc
from provision import provision

MATTER = "APPROVAL-0001"


@pytest.fixture(params=BACKENDS)
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    with store_at(request.param, tmp_path / "gateway") as location:
        config = GatewayConfig(
            data_dir=location.data_dir, listen="127.0.0.1:0", policy_dir=POLICY_DIR, store_url=location.url
        )
        with GatewayThread(config) as running:
            yield running


def _admin_args(gateway: Gateway, tmp_path: Path) -> list[str]:
    assert gateway.admin_token_file is not None
    return ["--gateway", f"127.0.0.1:{gateway.port}", "--token-file", str(gateway.admin_token_file)]


def _check(gateway: Gateway, subject: str) -> tuple[bool, str]:
    target = f"127.0.0.1:{gateway.port}"
    assert gateway.admin_token_file is not None
    token = provision(target, gateway.admin_token_file.read_text().strip(), f"c{new_uscc()[-6:].lower()}")
    with Client(target, token=token) as client:
        result = client.check(subject, MATTER)
    return result.green_channel, result.green_channel_reason


def test_a_fresh_store_grants_nobody_until_completeness_is_recorded(
    fresh: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subject = new_uscc()
    assert _check(fresh, subject) == (False, "data.not_attested")
    admin = _admin_args(fresh, tmp_path)
    assert main(["lists", "data-complete-since", *admin]) == 0
    assert "attests no complete list data" in capsys.readouterr().out
    # Two years of complete data are not three.
    two_years_ago = (dt.date.today() - dt.timedelta(days=730)).isoformat()
    assert main(["lists", "data-complete-since", two_years_ago, "--reason", "全量归集", *admin]) == 0
    assert "CST" in capsys.readouterr().out
    assert _check(fresh, subject) == (False, "data.too_short")
    assert main(["lists", "data-complete-since", "2019-01-01", "--reason", "全量归集自2019年", *admin]) == 0
    capsys.readouterr()
    assert _check(fresh, subject) == (True, "")
    assert main(["lists", "data-complete-since", "--json", *admin]) == 0
    shown = json.loads(capsys.readouterr().out)
    cst = dt.timezone(dt.timedelta(hours=8))
    assert dt.datetime.fromisoformat(shown["complete_since"]) == dt.datetime(2019, 1, 1, tzinfo=cst)
    # Every setting is audited, with its reason.
    assert is_audit_log(fresh.audit)
    actions = [r.detail.get("action") for r in fresh.audit.query(kind="admin", limit=1000)]
    assert actions.count("lists.data-complete-since") == 2
    # Without a reason, or in the future, nothing is recorded.
    assert main(["lists", "data-complete-since", "2019-01-01", *admin]) == 2
    tomorrow = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    assert main(["lists", "data-complete-since", tomorrow, "--reason", "x", *admin]) == 2
    # Refusals are audited where every refusal is (refusals.py), naming the method and the reason.
    refused = [
        r
        for r in fresh.audit.query(kind="admin", limit=1000)
        if r.detail.get("method") == "ListsService/SetDataCompleteness" and r.status != "OK"
    ]
    assert (refused[-1].status, refused[-1].detail["reason"]) == ("INVALID_ARGUMENT", "completeness.date")
    assert _check(fresh, subject) == (True, "")  # unchanged


def test_importing_a_complete_snapshot_records_completeness(
    fresh: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    company = new_uscc()
    row = {
        "source": "court-feed",
        "subject_code": company,
        "subject_name": "示例建设有限公司",
        "subject_kind": "organization",
        "memorandum": "judgment-defaulters",
        "list_kind": "black",
        "initiating_department": "court",
        "decision_document": "（2019）示例执字第000001号",
        "decision_date": "2019-03-01",
        "severity": "serious",
        "reason": "有履行能力而拒不履行生效法律文书确定义务",
        "effective_date": "2019-03-02",
        "punish_until": "2020-03-02",
        "display_until": "2021-03-02",
    }
    snapshot = tmp_path / "snapshot.jsonl"
    snapshot.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    admin = _admin_args(fresh, tmp_path)
    assert main(["lists", "import", str(snapshot), "--complete-since", "2018-01-01", *admin]) == 0
    # Its record ended more than three years ago, and the data covers those years: eligible.
    assert _check(fresh, company) == (True, "")
    assert _check(fresh, new_uscc()) == (True, "")
    # A snapshot that may skip rows is not complete.
    assert (
        main(
            [
                "lists",
                "import",
                str(snapshot),
                "--complete-since",
                "2018-01-01",
                "--skip-invalid",
                "--rejects",
                str(tmp_path / "rejects.jsonl"),
                *admin,
            ]
        )
        == 2
    )
