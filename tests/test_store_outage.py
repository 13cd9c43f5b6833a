"""A PostgreSQL outage under a running gateway: checks fail closed with UNAVAILABLE (which the SDK
retries within the deadline), each failure is audited, and the gateway answers again once the
database is back. Skipped, saying why, when MUSTCHECK_TEST_POSTGRES is unset."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
import psycopg
import pytest

from mustcheck import CheckUnavailable, Client, Outcome, RetryPolicy
from mustcheck._client import DEFAULT_TIMEOUT
from mustcheck_gateway.audit import AuditLog
from mustcheck_gateway.server import GatewayConfig, GatewayThread
from mustcheck_gateway.store.postgres_connections import OUTAGE_HOLD_S

from backends import postgres_url
from conftest import POLICY_DIR
from factories import new_uscc
from provision import provision

MATTER = "MOF-0001"


@pytest.fixture
def own_database() -> Iterator[tuple[str, str]]:
    """A database of the test's own (connections to it are cut below), dropped afterwards."""
    server = postgres_url()
    name = f"mustcheck_outage_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield server, urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def cut(server: str, database: str, *, allow: bool) -> None:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {database} WITH ALLOW_CONNECTIONS {str(allow).lower()}")
        if not allow:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
            )


def test_a_store_outage_fails_closed_is_audited_and_heals(
    own_database: tuple[str, str], tmp_path: Path
) -> None:
    server, url = own_database
    database = urlsplit(url).path.lstrip("/")
    config = GatewayConfig(
        data_dir=tmp_path, listen="127.0.0.1:0", policy_dir=POLICY_DIR, store_url=url, audit_store="embedded"
    )
    with GatewayThread(config) as gateway:
        assert gateway.admin_token_file is not None
        target = f"127.0.0.1:{gateway.port}"
        token = provision(target, gateway.admin_token_file.read_text().strip(), "outage")
        with Client(target, token=token, timeout=2, retry=RetryPolicy(attempts=2)) as client:
            assert client.check(new_uscc(), MATTER).outcome is Outcome.NO_RECORD
            cut(server, database, allow=False)
            unlucky = new_uscc()
            # One attempt, with a deadline longer than the store's wait for a connection: the gateway fails
            # the check (and audits it) before the database comes back, and the caller hears why.
            with (
                Client(target, token=token, timeout=15, retry=RetryPolicy(attempts=1)) as patient,
                pytest.raises(CheckUnavailable) as raised,
            ):
                patient.check(unlucky, MATTER)
            assert raised.value.code is grpc.StatusCode.UNAVAILABLE
            cut(server, database, allow=True)
            deadline = time.monotonic() + 20
            answered = None
            while answered is None and time.monotonic() < deadline:
                try:
                    answered = client.check(new_uscc(), MATTER)
                except CheckUnavailable:
                    time.sleep(0.2)
            assert answered is not None and answered.outcome is Outcome.NO_RECORD
    log = AuditLog.open(tmp_path)
    try:
        records = log.query(subject=unlucky, kind="check")
        assert records and all(r.status == "UNAVAILABLE" and r.outcome == "error" for r in records)
    finally:
        log.close()


def test_an_uncached_lookup_fails_with_unavailable_within_the_sdks_default_deadline(
    own_database: tuple[str, str], tmp_path: Path
) -> None:
    """Store calls are bounded (pool wait, statement timeout): in an outage, and with the entries table
    locked away, a check with the SDK's default deadline and a single attempt hears UNAVAILABLE (it may
    fail over) rather than DEADLINE_EXCEEDED."""
    server, url = own_database
    database = urlsplit(url).path.lstrip("/")
    config = GatewayConfig(
        data_dir=tmp_path,
        listen="127.0.0.1:0",
        policy_dir=POLICY_DIR,
        store_url=url,
        lookup_cache_entries=0,
        audit_store="embedded",
    )
    with GatewayThread(config) as gateway:
        assert gateway.admin_token_file is not None
        target = f"127.0.0.1:{gateway.port}"
        token = provision(target, gateway.admin_token_file.read_text().strip(), "bounded")
        assert DEFAULT_TIMEOUT == 3.0
        with Client(target, token=token, retry=RetryPolicy(attempts=1)) as client:  # the default deadline
            assert client.check(new_uscc(), MATTER).outcome is Outcome.NO_RECORD
            # A statement that cannot run: another session holds the entries table.
            with psycopg.connect(url) as holder:
                holder.execute("LOCK TABLE entries IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(CheckUnavailable) as locked:
                    client.check(new_uscc(), MATTER)
                holder.rollback()
            assert locked.value.code is grpc.StatusCode.UNAVAILABLE
            # The database refuses connections: the first call after a quiet spell, and the ones after it.
            cut(server, database, allow=False)
            try:
                for _ in range(3):
                    with pytest.raises(CheckUnavailable) as away:
                        client.check(new_uscc(), MATTER)
                    assert away.value.code is grpc.StatusCode.UNAVAILABLE
                    time.sleep(OUTAGE_HOLD_S)  # the next call waits the full pool wait again
            finally:
                cut(server, database, allow=True)
