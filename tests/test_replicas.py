"""Replicas on one PostgreSQL store: a write through any replica reaches every replica's cache at
once and every SDK's cache through ``Watch`` within the bound. Skipped, saying why, when
MUSTCHECK_TEST_POSTGRES is unset (``.ci/run`` always sets it)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mustcheck import Client, Outcome, verify_receipt
from mustcheck_gateway.audit import KEYS_DIR_NAME, AuditLog, verify_data_dir
from mustcheck_gateway.chain_heads import replica_id
from mustcheck_gateway.cli import main
from mustcheck_gateway.server import Gateway, GatewayConfig, GatewayThread

from backends import fresh_schema
from conftest import POLICY_DIR
from factories import days, make_entry, new_uscc
from provision import provision
from threads import wait_until

MATTER = "MOF-0001"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Gateway, str, str]]:
    with fresh_schema() as url:
        threads = [
            GatewayThread(
                GatewayConfig(
                    data_dir=tmp_path_factory.mktemp(name),
                    listen="127.0.0.1:0",
                    policy_dir=POLICY_DIR,
                    store_url=url,
                    audit_store="embedded",  # each replica's own files: the PostgreSQL log has its own tests
                    watch_heartbeat_s=0.2,
                    checkpoint_interval_s=0.3,
                )
            )
            for name in ("replica-a", "replica-b")
        ]
        first = threads[0].start()
        # Replicas share one key ring (docs/scaling.md): receipts and subject hashes agree everywhere.
        assert isinstance(first.audit, AuditLog)
        shutil.copytree(first.audit.keyring.directory, threads[1].config.data_dir / KEYS_DIR_NAME)
        second = threads[1].start()  # the store is not empty now: no second first admin
        try:
            assert first.admin_token_file is not None and second.admin_token_file is None
            token = provision(f"127.0.0.1:{first.port}", first.admin_token_file.read_text().strip(), "rep")
            # Issued through the first; the second's registry takes it up within a second.
            assert wait_until(lambda: second.access.registry.snapshot().version >= first.store.auth_version())
            yield first, second, token, url
        finally:
            for thread in threads:
                thread.stop()


def test_a_write_is_seen_by_its_replica_at_once_and_by_the_others_within_a_poll(
    replicas: tuple[Gateway, Gateway, str, str],
) -> None:
    first, second, token, _ = replicas
    subject = new_uscc()
    with (
        Client(f"127.0.0.1:{first.port}", token=token) as on_first,
        Client(f"127.0.0.1:{second.port}", token=token) as on_second,
    ):
        for client in (on_first, on_second):
            assert client.check(subject, MATTER).outcome is Outcome.NO_RECORD
            assert client.check(subject, MATTER).outcome is Outcome.NO_RECORD  # now in each replica's cache
        assert first.lookup_cache.hits > 0 and second.lookup_cache.hits > 0
        entry = make_entry(subject, effective=first.engine.clock() - days(1))
        first.store.write_entries([entry], actor="test", action="add")
        # The writing replica: at once. The other: once its change feed has polled (every 50 ms).
        assert on_first.check(subject, MATTER).outcome is Outcome.RESTRICTIONS
        assert wait_until(lambda: on_second.check(subject, MATTER).outcome is Outcome.RESTRICTIONS)


def test_every_sdk_cache_hears_of_a_write_through_any_replica(
    replicas: tuple[Gateway, Gateway, str, str],
) -> None:
    first, second, token, _ = replicas
    organisation = new_uscc()
    targets = [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"]
    clients = [Client(target, token=token, cache_size=10) for target in targets]
    try:
        for client in clients:
            assert client.cache is not None
            assert wait_until(client.cache.alive)
            assert client.check(organisation, MATTER).outcome is Outcome.NO_RECORD
            assert client.check(organisation, MATTER).from_cache
        entry = make_entry(organisation, effective=first.engine.clock() - days(1))
        second.store.write_entries([entry], actor="test", action="add")
        for client in clients:
            assert wait_until(lambda c=client: len(c.cache or ()) == 0)  # type: ignore[misc]
            fresh = client.check(organisation, MATTER)
            assert fresh.outcome is Outcome.RESTRICTIONS and not fresh.from_cache
    finally:
        for client in clients:
            client.close()


def test_receipts_from_either_replica_verify_against_the_published_keys(
    replicas: tuple[Gateway, Gateway, str, str],
) -> None:
    first, second, token, _ = replicas
    published = []
    receipts = []
    for gateway in (first, second):
        with Client(f"127.0.0.1:{gateway.port}", token=token) as client:
            published.append(client.receipt_keys())
            result = client.check(new_uscc(), MATTER)
            assert result.receipt is not None
            receipts.append(result.receipt)
    assert published[0] == published[1]  # one key set, whichever replica publishes it
    for receipt in receipts:
        verify_receipt(receipt.compact, published[0])
    # The outcome of an approval checked through one replica is reported through the other.
    with Client(f"127.0.0.1:{second.port}", token=token) as client:
        ack = client.report_outcome(receipts[0], "APPROVAL-ACROSS-REPLICAS", "approved")
    assert ack.backed_by_check and not ack.duplicate


def test_every_chain_is_listed_and_a_withheld_tail_is_found(
    replicas: tuple[Gateway, Gateway, str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, token, url = replicas
    with Client([f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"], token=token) as client:
        for _ in range(20):
            client.check(new_uscc(), MATTER)
        old_copy = tmp_path / "old-copy"
        shutil.copytree(data_dir(first), old_copy, ignore=shutil.ignore_patterns("*.lock"))
        copied_through = verify_data_dir(old_copy).last_seq
        assert copied_through  # a copy made now; then more records
        for _ in range(20):
            client.check(new_uscc(), MATTER)
    assert wait_until(lambda: _head_of(first, url) > copied_through and _head_of(second, url) > 0, timeout=10)

    assert main(["audit", "heads", "--store", url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {row["replica"] for row in listed} == {replica_id(data_dir(first)), replica_id(data_dir(second))}

    for gateway in (first, second):  # each chain, as a copy, reaches its published head
        copy = tmp_path / f"copy-{gateway.port}"
        shutil.copytree(data_dir(gateway), copy, ignore=shutil.ignore_patterns("*.lock"))
        assert main(["audit", "verify", "--data-dir", str(copy), "--store", url]) == 0
        assert "intact" in capsys.readouterr().out
    # The older copy is intact by itself, but ends before the head its gateway published: withheld.
    assert main(["audit", "verify", "--data-dir", str(old_copy)]) == 0
    capsys.readouterr()
    assert main(["audit", "verify", "--data-dir", str(old_copy), "--store", url]) == 1
    # Found by the published tree head (a consistency check) before the published chain head is looked up.
    out = capsys.readouterr().out
    assert "cut from the end" in out and "published to the store" in out


def data_dir(gateway: Gateway) -> Path:
    assert isinstance(gateway.audit, AuditLog)
    return gateway.audit.path.parent


def _head_of(gateway: Gateway, url: str) -> int:
    heads = {head.replica: head.seq for head in gateway.store.audit_heads()}
    return heads.get(replica_id(data_dir(gateway)), 0)
