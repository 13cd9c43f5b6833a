"""The ``mustcheck`` command line: exit codes, JSON output, help, the demo and demo data."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mustcheck.identifiers import validate_subject
from mustcheck_gateway.cli import main
from mustcheck_gateway.cli.main import COMMANDS, build_parser
from mustcheck_gateway.policy import PolicySet
from mustcheck_gateway.server import Gateway

from factories import days, make_entry, new_uscc


@pytest.fixture(scope="module")
def token_file(token: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("cli") / "tester.token"
    path.write_text(token + "\n")
    return str(path)


def test_check_prints_json(
    gateway: Gateway, target: str, token_file: str, now: dt.datetime, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = make_entry(new_uscc(), effective=now - days(3))
    gateway.store.write_entries([entry], actor="test", action="add")
    assert (
        main(
            [
                "check",
                entry.subject_code,
                "--matter",
                "MOF-0001",
                "--gateway",
                target,
                "--token-file",
                token_file,
                "--json",
            ]
        )
        == 0
    )
    answer = json.loads(capsys.readouterr().out)
    assert answer["outcome"] == "restrictions"
    assert answer["memberships"][0]["list"] == "black"
    assert answer["memberships"][0]["memorandum"] == "judgment-defaulters"
    assert answer["memberships"][0]["status"] == "active"
    assert all({"id", "mandatory", "legal_basis"} <= set(m) for m in answer["measures"])
    assert answer["measures"][0]["legal_basis"]["document"]
    assert answer["green_channel"] is False
    assert answer["data_version"] >= 1


def test_check_prints_text(target: str, token_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["check", new_uscc(), "--matter", "MOHURD-0001", "--gateway", target, "--token-file", token_file]
        )
        == 0
    )
    assert "no record" in capsys.readouterr().out


def test_check_exits_2_naming_the_check_character(
    target: str, token_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "check",
                "914403001922038217",
                "--matter",
                "MOF-0001",
                "--gateway",
                target,
                "--token-file",
                token_file,
            ]
        )
        == 2
    )
    assert "check character" in capsys.readouterr().err


def test_check_exits_2_on_a_bad_check_character_even_without_a_gateway(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{probe.getsockname()[1]}"
    assert (
        main(["check", "914403001922038217", "--matter", "MOF-0001", "--gateway", nowhere, "--timeout", "1"])
        == 2
    )
    error = capsys.readouterr().err
    assert "check character" in error and "uscc.check_character" in error


def test_check_exits_2_on_unknown_matter(
    target: str, token_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["check", new_uscc(), "--matter", "NOPE", "--gateway", target, "--token-file", token_file]) == 2
    )
    assert "unknown matter" in capsys.readouterr().err


def test_check_exits_3_when_the_gateway_is_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert (
        main(
            ["check", new_uscc(), "--matter", "MOF-0001", "--gateway", f"127.0.0.1:{port}", "--timeout", "1"]
        )
        == 3
    )
    assert "no answer from the gateway" in capsys.readouterr().err


def _all_parsers() -> Iterator[argparse.ArgumentParser]:
    parser = build_parser()
    stack = [parser]
    while stack:
        current = stack.pop()
        yield current
        for action in current._actions:
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                stack.extend(action.choices.values())


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parsers = list(_all_parsers())
    assert len(parsers) >= len(COMMANDS) + 3
    for parser in parsers:
        assert parser.format_help().startswith("usage: mustcheck")
    for command in (
        ["--help"],
        ["check", "--help"],
        ["serve", "--help"],
        ["demo", "--help"],
        ["policies", "check", "--help"],
        ["demo-data", "--help"],
    ):
        assert main(command) == 0
    capsys.readouterr()
    main(["check", "--help"])
    assert "Exit codes: 0 answered, 2 invalid input, 3 gateway unavailable" in capsys.readouterr().out


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 2
    assert main(["no-such-command"]) == 2


def test_demo_data_is_deterministic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    for out, seed in ((first, "7"), (second, "7"), (other, "8")):
        assert (
            main(
                ["demo-data", "--subjects", "300", "--seed", seed, "--today", "2026-11-22", "--out", str(out)]
            )
            == 0
        )
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    rows = [json.loads(line) for line in first.read_text(encoding="utf-8").splitlines()]
    assert len({row["subject_code"] for row in rows}) == 300
    statuses = {row["status"] for row in rows}
    assert statuses == {"active", "under_objection", "repaired", "revoked"}
    kinds = {row["subject_kind"] for row in rows}
    assert kinds == {"organization", "person"}
    assert any(row["subject_code"].startswith("11") for row in rows)  # government bodies
    assert any(p["role"] == "legal_representative" for row in rows for p in row["responsible_persons"])
    assert not list(tmp_path.glob("*.partial"))
    for row in rows:  # every identifier is valid as exactly its own kind, so checks need not name it
        kind = validate_subject(row["subject_code"]).kind.value
        assert kind == row["subject_kind"]


def test_demo_data_covers_every_memorandum(policy: PolicySet, tmp_path: Path) -> None:
    out = tmp_path / "rows.jsonl"
    assert main(["demo-data", "--subjects", "400", "--seed", "1", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert {row["memorandum"] for row in rows} == set(policy.memoranda)


@pytest.mark.slow
def test_demo_tour_shows_every_outcome(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "mustcheck_gateway",
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        str(tmp_path),
        "--subjects",
        "300",
        "--exit-after-tour",
        "--log-level",
        "info",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONUTF8": "1"}
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for shown in (
        "incentives apply",
        "restrictions apply",
        "under objection",
        "no record",
        "green channel yes",
        "via ",
        "[uscc.check_character]",
        "须经工作人员人工确认",
        "demo.token",
    ):
        assert shown in out, f"{shown!r} missing from the tour:\n{out}"
    assert (tmp_path / "mustcheck.sqlite3").is_file() and (tmp_path / "audit.sqlite3").is_file()
    assert (tmp_path / "demo.token").stat().st_mode & 0o777 == 0o600
    # The tour ends with the auditor's report command (tests/test_readme.py runs it as printed).
    (printed,) = [
        line.strip() for line in out.splitlines() if line.strip().startswith("mustcheck audit report")
    ]
    assert (tmp_path / "auditor.token").stat().st_mode & 0o777 == 0o600
    assert "auditor.token" in printed

    # Every process (the demo and its audit writer) logs JSON lines, the start-up line included.
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert "gateway_started" in {entry["event"] for entry in logged}


def _check_cli(target: str, token_file: str, subject: str, *extra: str) -> int:
    return main(
        ["check", subject, "--matter", "MOF-0001", "--gateway", target, "--token-file", token_file, *extra]
    )


def test_check_refuses_other_scripts_digits_by_rule_without_a_traceback(
    target: str, token_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Found before sending (nothing is queried or audited): the same [rule] tag as the gateway's.
    assert _check_cli(target, token_file, "11010519491231002X".replace("9", "①", 1)) == 2
    error = capsys.readouterr().err
    assert "[id.charset]" in error and "Traceback" not in error


def test_text_output_never_says_no_record_above_a_membership_and_shows_cst(
    gateway: Gateway, target: str, token_file: str, now: dt.datetime, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its measures period is over but it is still displayed: nothing counts, yet a membership is shown.
    entry = make_entry(
        new_uscc(), effective=now - days(400), punish_until=now - days(10), display_until=now + days(100)
    )
    gateway.store.write_entries([entry], actor="test", action="add")
    assert _check_cli(target, token_file, entry.subject_code) == 0
    out = capsys.readouterr().out
    assert "measures period ended" in out
    assert "no record" not in out and "nothing in force" in out
    assert "CST (UTC+08:00)" in out and "+00:00" not in out
    assert _check_cli(target, token_file, entry.subject_code, "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["outcome"] == "no_record" and answer["memberships"]
    for instant in (answer["checked_at"], answer["memberships"][0]["punish_until"]):
        assert dt.datetime.fromisoformat(instant).tzinfo is not None  # JSON instants carry their offset
