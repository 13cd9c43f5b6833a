"""Execution feedback, coverage (应查必查, 奖惩到位) and statistics over a scripted month."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from mustcheck import Client, InvalidRequest, Outcome, PermissionDenied
from mustcheck._channel import auth_metadata
from mustcheck._generated.v1 import audit_pb2, audit_pb2_grpc
from mustcheck_gateway.cli import main
from mustcheck_gateway.server import GatewayConfig, GatewayThread
from mustcheck_gateway.store import ListEntry

from conftest import POLICY_DIR
from factories import days, make_entry, new_uscc
from provision import provision

CST = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2026, 10, 1, 9, 0, tzinfo=CST)


class Month:
    """A gateway whose clock the test moves, with an approval system, a second one and an auditor."""

    def __init__(self, tmp_path: Path) -> None:
        self.now = START
        config = GatewayConfig(
            data_dir=tmp_path, listen="127.0.0.1:0", policy_dir=POLICY_DIR, clock=lambda: self.now
        )
        self.thread = GatewayThread(config)
        self.gateway = self.thread.start()
        self.target = f"127.0.0.1:{self.gateway.port}"
        assert self.gateway.admin_token_file is not None
        admin = self.gateway.admin_token_file.read_text().strip()
        self.approver = Client(self.target, token=provision(self.target, admin, "permits"))
        self.other = Client(self.target, token=provision(self.target, admin, "other-system"))
        self.auditor = provision(self.target, admin, "inspector", roles=["auditor"], grant=False)

    def day(self, number: int) -> None:
        self.now = START + dt.timedelta(days=number - 1)

    def listed(self, code: str) -> ListEntry:
        entry = make_entry(code, effective=START - days(30), decision=START - days(31))
        self.gateway.store.write_entries([entry], actor="test", action="add")
        return entry

    def audit(self, method: str, request: Any) -> Any:
        with grpc.insecure_channel(self.target) as channel:
            stub = audit_pb2_grpc.AuditServiceStub(channel)
            return getattr(stub, method)(request, metadata=auth_metadata(self.auditor), timeout=10)

    def close(self) -> None:
        self.approver.close()
        self.other.close()
        self.thread.stop()


@pytest.fixture
def month(tmp_path: Path) -> Iterator[Month]:
    running = Month(tmp_path)
    yield running
    running.close()


def test_a_scripted_month_yields_exactly_the_expected_coverage(month: Month) -> None:
    restricted, clean, unreported = new_uscc(), new_uscc(), new_uscc()
    month.listed(restricted)
    month.listed(unreported)

    month.day(1)
    first = month.approver.check(restricted, "MOF-0001")
    assert first.outcome is Outcome.RESTRICTIONS and first.mandatory_measures
    ack = month.approver.report_outcome(first.receipt, "APP-1", "approved", [])  # measures not applied
    assert ack.backed_by_check and not ack.duplicate
    assert month.approver.report_outcome(first.receipt, "APP-1", "approved", []).duplicate
    with pytest.raises(InvalidRequest, match="other content"):
        month.approver.report_outcome(first.receipt, "APP-1", "rejected", [])
    with pytest.raises(PermissionDenied, match="another caller"):
        month.other.report_outcome(first.receipt, "OTHER-1", "approved", [])
    with pytest.raises(InvalidRequest, match="not in the receipt"):
        month.approver.report_outcome(first.receipt, "APP-X", "approved", ["P-NOT-THERE"])

    month.day(2)
    clean_check = month.approver.check(clean, "MOF-0001")
    assert clean_check.outcome is Outcome.NO_RECORD
    month.approver.report_outcome(clean_check.receipt, "APP-2", "approved", [])

    month.day(3)  # an approval made without any check
    unbacked = month.approver.report_outcome(None, "APP-3", "approved", matter="MOF-0001", subject=new_uscc())
    assert not unbacked.backed_by_check

    month.day(4)
    second = month.approver.check(restricted, "MOF-0001")
    month.approver.report_outcome(second.receipt, "APP-4", "rejected", [])  # rejected: nothing to apply

    month.day(5)
    month.approver.check(unreported, "MOF-0001")  # restrictions found, never followed by feedback

    month.day(20)
    with pytest.raises(InvalidRequest, match="at most 604800 s old"):
        month.approver.report_outcome(second.receipt, "APP-LATE", "approved", [])  # 16 days after its check
    third = month.approver.check(restricted, "MOF-0001")
    month.approver.report_outcome(
        third.receipt, "APP-5", "approved", [m.id for m in third.mandatory_measures]
    )

    month.day(31)
    request = audit_pb2.CoverageRequest(matter="MOF-0001")
    request.since.FromDatetime(START.astimezone(dt.UTC))
    request.until.FromDatetime((START + dt.timedelta(days=31)).astimezone(dt.UTC))
    (row,) = month.audit("Coverage", request).matters
    assert row.matter == "MOF-0001" and row.department == "mof"
    assert row.approvals_reported == 5
    assert row.approvals_backed == 4
    assert list(row.approvals_without_check) == ["APP-3"]
    assert sorted((m.approval_id, m.measure_id) for m in row.mandatory_not_applied) == sorted(
        ("APP-1", m.id) for m in first.mandatory_measures
    )
    assert row.restricted_checks_without_feedback == 1

    stats = audit_pb2.StatsRequest(by="outcome", bucket="month")
    rows = {(r.bucket, r.key): r.checks for r in month.audit("Stats", stats).rows}
    assert rows == {("2026-10", "restrictions"): 4, ("2026-10", "no_record"): 1}
    by_day = audit_pb2.StatsRequest(by="memorandum", bucket="day")
    memoranda = {(r.bucket, r.key): r.checks for r in month.audit("Stats", by_day).rows}
    assert memoranda[("2026-10-01", "judgment-defaulters")] == 1
    assert memoranda[("2026-10-02", "(none)")] == 1


def test_coverage_and_stats_need_the_auditor_role(month: Month) -> None:
    with grpc.insecure_channel(month.target) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Coverage(
                audit_pb2.CoverageRequest(), metadata=auth_metadata("mct_000000000000_" + "A" * 43), timeout=5
            )
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_or_skip() -> str:
    """Debian's ``chromium``; the test is skipped, saying why, where none is installed — except in CI
    (``CI=true``), which installs it and must never skip the browser test."""
    chromium = shutil.which("chromium")
    if chromium:
        return chromium
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("chromium is missing in CI: .ci/run installs Debian's package")
    pytest.skip("chromium is not installed: `apt-get install chromium` (Debian) to run the browser test")


def render_in_chromium(chromium: str, page: Path, profile: Path, screenshot: Path) -> str:
    """The page's DOM as headless Chromium (from Debian's packages) renders it; a screenshot beside it."""
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    subprocess.run(
        [*base, f"--screenshot={screenshot}", "--window-size=1100,1300", page.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    done = subprocess.run(
        [*base, "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True, timeout=120
    )
    return done.stdout


def test_the_report_renders_in_a_browser(
    month: Month, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chromium = chromium_or_skip()
    listed = new_uscc()
    month.listed(listed)
    month.day(2)
    checked = month.approver.check(listed, "MOF-0001")
    month.approver.report_outcome(checked.receipt, "APP-R1", "approved", [])
    month.day(3)
    month.approver.report_outcome(None, "APP-R2", "approved", matter="MOF-0001", subject=new_uscc())
    token = tmp_path / "auditor.token"
    token.write_text(month.auditor)
    page = tmp_path / "report.html"
    assert (
        main(
            [
                "audit",
                "report",
                "--since",
                "2026-10-01",
                "--until",
                "2026-11-01",
                "--out",
                str(page),
                "--gateway",
                month.target,
                "--token-file",
                str(token),
            ]
        )
        == 0
    )
    text = page.read_text(encoding="utf-8")
    assert "http" not in text.replace("http-equiv", "")  # self-contained: nothing fetched
    dom = render_in_chromium(chromium, page, tmp_path / "profile", tmp_path / "report.png")
    assert "Audit chain intact" in dom
    assert "APP-R2" in dom  # the approval without a check
    assert "APP-R1: P-PUBLIC-RESOURCE" in dom  # a mandatory measure not applied
    assert dom.count("<svg") >= 3 and "2026-10-02" in dom
    assert (tmp_path / "report.png").stat().st_size > 10_000

    conn = ["--gateway", month.target, "--token-file", str(token)]
    capsys.readouterr()
    assert main(["audit", "coverage", "--matter", "MOF-0001", "--json", *conn]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["approvals_reported"] == 2 and row["approvals_without_check"] == ["APP-R2"]
    assert main(["audit", "coverage", "--csv", *conn]) == 0
    assert "MOF-0001,mof,2,1,APP-R2" in capsys.readouterr().out
    assert main(["audit", "stats", "--by", "matter", "--bucket", "month", "--json", *conn]) == 0
    assert json.loads(capsys.readouterr().out) == [{"bucket": "2026-10", "matter": "MOF-0001", "checks": 1}]
    assert main(["audit", "coverage", *conn]) == 0 and "MOF-0001" in capsys.readouterr().out
