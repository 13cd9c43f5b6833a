"""The command line under everyday mistakes: each gets a plain message and the right exit code, never a
traceback."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mustcheck import Client
from mustcheck_gateway.audit.backends import is_audit_log
from mustcheck_gateway.cli import main
from mustcheck_gateway.cli.dates import DATE_TYPES
from mustcheck_gateway.cli.main import EXIT_BROKEN_PIPE, build_parser
from mustcheck_gateway.server import Gateway

from factories import new_uscc
from provision import provision

ENV = {**os.environ, "PYTHONUTF8": "1"}


def test_output_to_a_closed_pipe_ends_quietly() -> None:
    # `true` reads nothing and exits at once: the 58 kB listing meets a closed pipe.
    done = subprocess.run(
        f"{sys.executable} -m mustcheck_gateway policies show --json | true; echo ${{PIPESTATUS[0]}}",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        executable="/bin/bash",
    )
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
    assert done.stdout.split() == [str(EXIT_BROKEN_PIPE)]


def test_a_missing_purpose_exits_2_naming_the_option(
    target: str, admin_token: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "purposeful.token"
    token.write_text(provision(target, admin_token, f"purposeful-{os.getpid()}", purpose_required=True))
    command = ["check", new_uscc(), "--matter", "MOF-0001", "--gateway", target, "--token-file", str(token)]
    assert main(command) == 2
    assert "--purpose TEXT" in capsys.readouterr().err
    assert main([*command, "--purpose", "资格审查"]) == 0


def test_no_credentials_names_the_token_file_option_and_variable(
    target: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MUSTCHECK_TOKEN_FILE", raising=False)
    assert main(["check", new_uscc(), "--matter", "MOF-0001", "--gateway", target]) == 4
    refused = capsys.readouterr().err
    assert "--token-file" in refused and "MUSTCHECK_TOKEN_FILE" in refused
    assert main(["admin", "callers", "list", "--gateway", target]) == 4
    refused = capsys.readouterr().err
    assert "--token-file" in refused and "MUSTCHECK_TOKEN_FILE" in refused


def test_receipts_verify_with_a_folder_of_private_keys_says_so(
    gateway: Gateway, target: str, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Client(target, token=token) as client:
        receipt = client.check(new_uscc(), "MOF-0001").receipt
    assert receipt is not None and is_audit_log(gateway.audit)
    keys = gateway.audit.keyring.directory  # the gateway's own keys/: private signing keys
    assert main(["receipts", "verify", receipt.compact, "--public-keys", str(keys)]) == 2
    said = capsys.readouterr().err
    assert "private keys only" in said and "Traceback" not in said
    assert main(["receipts", "verify", receipt.compact, "--public-keys", str(keys / "public")]) == 0


def test_receipts_verify_reads_a_receipt_file_and_names_what_is_not_one(
    gateway: Gateway, target: str, token: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with Client(target, token=token) as client:
        receipt = client.check(new_uscc(), "MOF-0001").receipt
    assert receipt is not None and is_audit_log(gateway.audit)
    public = str(gateway.audit.keyring.directory / "public")
    held = tmp_path / "receipt.txt"
    held.write_text(receipt.compact + "\r\n")
    for argument in (str(held), f"@{held}"):  # a file, with or without the @, its line break not read
        assert main(["receipts", "verify", argument, "--public-keys", public]) == 0
    refusals = {
        b"\xff\xfe": "receipt.txt: not UTF-8 text, so no receipt",
        b"mcr2." + b"A" * 100_000: "receipt.txt: over 8,192 characters, longer than any receipt",
    }
    capsys.readouterr()
    for content, message in refusals.items():
        held.write_bytes(content)
        assert main(["receipts", "verify", str(held), "--public-keys", public]) == 2
        assert message in capsys.readouterr().err
    missing = tmp_path / "none.txt"
    assert main(["receipts", "verify", f"@{missing}", "--public-keys", public]) == 2
    assert f"cannot read the receipt file {missing}: No such file or directory" in capsys.readouterr().err
    assert main(["receipts", "verify", str(missing), "--public-keys", public]) == 2
    assert "is neither a receipt (mcr2.…) nor a file" in capsys.readouterr().err


# -- dates, truncated listings, flag names, grants (issue 18, item 5) ---------------------------------


def _date_options() -> list[tuple[str, argparse.Action]]:
    found = []
    stack: list[tuple[str, argparse.ArgumentParser]] = [("mustcheck", build_parser())]
    while stack:
        name, parser = stack.pop()
        for action in parser._actions:
            if isinstance(action.choices, dict):
                stack.extend((f"{name} {sub}", child) for sub, child in action.choices.items())
            elif action.type in DATE_TYPES:
                found.append((name, action))
    return found


def test_every_date_option_names_its_formats() -> None:
    options = _date_options()
    named = {
        f"{command} {action.option_strings[0] if action.option_strings else action.dest}"
        for command, action in options
    }
    assert {
        "mustcheck audit query --since",
        "mustcheck audit report --until",
        "mustcheck audit prune --before",
        "mustcheck admin grants set --valid-from",
        "mustcheck admin grants update --valid-until",
        "mustcheck lists export --as-of",
        "mustcheck lists import --complete-since",
        "mustcheck demo-data --today",
    } <= named
    for command, action in options:
        assert action.help and "YYYY-MM-DD" in action.help, f"{command} {action.dest}"


@pytest.mark.parametrize(
    "command",
    [
        ["audit", "query", "--since", "2026/12/01"],
        ["audit", "report", "--until", "2026/12/01", "--out", "report.html"],
        ["audit", "prune", "--before", "2026/12/01", "--data-dir", "."],
        ["admin", "grants", "set", "someone", "--matter", "*", "--valid-from", "2026/12/01"],
        ["lists", "export", "--as-of", "2026/12/01"],
    ],
)
def test_a_bad_date_says_which_formats_are_accepted(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(command) == 2
    said = capsys.readouterr().err
    assert "'2026/12/01' is not a date" in said and "give YYYY-MM-DD" in said
    assert "_instant" not in said and "fromisoformat" not in said


@pytest.fixture(scope="module")
def auditor_token_file(target: str, admin_token: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auditor") / "auditor.token"
    path.write_text(provision(target, admin_token, "hygiene-auditor", roles=["auditor"], grant=False))
    return path


def test_a_truncated_query_says_so_and_pages_back_without_a_gap(
    target: str, admin_token: str, auditor_token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    caller = f"pager-{os.getpid()}"
    with Client(target, token=provision(target, admin_token, caller)) as client:
        for _ in range(5):
            client.check(new_uscc(), "MOF-0001")
    conn = ["--gateway", target, "--token-file", str(auditor_token_file)]
    query = ["audit", "query", "--caller", caller, "--record-kind", "check", *conn]
    assert main([*query, "--json"]) == 0
    every = [row["seq"] for row in json.loads(capsys.readouterr().out)]
    assert len(every) == 5

    assert main([*query, "--limit", "2", "--json"]) == 0
    captured = capsys.readouterr()
    first = [row["seq"] for row in json.loads(captured.out)]
    assert first == every[-2:]
    assert "showing the newest 2 matching records" in captured.err
    assert f"--before-seq {first[0]}" in captured.err

    pages = [first]
    while True:
        assert main([*query, "--limit", "2", "--before-seq", str(pages[-1][0]), "--json"]) == 0
        captured = capsys.readouterr()
        pages.append([row["seq"] for row in json.loads(captured.out)])
        if "showing the newest" not in captured.err:
            break
    assert [seq for page in reversed(pages) for seq in page] == every  # every record once, in order
    assert main([*query, "--limit", "5"]) == 0
    assert "showing the newest" not in capsys.readouterr().err  # all of them: nothing to say
    assert main([*query, "--limit", "0"]) == 2
    assert "--limit must be between 1 and 10000" in capsys.readouterr().err


def test_kind_has_one_meaning_the_old_spellings_warn(
    target: str, token: str, auditor_token_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    assert parser.parse_args(["check", "X", "--matter", "M", "--subject-kind", "person"]).kind == "person"
    assert parser.parse_args(["audit", "query", "--record-kind", "admin"]).kind == "admin"
    token_file = tmp_path / "caller.token"
    token_file.write_text(token)
    check = [
        "check",
        new_uscc(),
        "--matter",
        "MOF-0001",
        "--gateway",
        target,
        "--token-file",
        str(token_file),
    ]
    assert main([*check, "--kind", "organization"]) == 0
    assert "--kind is deprecated here: use --subject-kind" in capsys.readouterr().err
    assert main([*check, "--subject-kind", "organization"]) == 0
    assert "deprecated" not in capsys.readouterr().err
    conn = ["--gateway", target, "--token-file", str(auditor_token_file)]
    assert main(["audit", "query", "--kind", "check", "--limit", "1", *conn]) == 0
    assert "--kind is deprecated here: use --record-kind" in capsys.readouterr().err


def test_grants_set_shows_what_changes_and_update_changes_only_what_is_named(
    target: str, admin_token: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = tmp_path / "admin.token"
    admin.write_text(admin_token)
    conn = ["--gateway", target, "--token-file", str(admin)]
    caller = f"granted-{os.getpid()}"
    assert main(["admin", "callers", "add", caller, "--department", "mof", *conn]) == 0
    capsys.readouterr()

    assert main(["admin", "grants", "set", caller, "--matter", "MOF-0001", "--rate", "20", *conn]) == 0
    out = capsys.readouterr().out
    assert f"new grant for {caller} (it had none):" in out
    assert re.search(r"matters\s+- → MOF-0001", out) and re.search(r"rate_per_second\s+- → 20", out)

    assert main(["admin", "grants", "set", caller, "--matter", "MOF-0001", "--burst", "7", *conn]) == 0
    out = capsys.readouterr().out
    # set replaces the whole grant: the rate not named goes back to its default, and says so.
    assert f"changes to {caller}'s grant:" in out
    assert re.search(r"rate_per_second\s+20 → 50", out) and re.search(r"burst\s+100 → 7", out)
    assert "matters " not in out.split("caller ")[0]  # unchanged fields are not listed

    update = ["admin", "grants", "update", caller, "--rate", "5", "--subject-kind", "person", *conn]
    assert main([*update, "--json"]) == 0
    captured = capsys.readouterr()
    grant = json.loads(captured.out)
    assert grant["rate_per_second"] == 5 and grant["subject_kinds"] == ["person"]
    assert grant["burst"] == 7 and grant["matters"] == ["MOF-0001"]  # not named: kept
    assert re.search(r"rate_per_second\s+50 → 5", captured.err)  # the diff beside JSON goes to stderr
    assert "burst" not in captured.err

    assert main(["admin", "grants", "update", caller, "--burst", "7", *conn]) == 0
    assert f"{caller}'s grant is unchanged" in capsys.readouterr().out
    assert main(["admin", "grants", "revoke", caller, *conn]) == 0
    capsys.readouterr()
    assert main(["admin", "grants", "update", caller, "--rate", "1", *conn]) == 2
    assert "has no grant to update" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "option", "value"),
    [
        (["serve", "--drain-seconds"], "--drain-seconds", "inf"),
        (["serve", "--drain-seconds"], "--drain-seconds", "nan"),
        (["serve", "--drain-seconds"], "--drain-seconds", "-1"),
        (["serve", "--audit-min-free-mb"], "--audit-min-free-mb", "nan"),
        (["serve", "--cache-entries"], "--cache-entries", "-5"),
        (["serve", "--cache-entries"], "--cache-entries", "99999999999999"),
        (["check", "X", "--matter", "M", "--timeout"], "--timeout", "0"),
        (["check", "X", "--matter", "M", "--timeout"], "--timeout", "inf"),
        (["lists", "import", "rows.csv", "--timeout"], "--timeout", "nan"),
        (["demo", "--subjects"], "--subjects", "0"),
        (["admin", "grants", "set", "c", "--rate"], "--rate", "nan"),
        (["admin", "grants", "update", "c", "--rate"], "--rate", "Infinity"),
        (["audit", "prove", "--data-dir", "d", "--"], "SEQ", "0"),
        (["audit", "prove", "--data-dir", "d", "--"], "SEQ", str(2**70)),
        (["audit", "reveal", "--purpose", "p", "--"], "SEQ", "-1"),
        (["audit", "query", "--before-seq"], "--before-seq", "-1"),
    ],
)
def test_a_number_outside_its_option_s_range_is_refused_naming_the_range(
    capsys: pytest.CaptureFixture[str], arguments: list[str], option: str, value: str
) -> None:
    """``float`` parses "inf" and "nan": ``--drain-seconds inf`` never let a SIGTERM stop the gateway."""
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args([*arguments, value])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: {value!r} is not a" in err and re.search(
        r"(from|above) \S+ (to|and at most)", err
    )


def test_numbers_inside_their_range_are_read() -> None:
    parsed = build_parser().parse_args(["serve", "--drain-seconds", "0", "--cache-entries", "0"])
    assert (parsed.drain_seconds, parsed.cache_entries) == (0.0, 0)
    assert build_parser().parse_args(["admin", "grants", "update", "c", "--rate", "0.5"]).rate == 0.5
