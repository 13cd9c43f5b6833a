"""``mustcheck store migrate``: a SQLite store moves into PostgreSQL whole, verified, or not at all.
Skipped, saying why, when MUSTCHECK_TEST_POSTGRES is unset (``.ci/run`` always sets it)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from mustcheck import Client, Outcome
from mustcheck_gateway.audit import DEFAULT_FILE_NAME as AUDIT_FILE_NAME
from mustcheck_gateway.cli import main
from mustcheck_gateway.server import GatewayConfig, GatewayThread
from mustcheck_gateway.store import EntryStatus
from mustcheck_gateway.store.postgres import PostgresStore

from backends import fresh_schema
from conftest import POLICY_DIR
from factories import COMPLETE_SINCE, attest_complete_data, days, make_entry, new_uscc
from provision import provision

MATTER = "MOF-0001"


def test_a_sqlite_store_moves_to_postgresql_whole_and_keeps_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "gateway"
    listed = new_uscc()
    with GatewayThread(
        GatewayConfig(data_dir=data_dir, listen="127.0.0.1:0", policy_dir=POLICY_DIR)
    ) as gateway:
        assert gateway.admin_token_file is not None
        token = provision(f"127.0.0.1:{gateway.port}", gateway.admin_token_file.read_text().strip(), "mover")
        entry = make_entry(listed, effective=gateway.engine.clock() - days(1))
        gateway.store.write_entries([entry], actor="test", action="add")
        gateway.store.set_status(
            entry.entry_id, EntryStatus.ACTIVE, actor="test", action="confirm", at=gateway.engine.clock()
        )
        attest_complete_data(gateway.store)
        with Client(f"127.0.0.1:{gateway.port}", token=token) as client:
            result = client.check(listed, MATTER)
            assert result.receipt is not None
            held = [client.check(new_uscc(), MATTER).receipt for _ in range(20)]
            client.report_outcome(
                result.receipt, "APP-1", "rejected", [m.id for m in result.mandatory_measures]
            )
        before = (
            gateway.store.data_version(),
            gateway.store.auth_version(),
            len(gateway.store.history(entry.entry_id)),
        )

    with fresh_schema() as url:
        assert main(["store", "migrate", "--from", f"sqlite:{data_dir}", "--to", url]) == 0
        out = capsys.readouterr().out
        assert "entry_history: 2" in out and "tokens:" in out and "audit log" in out and "intact" in out
        # The audit log moved with its proofs: receipts issued before prove against the moved log.
        receipts = tmp_path / "receipts.txt"
        receipts.write_text("\n".join(r.compact for r in [result.receipt, *held] if r is not None) + "\n")
        keys = data_dir / "keys" / "public"
        verify = ["audit", "verify", "--store", url, "--public-keys", str(keys), "--receipts", str(receipts)]
        assert main(verify) == 0, capsys.readouterr().out
        capsys.readouterr()
        log_id = (data_dir / "replica.id").read_text().strip()
        seq = str(result.receipt.audit_seq)
        assert main(["audit", "prove", seq, "--store", url, "--log", log_id, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["proven"] is True
        target = PostgresStore(url)
        try:
            assert (
                target.data_version(),
                target.auth_version(),
                len(target.history(entry.entry_id)),
            ) == before
            assert target.get_feedback("mover", "APP-1") is not None
            completeness = target.data_completeness()  # the green channel's evidence moves too (R6)
            assert completeness is not None and completeness.complete_since == COMPLETE_SINCE
        finally:
            target.close()
        # The same data directory (audit log, keys) with the store in PostgreSQL: same caller, same answer.
        config = GatewayConfig(data_dir=data_dir, listen="127.0.0.1:0", policy_dir=POLICY_DIR, store_url=url)
        with GatewayThread(config) as moved, Client(f"127.0.0.1:{moved.port}", token=token) as client:
            assert getattr(moved.audit, "backend", None) == "postgresql"  # the log continues there
            after = client.check(listed, MATTER)
            assert after.outcome is Outcome.RESTRICTIONS
            assert after.receipt is not None and after.receipt.audit_seq > result.receipt.audit_seq
        assert main(verify) == 0
        capsys.readouterr()
        # Moving the same log again is refused and changes nothing.
        assert main(["store", "migrate", "--from", f"sqlite:{data_dir}", "--to", url, "--audit-only"]) == 1
        assert "already holds the audit log" in capsys.readouterr().err

        # A second copy into the now filled database is refused and changes nothing.
        assert main(["store", "migrate", "--from", f"sqlite:{data_dir}", "--to", url]) == 1
        assert "not empty" in capsys.readouterr().err


def test_a_tampered_audit_chain_fails_the_migration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "gateway"
    with GatewayThread(
        GatewayConfig(data_dir=data_dir, listen="127.0.0.1:0", policy_dir=POLICY_DIR)
    ) as gateway:
        assert gateway.admin_token_file is not None
        provision(f"127.0.0.1:{gateway.port}", gateway.admin_token_file.read_text().strip(), "mover")
    with sqlite3.connect(data_dir / AUDIT_FILE_NAME) as audit:
        audit.execute("UPDATE audit_records SET outcome = 'tampered' WHERE seq = 1")
    with fresh_schema() as url:
        assert main(["store", "migrate", "--from", f"sqlite:{data_dir}", "--to", url]) == 1
    assert "TAMPERED" in capsys.readouterr().err


def test_bad_addresses_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["store", "migrate", "--from", str(tmp_path), "--to", "postgresql://x@127.0.0.1/none"]) == 2
    assert "sqlite:PATH" in capsys.readouterr().err
    assert main(["store", "migrate", "--from", f"sqlite:{tmp_path}", "--to", "mysql://x"]) == 2
    assert "postgresql://" in capsys.readouterr().err
    assert (
        main(["store", "migrate", "--from", f"sqlite:{tmp_path}", "--to", "postgresql://x@127.0.0.1/none"])
        == 2
    )
    assert "no SQLite store" in capsys.readouterr().err
