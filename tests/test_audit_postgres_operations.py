"""The auditor's tools on the PostgreSQL audit log, as on the embedded one (docs/audit-log.md).

``audit heads`` lists every replica's log and its newest signed tree head; ``audit verify --state``
verifies each log incrementally from the last head the auditor verified, and in full on request; an
outage of the audit database (its tables gone, the writer's connection cut) refuses checks, turns
health NOT_SERVING, and is recorded (since when, why, how many refused) once the log is writable again.
Skipped, saying why, when MUSTCHECK_TEST_POSTGRES is unset (``.ci/run`` always sets it).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mustcheck import Client, MustCheckError
from mustcheck.receipts import load_public_keys
from mustcheck.tree_head import TreeHead
from mustcheck_gateway.audit import KEYS_DIR_NAME, AuditEvent, KeyRing
from mustcheck_gateway.audit.postgres_log import PostgresAuditLog
from mustcheck_gateway.audit.postgres_writer import log_lock_key
from mustcheck_gateway.cli import main
from mustcheck_gateway.server import GatewayConfig, GatewayThread

from backends import fresh_schema
from conftest import POLICY_DIR
from factories import new_uscc
from provision import provision
from threads import wait_until

MATTER = "MOF-0001"


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as schema_url:
        yield schema_url


def _append(log: PostgresAuditLog, count: int) -> None:
    async def write() -> None:
        for index in range(count):
            await log.append(
                AuditEvent(
                    kind="check", caller_id="c", matter=MATTER, subject=new_uscc(), outcome=f"o{index}"
                )
            )

    asyncio.run(write())


def _health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        status: int = (
            health_pb2_grpc.HealthStub(channel)
            .Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            .status
        )
        return status


# -- audit heads ----------------------------------------------------------------------------------


def test_heads_lists_every_replicas_log_in_the_database_with_its_newest_tree_head(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = GatewayConfig(
        data_dir=tmp_path / "gateway", listen="127.0.0.1:0", policy_dir=POLICY_DIR, store_url=url
    )
    with GatewayThread(config) as gateway:
        log_id = gateway.audit.log_id  # type: ignore[union-attr]
        admin = (tmp_path / "gateway" / "admin.token").read_text().strip()
        token = provision(f"127.0.0.1:{gateway.port}", admin, "header")
        with Client(f"127.0.0.1:{gateway.port}", token=token) as client:
            receipt = client.check(new_uscc(), MATTER).receipt
        assert receipt is not None
    # A second replica's log, sharing the key ring.
    other = PostgresAuditLog(
        url, "replica-other", KeyRing.load_or_create(tmp_path / "gateway" / KEYS_DIR_NAME)
    )
    _append(other, 3)
    other.close()
    assert main(["audit", "heads", "--store", url, "--json"]) == 0
    rows = {row["replica"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {log_id, "replica-other"}
    keys = load_public_keys(tmp_path / "gateway" / KEYS_DIR_NAME / "public")
    for replica, row in rows.items():
        head = TreeHead.from_json(row["tree_head"])
        assert row["backend"] == "postgresql" and head.log_id == replica and head.size == row["seq"]
        assert head.signature_problem(keys) is None
        with psycopg.connect(url) as connection:
            newest = connection.execute(
                "SELECT MAX(seq) FROM audit_log_records WHERE log_id = %s", (replica,)
            ).fetchone()
        assert newest is not None and head.size == newest[0]  # the newest head covers the whole log
    assert rows[log_id]["seq"] >= receipt.audit_seq
    assert main(["audit", "heads", "--store", url]) == 0
    out = capsys.readouterr().out
    assert log_id in out and "replica-other" in out and "2 audit log(s)" in out


# -- audit verify --state ----------------------------------------------------------------------------


def _verify(
    url: str, keys: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, object]]:
    code = main(["audit", "verify", "--store", url, "--public-keys", str(keys), "--json", *extra])
    lines = capsys.readouterr().out
    return code, json.loads(lines)


def test_verify_with_a_state_walks_only_new_records_of_each_log_and_in_full_on_request(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keyring = KeyRing.load_or_create(tmp_path / "keys")
    keys = tmp_path / "keys" / "public"
    first = PostgresAuditLog(url, "log-a", keyring, checkpoint_every=4)
    second = PostgresAuditLog(url, "log-b", keyring, checkpoint_every=4)
    try:
        _append(first, 20)
        _append(second, 10)
        first.sign_head()
        second.sign_head()
        state = tmp_path / "auditor.state"
        code, report = _verify(url, keys, capsys, "--state", str(state))
        assert code == 0 and report["records"] == 30
        kept = {json.loads(line)["log"]: json.loads(line)["size"] for line in state.read_text().splitlines()}
        assert kept == {"log-a": 20, "log-b": 10}  # one state per log
        _append(first, 7)
        first.sign_head()
    finally:
        first.close()
        second.close()
    code, report = _verify(url, keys, capsys, "--state", str(state))
    assert code == 0 and report["records"] == 7, report  # only log-a's new records are walked
    kept = {json.loads(line)["log"]: json.loads(line)["size"] for line in state.read_text().splitlines()}
    assert kept == {"log-a": 27, "log-b": 10}
    # An edit before the last verified head is beyond an incremental verification, not a full one.
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "UPDATE audit_log_records SET outcome = 'clear' WHERE log_id = 'log-b' AND seq = 3"
        )
    code, report = _verify(url, keys, capsys, "--state", str(state))
    assert code == 0 and report["records"] == 0
    code, report = _verify(url, keys, capsys, "--state", str(state), "--full")
    assert code == 1 and "log-b" in str(report["reason"]) and report["first_bad_seq"] == 3
    assert {json.loads(line)["size"] for line in state.read_text().splitlines()} == {27, 10}  # kept
    # Records cut below the last verified head are found incrementally.
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DELETE FROM audit_log_records WHERE log_id = 'log-a' AND seq > 25")
    code, report = _verify(url, keys, capsys, "--state", str(state))
    assert (
        code == 1 and "log-a" in str(report["reason"]) and "last one verified before" in str(report["reason"])
    )


def test_a_state_that_is_not_one_is_refused_naming_the_line(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keyring = KeyRing.load_or_create(tmp_path / "keys")
    PostgresAuditLog(url, "log-a", keyring).close()
    state = tmp_path / "auditor.state"
    state.write_text("{}\n")
    code = main(
        [
            "audit",
            "verify",
            "--store",
            url,
            "--public-keys",
            str(tmp_path / "keys" / "public"),
            "--state",
            str(state),
        ]
    )
    assert code == 2
    assert "auditor.state line 1" in capsys.readouterr().err


# -- an outage of the audit database -------------------------------------------------------------


def _cut_off(url: str, log_id: str) -> None:
    """The audit database goes away: a table the log writes is gone, its writer's connection is cut."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("ALTER TABLE audit_log_tree_heads RENAME TO audit_log_tree_heads_away")
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND ((classid::bigint << 32) | objid::bigint) = (%s::bigint & x'ffffffffffffffff'::bigint)",
            (log_lock_key(log_id),),
        )


def _restore(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("ALTER TABLE audit_log_tree_heads_away RENAME TO audit_log_tree_heads")


def test_an_outage_of_the_audit_database_refuses_checks_and_is_recorded_when_it_ends(
    url: str, tmp_path: Path
) -> None:
    config = GatewayConfig(
        data_dir=tmp_path / "gateway", listen="127.0.0.1:0", policy_dir=POLICY_DIR, store_url=url
    )
    with GatewayThread(config) as gateway:
        audit = gateway.audit
        assert isinstance(audit, PostgresAuditLog)
        admin = (tmp_path / "gateway" / "admin.token").read_text().strip()
        token = provision(f"127.0.0.1:{gateway.port}", admin, "outage")
        with Client(f"127.0.0.1:{gateway.port}", token=token, timeout=5) as client:
            assert client.check(new_uscc(), MATTER).receipt is not None
            _cut_off(url, audit.log_id)
            refused = 0
            for _ in range(3):
                with pytest.raises(MustCheckError) as refusal:
                    client.check(new_uscc(), MATTER)
                assert "audit" in str(refusal.value)
                refused += 1
            assert wait_until(lambda: _health(gateway.port) == health_pb2.HealthCheckResponse.NOT_SERVING)
            _restore(url)
            assert wait_until(
                lambda: _health(gateway.port) == health_pb2.HealthCheckResponse.SERVING, timeout=30
            )
            assert client.check(new_uscc(), MATTER).receipt is not None
        [recovered] = audit.query(outcome="audit.available_again")
        assert recovered.kind == "admin" and recovered.caller_id == "system"
        assert recovered.detail["refused"] >= refused
        assert "cannot be written" in recovered.detail["why"] and recovered.detail["since"]
    keys = tmp_path / "gateway" / KEYS_DIR_NAME / "public"
    assert main(["audit", "verify", "--store", url, "--public-keys", str(keys)]) == 0


# -- the test schema's teardown --------------------------------------------------------------------


def test_a_schema_is_dropped_while_a_connection_still_holds_its_log_views(tmp_path: Path) -> None:
    """``bind_log`` makes temporary views of the schema's tables in the reader's session; a teardown
    that meets them locked (a closing connection still dropping them) waits a bounded time and tries
    again instead of hanging or deadlocking."""
    from mustcheck_gateway.audit.postgres_schema import bind_log

    from backends import drop_schema, postgres_url

    with fresh_schema() as schema_url:
        PostgresAuditLog(schema_url, "log-a", KeyRing.load_or_create(tmp_path / "keys")).close()
        holder = psycopg.connect(schema_url, autocommit=True)
        bind_log(holder, "log-a")
        holder.execute("BEGIN")
        holder.execute("SELECT COUNT(*) FROM audit_records").fetchone()  # locks the view until it ends
        schema = str(holder.execute("SELECT current_schema()").fetchone()[0])  # type: ignore[index]
        release = threading.Timer(3.0, holder.close)  # longer than one try's lock timeout
        release.start()
        try:
            drop_schema(postgres_url(), schema)
        finally:
            release.join()
        with psycopg.connect(postgres_url()) as connection:
            left = connection.execute(
                "SELECT COUNT(*) FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
        assert left is not None and left[0] == 0
