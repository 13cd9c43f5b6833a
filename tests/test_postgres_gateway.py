"""Gateways on the shared PostgreSQL store, end to end: a check through the SDK sees a list entry,
two gateways on one database see the same lists, and ``mustcheck serve --store postgresql://…`` runs
(skipped, saying why, when MUSTCHECK_TEST_POSTGRES is unset) or refuses a store it cannot use."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mustcheck import Client, ListKind, Outcome
from mustcheck_gateway.cli import main
from mustcheck_gateway.server import Gateway, GatewayConfig, GatewayThread
from mustcheck_gateway.store import EntryStatus
from mustcheck_gateway.store.postgres import PostgresStore

from backends import fresh_schema
from conftest import POLICY_DIR
from factories import days, make_entry, new_uscc
from processes import ServeProcess
from provision import provision


@pytest.fixture(scope="module")
def store_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


def _start(store_url: str, data_dir: Path) -> GatewayThread:
    config = GatewayConfig(
        data_dir=data_dir, listen="127.0.0.1:0", policy_dir=POLICY_DIR, store_url=store_url
    )
    return GatewayThread(config)


@pytest.fixture(scope="module")
def first(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with _start(store_url, tmp_path_factory.mktemp("first")) as running:
        yield running


@pytest.fixture(scope="module")
def pg_token(first: Gateway) -> str:
    assert first.admin_token_file is not None  # the empty database got its first admin
    return provision(f"127.0.0.1:{first.port}", first.admin_token_file.read_text().strip(), "pg-tester")


def test_the_gateway_keeps_its_lists_in_postgresql(first: Gateway) -> None:
    assert isinstance(first.store, PostgresStore)
    assert first.admin_token_file is not None
    data_dir = first.admin_token_file.parent
    # The audit log goes to the same database by default (docs/audit-log.md): no audit file is made.
    assert getattr(first.audit, "backend", None) == "postgresql"
    assert not (data_dir / "audit.sqlite3").exists()
    assert not (data_dir / "mustcheck.sqlite3").exists()


def test_a_check_sees_a_list_entry(first: Gateway, pg_token: str, now: dt.datetime) -> None:
    entry = make_entry(new_uscc(), effective=now - days(30), name="共享库建设有限公司")
    version = first.store.write_entries([entry], actor="test", action="add")
    with Client(f"127.0.0.1:{first.port}", token=pg_token, timeout=10) as client:
        result = client.check(entry.subject_code, "MOF-0001", purpose="供应商资格审查")
    assert result.outcome is Outcome.RESTRICTIONS
    (membership,) = result.memberships
    assert membership.list is ListKind.BLACK and membership.status is EntryStatus.ACTIVE
    assert result.subject_name == "共享库建设有限公司"
    assert result.data_version == version


def test_two_gateways_share_one_database(
    first: Gateway, pg_token: str, store_url: str, tmp_path: Path, now: dt.datetime
) -> None:
    with _start(store_url, tmp_path / "second") as second:
        assert second.admin_token_file is None  # the shared database has its admin already
        entry = make_entry(new_uscc(), effective=now - days(3))
        version = first.store.write_entries([entry], actor="test", action="add")
        with Client(f"127.0.0.1:{second.port}", token=pg_token, timeout=10) as client:
            result = client.check(entry.subject_code, "MOF-0001", purpose="供应商资格审查")
        assert result.outcome is Outcome.RESTRICTIONS and result.data_version == version
        assert second.store.data_version() == first.store.data_version()


@pytest.mark.slow
def test_serve_takes_a_postgresql_store(tmp_path: Path, now: dt.datetime) -> None:
    with fresh_schema() as url:
        served = ServeProcess(tmp_path, "--store", url)
        try:
            target = f"127.0.0.1:{served.port}"
            token = provision(target, (tmp_path / "admin.token").read_text().strip(), "serve-tester")
            entry = make_entry(new_uscc(), effective=now - days(1))
            store = PostgresStore(url)  # what another gateway, or a loader, writes
            store.write_entries([entry], actor="test", action="add")
            store.close()
            with Client(target, token=token, timeout=10) as client:
                assert client.check(entry.subject_code, "MOF-0001", purpose="审查").restricted
        finally:
            served.stop(signal.SIGTERM)
        assert served.process.returncode == 0
        assert not (tmp_path / "mustcheck.sqlite3").exists()  # no embedded store was made


def test_serve_refuses_a_store_it_cannot_reach(tmp_path: Path) -> None:
    serve = [sys.executable, "-m", "mustcheck_gateway", "serve", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [*serve, "--policies", str(POLICY_DIR), "--store", "postgresql://mustcheck:secret@127.0.0.1:1/none"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot connect to PostgreSQL at postgresql://mustcheck:***@127.0.0.1:1/none" in done.stderr
    assert "secret" not in done.stderr


def test_serve_refuses_a_store_that_is_not_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--data-dir", str(tmp_path), "--store", "sqlite:/tmp/x.sqlite3"])
    assert code == 2
    assert "postgresql://" in capsys.readouterr().err
