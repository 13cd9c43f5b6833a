"""The audit log on PostgreSQL: one database holds every replica's Merkle log (docs/audit-log.md).

Cut records are found by whoever holds a receipt; edits, deletions, swaps and forged heads are found;
a gateway killed under load loses no answered record; a check through one replica is found, proven
and covered through another; retention drops whole month partitions older than three years only.
Skipped, saying why, when MUSTCHECK_TEST_POSTGRES is unset (``.ci/run`` always sets it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import psycopg
import pytest

from mustcheck import CheckUnavailable, Client, MustCheckError, Receipt, RetryPolicy, verify_receipt
from mustcheck.merkle import SHA256
from mustcheck.receipts import load_public_keys
from mustcheck.tree_head import sign_tree_head
from mustcheck_gateway.audit import KEYS_DIR_NAME, AuditEvent, AuditRecord, KeyKind, KeyRing, retention_limit
from mustcheck_gateway.audit.postgres_log import PostgresAuditLog
from mustcheck_gateway.audit.postgres_schema import partitions
from mustcheck_gateway.audit.postgres_writer import log_lock_key
from mustcheck_gateway.cli import main
from mustcheck_gateway.server import Gateway, GatewayConfig, GatewayThread

from backends import fresh_schema
from conftest import POLICY_DIR
from factories import days, make_entry, new_uscc
from processes import ServeProcess
from provision import provision
from threads import wait_until

MATTER = "MOF-0001"


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as schema_url:
        yield schema_url


def _config(url: str, data_dir: Path) -> GatewayConfig:
    return GatewayConfig(data_dir=data_dir, listen="127.0.0.1:0", policy_dir=POLICY_DIR, store_url=url)


def _token(gateway: Gateway, name: str, *, roles: tuple[str, ...] = (), grant: bool = True) -> str:
    assert gateway.admin_token_file is not None
    admin = gateway.admin_token_file.read_text().strip()
    return provision(f"127.0.0.1:{gateway.port}", admin, name, roles=roles, grant=grant)


def _verify(url: str, keys: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["audit", "verify", "--store", url, "--public-keys", str(keys), *extra])
    return code, capsys.readouterr().out


# -- cut from the end ---------------------------------------------------------------------------


def _cut(url: str, log_id: str, keep: int) -> None:
    """What an attacker with the database does: delete the newest records and everything that names
    them (their tree nodes, tree heads and checkpoints), leaving a log consistent with itself."""
    with psycopg.connect(url, autocommit=True) as connection, connection.transaction():
        connection.execute("DELETE FROM audit_log_records WHERE log_id = %s AND seq > %s", (log_id, keep))
        connection.execute(
            "DELETE FROM audit_log_tree_nodes WHERE log_id = %s AND (idx + 1) * (1::bigint << level) > %s",
            (log_id, keep),
        )
        connection.execute("DELETE FROM audit_log_tree_heads WHERE log_id = %s AND size > %s", (log_id, keep))
        connection.execute("DELETE FROM audit_log_checkpoints WHERE log_id = %s AND seq > %s", (log_id, keep))


@pytest.mark.parametrize("cut", [1, 10, 328])
def test_records_cut_from_the_end_are_found_by_a_receipt_holder(
    url: str, cut: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with GatewayThread(_config(url, tmp_path / "gateway")) as gateway:
        token = _token(gateway, "cutter")
        log_id = gateway.audit.log_id  # type: ignore[union-attr]
        with Client(f"127.0.0.1:{gateway.port}", token=token) as client:
            receipts: list[Receipt | None] = []
            for _ in range(4):  # 400 checks, 100 to a batch: each item has its receipt
                batch = client.batch_check([new_uscc() for _ in range(100)], MATTER)
                receipts.extend(result.receipt for result in batch.results)
    keys = tmp_path / "gateway" / KEYS_DIR_NAME / "public"
    public = load_public_keys(keys)
    held = receipts[-cut]  # the auditor holds the receipt of the first record to be cut
    assert held is not None
    seq = verify_receipt(held.compact, public).audit_seq
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT MAX(seq) FROM audit_log_records WHERE log_id = %s", (log_id,)
        ).fetchone()
    assert row is not None
    last = int(row[0])
    # The gateway's own records (its stop) may follow the checks: cut ``cut`` records from the held one on.
    _cut(url, log_id, seq - 1)
    assert last - (seq - 1) >= cut
    # Consistent with itself, the database alone cannot tell ...
    code, out = _verify(url, keys, capsys)
    assert code == 0, out
    # ... but a receipt holder can.
    held_file = tmp_path / "held.txt"
    held_file.write_text(held.compact + "\n")
    code, out = _verify(url, keys, capsys, "--receipts", str(held_file))
    assert code == 1
    assert "cut from the end" in out and re.search(rf"records? {seq}\b", out) and log_id in out


# -- edits, deletions, swaps, forged heads --------------------------------------------------------


def _written_log(url: str, keys_dir: Path, records: int = 30) -> PostgresAuditLog:
    """A log with ``records`` checks, written by the real writer (then closed, signed to the end)."""
    log = PostgresAuditLog(url, "tampered-replica", KeyRing.load_or_create(keys_dir), checkpoint_every=7)

    async def write() -> None:
        for index in range(records):
            await log.append(
                AuditEvent(
                    kind="check", caller_id="c", matter=MATTER, subject=new_uscc(), outcome=f"o{index}"
                )
            )

    asyncio.run(write())
    log.close()
    return log


def _edit(connection: psycopg.Connection[tuple[object, ...]]) -> None:
    connection.execute("UPDATE audit_log_records SET outcome = 'clear' WHERE seq = 12")


def _delete(connection: psycopg.Connection[tuple[object, ...]]) -> None:
    connection.execute("DELETE FROM audit_log_records WHERE seq = 12")


def _swap(connection: psycopg.Connection[tuple[object, ...]]) -> None:
    connection.execute("UPDATE audit_log_records SET seq = -1 WHERE seq = 12")
    connection.execute("UPDATE audit_log_records SET seq = 12 WHERE seq = 13")
    connection.execute("UPDATE audit_log_records SET seq = 13 WHERE seq = -1")


def _alter_node(connection: psycopg.Connection[tuple[object, ...]]) -> None:
    connection.execute("UPDATE audit_log_tree_nodes SET hash = '\\x00' WHERE level = 1 AND idx = 3")


@pytest.mark.parametrize(
    ("tamper", "found"),
    [
        (_edit, "altered"),
        (_delete, "deleted"),
        (_swap, "record 12"),
        (_alter_node, "node at level 1, index 3"),
    ],
)
def test_edits_deletions_and_swaps_are_found(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], tamper: object, found: str
) -> None:
    _written_log(url, tmp_path / "keys")
    keys = tmp_path / "keys" / "public"
    assert _verify(url, keys, capsys)[0] == 0
    with psycopg.connect(url, autocommit=True) as connection:
        tamper(connection)  # type: ignore[operator]
    code, out = _verify(url, keys, capsys)
    assert code == 1 and "TAMPERED" in out and found in out and "tampered-replica" in out


def test_a_forged_tree_head_is_found(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _written_log(url, tmp_path / "keys")
    keys = tmp_path / "keys" / "public"
    genuine = log.keyring.current_id(KeyKind.SIGN)
    forger = KeyRing.load_or_create(tmp_path / "forger")
    forger_key = forger.current_id(KeyKind.SIGN)
    # A head claiming more records, under the genuine key id, signed with another key.
    forged = sign_tree_head(
        "tampered-replica",
        40,
        SHA256.leaf(b"x"),
        "2026-12-04T00:00:00+00:00",
        genuine,
        forger.signer(forger_key),
    )
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO audit_log_tree_heads (log_id, size, at, head) VALUES (%s, %s, %s, %s)",
            ("tampered-replica", forged.size, forged.at, forged.to_json()),
        )
    code, out = _verify(url, keys, capsys)
    assert code == 1 and "forged tree head" in out


# -- SIGKILL under load -------------------------------------------------------------------------


class ReceiptLoad:
    """Callers checking as fast as they can, keeping every receipt they were given."""

    def __init__(self, target: str, token: str, workers: int = 4) -> None:
        self.receipts: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(workers)
        self._futures = [self._pool.submit(self._run, target, token) for _ in range(workers)]

    def _run(self, target: str, token: str) -> None:
        with Client(target, token=token, timeout=2) as client:
            while not self._stop.is_set():
                try:
                    receipt = client.check(new_uscc(), MATTER).receipt
                except MustCheckError:
                    continue
                if receipt is not None:
                    with self._lock:
                        self.receipts.append(receipt.compact)

    def count(self) -> int:
        with self._lock:
            return len(self.receipts)

    def stop(self) -> None:
        self._stop.set()
        for future in self._futures:
            future.result()
        self._pool.shutdown()


def test_a_gateway_killed_under_load_loses_no_answered_record(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "killed"
    gateway = ServeProcess(data_dir, "--store", url)
    load: ReceiptLoad | None = None
    try:
        target = f"127.0.0.1:{gateway.port}"
        token = provision(target, (data_dir / "admin.token").read_text().strip(), "loader")
        load = ReceiptLoad(target, token)
        assert wait_until(lambda: load is not None and load.count() >= 300, timeout=60)
        gateway.stop(signal.SIGKILL)  # mid-load: some requests are waiting on their records
    finally:
        if load is not None:
            load.stop()
        if gateway.process.poll() is None:
            gateway.stop(signal.SIGKILL)
    assert load is not None and load.count() >= 300
    keys = data_dir / KEYS_DIR_NAME / "public"
    public = load_public_keys(keys)
    held = [verify_receipt(text, public) for text in load.receipts]
    with psycopg.connect(url) as connection:
        stored = {
            (str(log_id), int(seq)): str(record_hash)
            for log_id, seq, record_hash in connection.execute(
                "SELECT log_id, seq, record_hash FROM audit_log_records WHERE kind = 'check'"
            )
        }
    for receipt in held:
        assert receipt.tree_head is not None
        assert (receipt.tree_head.log_id, receipt.audit_seq) in stored, "an answered check has no record"
    receipts_file = tmp_path / "receipts.txt"
    receipts_file.write_text("\n".join(load.receipts) + "\n")
    code, out = _verify(url, keys, capsys, "--receipts", str(receipts_file))
    assert code == 0, out
    # The replica starts again on the same log, which continues intact.
    again = ServeProcess(data_dir, "--store", url)
    try:
        with Client(f"127.0.0.1:{again.port}", token=token) as client:
            fresh = client.check(new_uscc(), MATTER).receipt
        assert fresh is not None
        assert verify_receipt(fresh.compact, public).audit_seq > max(r.audit_seq for r in held)
    finally:
        again.stop(signal.SIGTERM)
    assert _verify(url, keys, capsys)[0] == 0


# -- the writer process ----------------------------------------------------------------------------


def test_the_writer_runs_in_a_process_of_its_own_and_its_death_fails_checks_closed(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The writer (psycopg, hashing, tree, signing) is out of the gateway's process, so out of its
    interpreter lock. Killed, checks are refused with UNAVAILABLE, saying the audit log cannot record
    them (none answered without its record), until another writer holds the log; then nothing answered
    is lost, the restart and the outage are recorded, and the log verifies."""
    with GatewayThread(_config(url, tmp_path / "gateway")) as gateway:
        audit = gateway.audit
        assert isinstance(audit, PostgresAuditLog)
        writer = audit.writer_pid
        assert writer is not None and writer != os.getpid()
        arguments = Path(f"/proc/{writer}/cmdline").read_text().split("\0")
        assert "mustcheck_gateway.audit.writer_process" in arguments
        assert arguments[arguments.index("--postgres-log") + 1] == audit.log_id
        assert not any("postgresql://" in argument for argument in arguments)  # ps would show a password
        token = _token(gateway, "writer-killer")
        target = f"127.0.0.1:{gateway.port}"
        with Client(target, token=token, retry=RetryPolicy(attempts=1)) as client:
            before = client.check(new_uscc(), MATTER).receipt
            assert before is not None
            # Hold the restart off: wait for the log's lock, queued behind the writer's connection, so
            # that it is this connection's, not a new writer's, once the killed writer's is gone.
            holder = psycopg.connect(url, autocommit=True)
            waiting = threading.Thread(
                target=holder.execute, args=("SELECT pg_advisory_lock(%s)", (log_lock_key(audit.log_id),))
            )
            waiting.start()
            try:
                os.kill(writer, signal.SIGKILL)
                waiting.join()
                assert audit.unavailable() is not None
                with pytest.raises(CheckUnavailable) as refused:
                    client.check(new_uscc(), MATTER)
                assert refused.value.code is grpc.StatusCode.UNAVAILABLE
                assert "audit log cannot record" in refused.value.message
                assert audit.writer_restarts == 0
            finally:
                waiting.join()
                holder.close()  # the lock goes with it: a new writer takes the log
            assert wait_until(lambda: audit.writer_restarts == 1, timeout=30)
            restarted = audit.writer_pid
            assert restarted is not None and restarted != writer
            assert wait_until(lambda: audit.unavailable() is None, timeout=30)
            after = None
            while after is None:  # refused (UNAVAILABLE) until the new writer takes records
                try:
                    after = client.check(new_uscc(), MATTER).receipt
                except CheckUnavailable:
                    time.sleep(0.1)
            assert after is not None and after.audit_seq > before.audit_seq

        def recorded(outcome: str) -> list[AuditRecord]:
            return audit.query(kind="admin", caller_id="system", outcome=outcome)

        assert len(recorded("audit.writer_restarted")) == 1
        # The health loop records the outage once the log takes records again: why, and what it refused.
        assert wait_until(lambda: len(recorded("audit.available_again")) == 1, timeout=30)
        [outage] = recorded("audit.available_again")
        assert outage.detail["refused"] >= 1 and "writer process stopped" in outage.detail["why"]
    keys = tmp_path / "gateway" / KEYS_DIR_NAME / "public"
    public = load_public_keys(keys)
    assert verify_receipt(before.compact, public).audit_seq == before.audit_seq
    assert verify_receipt(after.compact, public).audit_seq == after.audit_seq
    code, out = _verify(url, keys, capsys)
    assert code == 0, out


# -- across replicas ------------------------------------------------------------------------------


def test_a_check_through_one_replica_is_found_proven_and_covered_through_another(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first_thread = GatewayThread(_config(url, tmp_path / "replica-a"))
    first = first_thread.start()
    try:
        # Replicas share one key ring (docs/scaling.md).
        shutil.copytree(tmp_path / "replica-a" / KEYS_DIR_NAME, tmp_path / "replica-b" / KEYS_DIR_NAME)
        with GatewayThread(_config(url, tmp_path / "replica-b")) as second:
            caller = _token(first, "approver")
            auditor = _token(first, "auditor-pg", roles=("auditor",), grant=False)
            revealer = _token(first, "revealer-pg", roles=("auditor", "reveal"), grant=False)
            # Issued through A; B's registry takes them up within a second.
            assert wait_until(lambda: second.access.registry.snapshot().version >= first.store.auth_version())
            log_a = first.audit.log_id  # type: ignore[union-attr]
            log_b = second.audit.log_id  # type: ignore[union-attr]
            assert log_a != log_b
            subject, unreported = new_uscc(), new_uscc()
            for code in (subject, unreported):
                first.store.write_entries(
                    [make_entry(code, effective=first.engine.clock() - days(1))], actor="t", action="add"
                )
            with Client(f"127.0.0.1:{first.port}", token=caller) as client:
                checked = client.check(subject, MATTER)
                other = client.check(unreported, MATTER)
            assert checked.receipt is not None and other.receipt is not None
            seq = checked.receipt.audit_seq
            token_file = tmp_path / "auditor.token"
            token_file.write_text(auditor)
            on_b = ["--gateway", f"127.0.0.1:{second.port}", "--token-file", str(token_file)]
            # Found through B.
            assert (
                main(["audit", "query", *on_b, "--subject", subject, "--record-kind", "check", "--json"]) == 0
            )
            (found,) = json.loads(capsys.readouterr().out)
            assert found["log_id"] == log_a and int(found["seq"]) == seq
            # Proven from the shared database (as B, or any replica, can).
            assert main(["audit", "prove", str(seq), "--store", url, "--log", log_a, "--json"]) == 0
            proof = json.loads(capsys.readouterr().out)
            assert proof["proven"] is True and json.loads(proof["tree_head"])["log"] == log_a
            # Covered through B: the outcome reported through B names (log A, seq).
            with Client(f"127.0.0.1:{second.port}", token=caller) as client:
                client.report_outcome(checked.receipt, "APPROVAL-A-B", "approved")
            assert main(["audit", "coverage", *on_b, "--matter", MATTER, "--json"]) == 0
            (row,) = json.loads(capsys.readouterr().out)
            pending = {(ref["log_id"], int(ref["seq"])) for ref in row.get("restricted_checks", [])}
            assert (log_a, other.receipt.audit_seq) in pending  # the unreported check, named by its log
            assert (log_a, seq) not in pending  # the reported one is covered
            # Revealed through B (the reveal role), naming A's log; exported through B with log ids.
            token_file.write_text(revealer)
            reveal = ["audit", "reveal", *on_b, "--log", log_a, str(seq), "--purpose", "核查", "--json"]
            assert main(reveal) == 0
            assert json.loads(capsys.readouterr().out) == [{"seq": seq, "subject": subject}]
            exported = tmp_path / "export.jsonl"
            assert main(["audit", "export", *on_b, "--format", "jsonl", "--out", str(exported)]) == 0
            logs = {json.loads(line)["log_id"] for line in exported.read_text().splitlines()}
            assert logs == {log_a, log_b}
            token_file.write_text(auditor)
            # Verify through B covers both replicas' logs.
            assert main(["audit", "verify", *on_b, "--json"]) == 0
            assert json.loads(capsys.readouterr().out)["ok"] is True
    finally:
        first_thread.stop()


# -- retention: whole month partitions ------------------------------------------------------------


def test_retention_drops_whole_partitions_older_than_three_years_and_nothing_younger(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = dt.datetime.now(dt.UTC)
    limit = retention_limit(now)
    old_month = (limit - dt.timedelta(days=400)).replace(day=10)  # a month wholly past retention
    straddling = limit - dt.timedelta(hours=1)  # past retention, in a month that is not wholly past
    younger = limit + dt.timedelta(days=40)
    log = PostgresAuditLog(url, "retained", KeyRing.load_or_create(tmp_path / "keys"))

    async def write() -> None:
        for at in (old_month, old_month + dt.timedelta(hours=1), straddling, younger, now):
            await log.append(AuditEvent(kind="check", caller_id="c", matter=MATTER, outcome="clear", at=at))

    try:
        asyncio.run(write())
        with psycopg.connect(url) as connection:
            before = [month for _, month in partitions(connection)]
        old = dt.date(old_month.year, old_month.month, 1)
        assert old in before and len(before) >= 3
        with pytest.raises(Exception, match="kept 3 years"):
            log.prune(limit + dt.timedelta(days=1))
        assert log.prune(limit) == 2  # the two records of the old month's partition, no more
        with psycopg.connect(url) as connection:
            after = [month for _, month in partitions(connection)]
        assert after == [month for month in before if month != old]
        remaining = [record.at for record in log.records()]
        assert straddling in remaining and younger in remaining
    finally:
        log.close()
    code, out = _verify(url, tmp_path / "keys" / "public", capsys)
    assert code == 0, out
