"""Client failover: the SDK balances over several gateways; one is killed under load.

No check may be answered wrongly; a call in flight either succeeds on another gateway within its
deadline or raises ``CheckUnavailable``; every answered check has its audit record. The two
gateways share one caller registry and the same list data (a copy of one store), each with its own
audit log.
"""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from mustcheck import CheckResult, CheckUnavailable, Client, Outcome
from mustcheck._channel import resolve_target
from mustcheck_gateway.audit import AuditLog
from mustcheck_gateway.store import DEFAULT_FILE_NAME

from backends import BACKENDS, store_at
from factories import days, make_entry, new_uscc
from processes import ServeProcess
from provision import provision
from threads import wait_until

MATTER = "MOF-0001"


def test_targets_name_one_address_a_dns_name_or_several_ips() -> None:
    assert resolve_target("gateway.example:50051") == "gateway.example:50051"
    assert resolve_target(["127.0.0.1:1", "localhost:2"]) == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert resolve_target("[::1]:1,[::1]:2") == "ipv6:[::1]:1,[::1]:2"
    for bad in (["a.example:1", "b.example:2"], ["127.0.0.1:1", "[::1]:2"], [], ["127.0.0.1:1", "127.0.0.1"]):
        with pytest.raises(ValueError):
            resolve_target(bad)


@contextmanager
def two_gateways(
    backend: str, tmp_path: Path, listed: list[str]
) -> Iterator[tuple[ServeProcess, ServeProcess, str]]:
    """Two gateways with one caller registry and the same lists: on one PostgreSQL store, or each on
    its own copy of one SQLite store."""
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    with store_at(backend, first_dir) as location:
        # Each replica's log in its data directory, read back below (the PostgreSQL log's own SIGKILL test
        # is in test_audit_postgres.py).
        options = ("--store", location.url, "--audit-store", "embedded") if location.url else ()
        seed = ServeProcess(first_dir, *options)
        token = provision(
            f"127.0.0.1:{seed.port}", (first_dir / "admin.token").read_text().strip(), "failover"
        )
        seed.stop(signal.SIGTERM)
        store = location.open()
        effective = dt.datetime.now(dt.UTC) - days(1)
        store.write_entries([make_entry(s, effective=effective) for s in listed], actor="test", action="add")
        store.close()
        second_dir.mkdir()
        if location.url is None:
            shutil.copy(first_dir / DEFAULT_FILE_NAME, second_dir / DEFAULT_FILE_NAME)
        first, second = ServeProcess(first_dir, *options), ServeProcess(second_dir, *options)
        try:
            yield first, second, token
        finally:
            for process in (first, second):
                if process.process.poll() is None:
                    process.stop(signal.SIGTERM)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_replica_killed_under_load_answers_nothing_wrongly_and_loses_no_record(
    backend: str, tmp_path: Path
) -> None:
    listed = [new_uscc() for _ in range(600)]
    with two_gateways(backend, tmp_path, listed) as (first, second, token):
        answered, killed_at = _hammer_and_kill(first, second, token, listed)
    _assert_no_wrong_answer_and_every_record(answered, killed_at, [tmp_path / "a", tmp_path / "b"])


def _hammer_and_kill(
    first: ServeProcess, second: ServeProcess, token: str, listed: list[str]
) -> tuple[list[tuple[str, bool, CheckResult]], int]:
    answered: list[tuple[str, bool, CheckResult]] = []
    unavailable: list[CheckUnavailable] = []
    wrong: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    pool_of_listed = iter(listed)

    def hammer(worker: int) -> None:
        targets = [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"]
        with Client(targets, token=token, timeout=3) as client:
            while not stop.is_set():
                with lock:
                    subject = next(pool_of_listed, None) if worker % 2 else new_uscc()
                if subject is None:
                    return
                is_listed = worker % 2 == 1
                try:
                    result = client.check(subject, MATTER)
                except CheckUnavailable as error:
                    with lock:
                        unavailable.append(error)
                    continue
                expected = Outcome.RESTRICTIONS if is_listed else Outcome.NO_RECORD
                with lock:
                    answered.append((subject, is_listed, result))
                    if result.outcome is not expected:
                        wrong.append(subject)

    with ThreadPoolExecutor(6) as pool:
        for worker in range(6):
            pool.submit(hammer, worker)
        wait_until(lambda: len(answered) >= 200, timeout=20)
        first.stop(signal.SIGKILL)
        killed_at = len(answered)
        wait_until(lambda: len(answered) >= killed_at + 200, timeout=20)
        stop.set()
    second.stop(signal.SIGTERM)
    assert wrong == []
    return answered, killed_at


def _assert_no_wrong_answer_and_every_record(
    answered: list[tuple[str, bool, CheckResult]], killed_at: int, data_dirs: list[Path]
) -> None:
    assert len(answered) >= killed_at + 200, "the surviving gateway kept answering"
    logs = [AuditLog.open(data_dir) for data_dir in data_dirs]  # the killed one recovers its journal
    try:
        counts = [log.count() for log in logs]
        assert all(count > 0 for count in counts), f"both gateways served: {counts}"
        missing = [
            subject
            for subject, _, _ in answered
            if not any(log.query(subject=subject, kind="check") for log in logs)
        ]
        assert missing == [], f"{len(missing)} answered checks have no audit record"
        assert all(log.verify().ok for log in logs)
    finally:
        for log in logs:
            log.close()
