"""Backup and restore, as docs/operations.md tells an operator to do it: back up while the gateway answers
checks (its PostgreSQL store with pg_dump first, where it has one), lose everything, restore, and find the
log intact, the receipts issued before the backup verifiable and their records present, and checks
answered — on both store backends."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import psycopg
import pytest
from psycopg import sql

from mustcheck import Client, MustCheckError, verify_receipt
from mustcheck_gateway.audit import AuditLog, verify_data_dir
from mustcheck_gateway.audit.journal import encode_frame, intact_prefix, parse_journal
from mustcheck_gateway.cli import main
from mustcheck_gateway.server import GatewayConfig, GatewayThread

from backends import StoreAt
from conftest import POLICY_DIR
from factories import new_uscc
from provision import provision


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{name} is missing in CI (Debian's postgresql-client has it)")
    pytest.skip(f"{name} is not installed: Debian's postgresql-client has it")


def _schema(url: str) -> str:
    options = dict(parse_qsl(urlsplit(url).query)).get("options", "")
    return options.split("search_path=", 1)[1].split()[0]


@pytest.mark.slow
def test_a_backup_taken_under_load_restores_to_a_working_verifiable_gateway(
    store_location: StoreAt, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = store_location.data_dir / "data"
    url = store_location.url
    dump = tmp_path / "store.dump"
    if url is not None:
        pg_dump, pg_restore = _pg_tool("pg_dump"), _pg_tool("pg_restore")
    config = GatewayConfig(
        data_dir=data_dir,
        listen="127.0.0.1:0",
        policy_dir=POLICY_DIR,
        checkpoint_every=50,
        store_url=url,
        audit_store="embedded",  # the backup of a data directory: its files
    )
    before: list[str] = []
    with GatewayThread(config) as gateway:
        target = f"127.0.0.1:{gateway.port}"
        assert gateway.admin_token_file is not None
        token = provision(target, gateway.admin_token_file.read_text().strip(), "permits")
        with Client(target, token=token) as client:
            for _ in range(120):
                receipt = client.check(new_uscc(), "MOF-0001").receipt
                assert receipt is not None
                before.append(receipt.compact)
            keys = client.receipt_keys()
            stop = threading.Event()
            answered_during = [0]

            def load() -> None:
                while not stop.is_set():
                    try:
                        client.check(new_uscc(), "MOF-0001")
                        answered_during[0] += 1
                    except MustCheckError:
                        pass

            loaders = [threading.Thread(target=load) for _ in range(2)]
            for loader in loaders:
                loader.start()
            try:
                # Several backups while checks are answered and the journal fills and empties: each one
                # verifies on its own (no false "tampered", no gap between journal and index).
                if url is not None:  # the shared store first: every head it holds is in the logs copied next
                    subprocess.run(
                        [pg_dump, "--format=custom", f"--schema={_schema(url)}", f"--file={dump}", url],
                        check=True,
                        timeout=120,
                    )
                for number in range(5):
                    copy = tmp_path / f"backup-{number}"
                    assert main(["store", "backup", "--data-dir", str(data_dir), "--out", str(copy)]) == 0
                    verdict = verify_data_dir(copy)
                    assert verdict.ok, verdict
            finally:
                stop.set()
                for loader in loaders:
                    loader.join(30)
    assert answered_during[0] > 0  # the backups were taken while checks were being answered
    assert "backed up" in capsys.readouterr().out
    backup = tmp_path / "backup-4"
    assert backup.stat().st_mode & 0o777 == 0o700
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in backup.rglob("*") if path.is_file())

    shutil.rmtree(data_dir)  # the disk is lost
    if url is not None:  # and the database
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(_schema(url))))
        subprocess.run([pg_restore, f"--dbname={url}", str(dump)], check=True, timeout=120)
    shutil.copytree(backup, data_dir)  # restore: the backup back in place, gateway stopped

    verdict = verify_data_dir(data_dir)
    assert verdict.ok, verdict
    restored_config = GatewayConfig(
        data_dir=data_dir,
        listen="127.0.0.1:0",
        policy_dir=POLICY_DIR,
        store_url=url,
        audit_store="embedded",
    )
    with GatewayThread(restored_config) as gateway:
        assert isinstance(gateway.audit, AuditLog)
        # Every receipt issued before the backup names a record the restored log holds, as it was.
        restored = {record.seq: record for record in gateway.audit.records(until_seq=10_000)}
        for compact in before:
            receipt = verify_receipt(compact, keys)
            record = restored[receipt.audit_seq]
            assert (record.subject_hash, record.outcome, record.at) == (
                receipt.subject_hash,
                receipt.outcome,
                receipt.issued_at,
            )
        with Client(f"127.0.0.1:{gateway.port}", token=token) as client:
            assert client.check(new_uscc(), "MOF-0001").receipt is not None
            restored_keys = client.receipt_keys()
    assert set(keys) <= set(restored_keys)
    for compact in before:
        verify_receipt(compact, restored_keys)
    assert verify_data_dir(data_dir).ok


def test_a_journal_copied_while_written_keeps_only_its_whole_frames() -> None:
    first, second, third = (encode_frame([(seq, f"record {seq}")], []) for seq in (1, 2, 3))
    # The copy caught the second frame half emptied (zeros inside it), then a frame written after.
    cut = second[: len(second) // 2] + bytes(len(second) - len(second) // 2)
    assert intact_prefix(first + cut + third + bytes(64)) == first
    assert intact_prefix(first + second + third[:-3]) == first + second
    assert intact_prefix(bytes(100)) == b""
    assert parse_journal("copy", intact_prefix(first + cut + third)).rows == [(1, "record 1")]
