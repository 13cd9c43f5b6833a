"""List data lifecycle over the network: import, objections, repair, history, legacy codes, export."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mustcheck import Client, Outcome
from mustcheck_gateway.audit.backends import is_audit_log
from mustcheck_gateway.cli import main
from mustcheck_gateway.server import Gateway
from mustcheck_gateway.store import SqliteStore

from factories import new_citizen_id, new_uscc

TODAY = dt.date.today()


def day(offset: int) -> str:
    return (TODAY + dt.timedelta(days=offset)).isoformat()


def row(code: str | None = None, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "source": "court-feed",
        "subject_code": code or new_uscc(),
        "subject_name": "示例建设有限公司",
        "subject_kind": "organization",
        "memorandum": "judgment-defaulters",
        "list_kind": "black",
        "initiating_department": "court",
        "decision_document": f"（{TODAY.year}）示例执字第{new_uscc()[-6:]}号",
        "decision_date": day(-30),
        "severity": "serious",
        "reason": "有履行能力而拒不履行生效法律文书确定义务",
        "effective_date": day(-29),
        "punish_until": day(300),
        "display_until": day(330),
        "responsible_persons": [{"id": new_citizen_id(), "name": "王小明", "role": "legal_representative"}],
    }
    base.update(changes)
    return base


def write_jsonl(path: Path, rows: list[dict[str, Any]], *, encoding: str = "utf-8") -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding=encoding)
    return path


def write_csv(path: Path, rows: list[dict[str, Any]], *, encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for item in rows:
            persons = ";".join(
                f"{p['id']}|{p['name']}|{p['role']}" for p in item.get("responsible_persons", [])
            )
            writer.writerow({**item, "responsible_persons": persons})
    return path


@pytest.fixture(scope="module")
def admin_args(target: str, admin_token: str, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = tmp_path_factory.mktemp("lists") / "admin.token"
    path.write_text(admin_token)
    return ["--gateway", target, "--token-file", str(path)]


def lists(admin_args: list[str], *argv: str) -> int:
    return main(["lists", *argv, *admin_args])


def test_one_bad_row_applies_nothing_and_is_named(
    gateway: Gateway, admin_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = [row(), row()]
    bad = row(subject_code="914403001922038217")
    path = write_jsonl(tmp_path / "feed.jsonl", [good[0], bad, good[1]])
    version = gateway.store.data_version()
    assert lists(admin_args, "import", str(path)) == 2
    err = capsys.readouterr().err
    assert "nothing applied" in err and "line 2: subject_code: check character" in err
    assert gateway.store.data_version() == version
    assert gateway.store.entries_for_subject(good[0]["subject_code"]) == []

    rejects = tmp_path / "rejects.jsonl"
    assert lists(admin_args, "import", str(path), "--skip-invalid", "--rejects", str(rejects)) == 0
    out = capsys.readouterr().out
    assert "2 new" in out and "1 rejected" in out
    (rejected,) = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert rejected["line"] == 2 and "check character" in rejected["reason"]
    assert json.loads(rejected["text"])["subject_code"] == "914403001922038217"
    assert gateway.store.data_version() == version + 1  # one import, one version

    again = gateway.store.data_version()
    assert lists(admin_args, "import", str(path), "--skip-invalid", "--rejects", str(rejects)) == 0
    assert "0 new, 0 updated, 2 unchanged" in capsys.readouterr().out
    assert gateway.store.data_version() == again  # a re-import changes nothing


def test_changed_row_updates_its_entry_and_keeps_history(
    admin_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = row()
    assert lists(admin_args, "import", str(write_jsonl(tmp_path / "a.jsonl", [original]))) == 0
    changed = {**original, "reason": "更正后的失信原因", "punish_until": day(200)}
    assert lists(admin_args, "import", str(write_jsonl(tmp_path / "b.jsonl", [changed]))) == 0
    assert "0 new, 1 updated" in capsys.readouterr().out
    assert lists(admin_args, "history", original["subject_code"], "--json") == 0
    history = json.loads(capsys.readouterr().out)
    assert [item["action"] for item in history] == ["import", "import-update"]


def test_history_views_are_audited_with_the_subject_protected(
    gateway: Gateway, admin_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    subject = new_citizen_id()
    assert lists(admin_args, "history", subject) == 0
    assert "no entries" in capsys.readouterr().out
    assert is_audit_log(gateway.audit)
    (record,) = gateway.audit.query(subject=subject, kind="admin")
    assert record.detail["action"] == "lists.history" and subject not in json.dumps(record.as_export())


def test_csv_in_gbk_is_read(
    gateway: Gateway, admin_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    item = row(subject_name="中文名称有限公司")
    path = write_csv(tmp_path / "gbk.csv", [item], encoding="gbk")
    assert lists(admin_args, "import", str(path)) == 0
    captured = capsys.readouterr()
    assert "as GBK" in captured.err and "1 new" in captured.out
    (entry,) = gateway.store.entries_for_subject(item["subject_code"])
    assert entry.subject_name == "中文名称有限公司" and entry.responsible_persons[0].name == "王小明"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\xff\xfe\x00\x01garbage\x80\x81\x82", "neither UTF-8 nor GBK"),
        (b"subject_code,subject_kind\n91110108551385082Q,organization\n", "missing column"),
    ],
)
def test_unusable_files_change_nothing(
    gateway: Gateway,
    admin_args: list[str],
    tmp_path: Path,
    content: bytes,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    version = gateway.store.data_version()
    assert lists(admin_args, "import", str(path)) == 2
    assert message in capsys.readouterr().err
    assert gateway.store.data_version() == version


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_truncated_last_line_changes_nothing(
    gateway: Gateway, admin_args: list[str], tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = row()
    writer = write_jsonl if suffix == "jsonl" else write_csv
    path = writer(tmp_path / f"cut.{suffix}", [first, row()])
    text = path.read_bytes()
    path.write_bytes(text[: len(text) - 40])  # cut in the middle of the last line
    assert lists(admin_args, "import", str(path)) == 2
    assert "truncated" in capsys.readouterr().err
    assert gateway.store.entries_for_subject(first["subject_code"]) == []


def test_duplicate_keys_within_a_file(
    admin_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    item = row()
    path = write_jsonl(tmp_path / "dup.jsonl", [item, {**item, "reason": "重复"}])
    assert lists(admin_args, "import", str(path)) == 2
    assert "line 2: duplicate key" in capsys.readouterr().err


def test_periods_beyond_the_severity_class_are_refused(
    admin_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long = row(severity="general", punish_until=day(600), display_until=day(600))
    assert lists(admin_args, "import", str(write_jsonl(tmp_path / "long.jsonl", [long]))) == 2
    err = capsys.readouterr().err
    assert "nothing applied: 1 of 1 rows are bad" in err and "at most 12 months" in err


def _entry_id(gateway: Gateway, code: str) -> str:
    (entry,) = gateway.store.entries_for_subject(code)
    return entry.entry_id


def test_objection_suspends_measures_at_once_and_resolution_restores_or_removes(
    gateway: Gateway,
    admin_args: list[str],
    target: str,
    token: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    upheld, revoked = row(), row()
    assert lists(admin_args, "import", str(write_jsonl(tmp_path / "o.jsonl", [upheld, revoked]))) == 0
    with Client(target, token=token) as client:
        for item in (upheld, revoked):
            entry_id = _entry_id(gateway, item["subject_code"])
            assert client.check(item["subject_code"], "MOF-0001").outcome is Outcome.RESTRICTIONS
            assert lists(admin_args, "objection", "open", entry_id, "--note", "当事人提出异议") == 0
            suspended = client.check(item["subject_code"], "MOF-0001")  # the very next check
            assert suspended.outcome is Outcome.UNDER_OBJECTION and suspended.measures == ()
        assert (
            lists(admin_args, "objection", "resolve", _entry_id(gateway, upheld["subject_code"]), "--upheld")
            == 0
        )
        assert client.check(upheld["subject_code"], "MOF-0001").outcome is Outcome.RESTRICTIONS
        assert (
            lists(
                admin_args, "objection", "resolve", _entry_id(gateway, revoked["subject_code"]), "--revoked"
            )
            == 0
        )
        assert client.check(revoked["subject_code"], "MOF-0001").outcome is Outcome.NO_RECORD
    capsys.readouterr()
    assert lists(admin_args, "history", revoked["subject_code"], "--json") == 0
    history = json.loads(capsys.readouterr().out)
    assert [(h["action"], h["status"]) for h in history] == [
        ("import", "active"),
        ("objection open", "under_objection"),
        ("objection revoked", "revoked"),
    ]


def test_objection_corrected(gateway: Gateway, admin_args: list[str], tmp_path: Path) -> None:
    item = row()
    assert lists(admin_args, "import", str(write_jsonl(tmp_path / "c.jsonl", [item]))) == 0
    entry_id = _entry_id(gateway, item["subject_code"])
    assert lists(admin_args, "objection", "open", entry_id) == 0
    corrected = json.dumps({"reason": "经核实更正", "punish_until": day(100)}, ensure_ascii=False)
    assert lists(admin_args, "objection", "resolve", entry_id, "--corrected", corrected) == 0
    entry = gateway.store.get_entry(entry_id)
    assert entry.reason == "经核实更正" and entry.status.value == "active"


def test_repair_is_refused_before_the_minimum_period(
    gateway: Gateway, admin_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recent, old = (
        row(),
        row(decision_date=day(-400), effective_date=day(-399), punish_until=day(300), display_until=day(330)),
    )
    assert lists(admin_args, "import", str(write_jsonl(tmp_path / "r.jsonl", [recent, old]))) == 0
    capsys.readouterr()
    assert lists(admin_args, "repair", _entry_id(gateway, recent["subject_code"])) == 2
    earliest = (dt.date.fromisoformat(recent["decision_date"]) + dt.timedelta(days=365)).isoformat()
    err = capsys.readouterr().err
    assert "12 months" in err and earliest[:7] in err
    assert lists(admin_args, "repair", _entry_id(gateway, old["subject_code"])) == 0
    assert gateway.store.get_entry(_entry_id(gateway, old["subject_code"])).status.value == "repaired"


def test_add_update_and_revoke_one_by_one(
    gateway: Gateway, admin_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    item = row()
    assert lists(admin_args, "add", json.dumps(item, ensure_ascii=False)) == 0
    assert lists(admin_args, "add", json.dumps(item, ensure_ascii=False)) == 2
    assert "exists" in capsys.readouterr().err
    assert lists(admin_args, "update", json.dumps({**item, "reason": "补充"}, ensure_ascii=False)) == 0
    entry_id = _entry_id(gateway, item["subject_code"])
    assert lists(admin_args, "revoke", entry_id, "--note", "撤销") == 0
    actions = [h.action for h in gateway.store.history(entry_id)]
    assert actions == ["add", "update", "revoke"]


def test_allow_legacy_code(
    target: str, token: str, admin_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = "91350203M0001QAY9A"  # the published pilot code with another check character
    with Client(target, token=token) as client:
        from mustcheck import InvalidSubject

        with pytest.raises(InvalidSubject):
            client.check(code, "MOF-0001")
        assert lists(admin_args, "allow-legacy", code, "--reason", "试点期间赋码") == 0
        assert client.check(code, "MOF-0001").legacy_code
        # The allow-list admits the code in list rows too (R1), one by one and in imports.
        assert lists(admin_args, "add", json.dumps(row(code), ensure_ascii=False)) == 0
        assert client.check(code, "MOF-0001").memberships
    assert lists(admin_args, "allow-legacy", "91110108551385082Q", "--reason", "x") == 2
    assert "needs no allow-list entry" in capsys.readouterr().err


def test_disallow_legacy_withdraws_and_admitting_twice_changes_nothing(
    gateway: Gateway, target: str, token: str, admin_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from mustcheck import InvalidSubject

    code = "91350203M0001QAY9C"  # the published pilot code with yet another check character
    with Client(target, token=token) as client:
        assert lists(admin_args, "allow-legacy", code.lower(), "--reason", "试点期间赋码") == 0
        assert "admitted as a legacy code" in capsys.readouterr().out
        version = gateway.store.data_version()
        assert lists(admin_args, "allow-legacy", code, "--reason", "again") == 0
        assert "already admitted" in capsys.readouterr().out and gateway.store.data_version() == version
        assert client.check(code, "MOF-0001").legacy_code
        assert lists(admin_args, "disallow-legacy", code, "--reason", "核实为错误赋码") == 0
        assert "withdrawn" in capsys.readouterr().out
        with pytest.raises(InvalidSubject) as caught:
            client.check(code, "MOF-0001")
        assert caught.value.rule == "uscc.check_character"
        assert lists(admin_args, "disallow-legacy", code, "--reason", "again") == 0
        assert "nothing changed" in capsys.readouterr().out
    assert is_audit_log(gateway.audit)
    withdrawals = [
        r.detail
        for r in gateway.audit.query(kind="admin", limit=1000)
        if r.detail.get("action") == "lists.disallow-legacy"
    ]
    assert [w["code"] for w in withdrawals][-2:] == [code, code]
    assert withdrawals[-1]["reason"] == "again"


def test_export_masks_persons_and_keeps_only_entries_in_force(
    admin_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    person = new_citizen_id()
    in_force = row(person, subject_kind="person", subject_name="李大伟", responsible_persons=[])
    expired = row(
        decision_date=day(-500), effective_date=day(-499), punish_until=day(-10), display_until=day(200)
    )
    assert lists(admin_args, "import", str(write_jsonl(tmp_path / "e.jsonl", [in_force, expired]))) == 0
    out = tmp_path / "export.jsonl"
    assert lists(admin_args, "export", "--list", "black", "--format", "jsonl", "--out", str(out)) == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    documents = {r["decision_document"] for r in exported}
    assert in_force["decision_document"] in documents and expired["decision_document"] not in documents
    text = out.read_text()
    assert person not in text and "李大伟" not in text and person[:6] + "********" + person[-4:] in text
    assert all(len(p["id"]) == 18 and "*" in p["id"] for r in exported for p in r["responsible_persons"])
    csv_out = tmp_path / "export.csv"
    assert lists(admin_args, "export", "--format", "csv", "--out", str(csv_out)) == 0
    assert person not in csv_out.read_text()


def test_json_lines_are_numbered_as_read_and_bad_lines_reported(
    gateway: Gateway, admin_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = [row(), row(), row()]
    lines = [
        json.dumps(good[0], ensure_ascii=False) + "\r\n",  # 1
        "\n",  # 2: blank lines count as lines, not rows
        json.dumps(good[1], ensure_ascii=False) + "\r",  # 3: an old Mac line break
        '{"source": "court-feed", \n',  # 4: not JSON
        "[1, 2]\n",  # 5: JSON, not an object
        json.dumps({**good[2], "subject_name": "名称\u2028有限公司"}, ensure_ascii=False) + "\n",  # 6
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes("".join(lines).encode())
    version = gateway.store.data_version()
    assert lists(admin_args, "import", str(path)) == 2
    err = capsys.readouterr().err
    assert "nothing applied: 2 of 5 rows are bad" in err
    assert "line 4: not valid JSON" in err and "line 5: a row must be a JSON object" in err
    assert gateway.store.data_version() == version

    rejects = tmp_path / "rejects.jsonl"
    assert lists(admin_args, "import", str(path), "--skip-invalid", "--rejects", str(rejects)) == 0
    assert "3 new" in capsys.readouterr().out
    assert [json.loads(text)["line"] for text in rejects.read_text().splitlines()] == [4, 5]
    (entry,) = gateway.store.entries_for_subject(good[2]["subject_code"])
    assert entry.subject_name == "名称\u2028有限公司"
    if isinstance(gateway.store, SqliteStore):  # snapshots arrive as bytes: stored as text all the same
        with sqlite3.connect(gateway.store.path) as db:
            kinds = {kind for (kind,) in db.execute("SELECT DISTINCT typeof(snapshot) FROM entry_history")}
        assert kinds == {"text"}


def test_a_json_lines_file_without_json_rows_holds_no_rows(
    gateway: Gateway, admin_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "garbage.jsonl"
    path.write_text("not json\nneither\n", encoding="utf-8")
    version = gateway.store.data_version()
    assert lists(admin_args, "import", str(path)) == 2
    assert "holds no rows" in capsys.readouterr().err
    assert gateway.store.data_version() == version
