"""Daily person quotas counted by a PostgreSQL store (person_quota.py, migration 11 ``person_lookups``).

The count is a round trip to PostgreSQL, taken off the gateway's event loop: while one person lookup
waits for its row (locked here by another transaction), the gateway answers other calls. (The store
gives up on a statement after 1.5 s: the test's one other call must be answered within that.) A batch counts
its persons in item order, exactly. Rows of past days are deleted (yesterday's kept), today's stay.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mustcheck import Client, RateLimited, RetryPolicy
from mustcheck_gateway.auth.ratelimit import PersonQuota
from mustcheck_gateway.server import Gateway, GatewayConfig, GatewayThread

from backends import fresh_schema
from conftest import POLICY_DIR
from factories import new_citizen_id, new_uscc
from provision import provision
from threads import wait_until

MATTER = "MOHURD-0001"
NO_RETRY = RetryPolicy(attempts=1)


@pytest.fixture
def on_postgres(tmp_path: Path) -> Iterator[tuple[Gateway, str]]:
    with fresh_schema() as url:
        config = GatewayConfig(
            data_dir=tmp_path / "gateway", listen="127.0.0.1:0", policy_dir=POLICY_DIR, store_url=url
        )
        with GatewayThread(config) as gateway:
            yield gateway, url


def _admin(gateway: Gateway) -> str:
    assert gateway.admin_token_file is not None
    return gateway.admin_token_file.read_text().strip()


def _seed(url: str, caller_id: str, day: dt.date, used: int) -> None:
    with psycopg.connect(url) as connection:
        connection.execute(
            "INSERT INTO person_lookups (caller_id, day, used) VALUES (%s, %s, %s)",
            (caller_id, day.isoformat(), used),
        )


def _waiting_for_lock(url: str) -> bool:
    """Whether a statement counting a person lookup waits for a lock."""
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND query LIKE 'INSERT INTO person_lookups%'"
        ).fetchone()
    return row is not None and int(row[0]) > 0


def _rows(url: str, caller_id: str) -> dict[str, int]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT day, used FROM person_lookups WHERE caller_id = %s", (caller_id,)
        ).fetchall()
    return {str(day): int(used) for day, used in rows}


def test_a_person_lookup_waiting_for_the_store_leaves_the_gateway_answering(
    on_postgres: tuple[Gateway, str],
) -> None:
    gateway, url = on_postgres
    target = f"127.0.0.1:{gateway.port}"
    token = provision(target, _admin(gateway), "waits", daily_person_quota=5)
    today = PersonQuota.day_of(gateway.engine.clock()).isoformat()
    with Client(target, token=token, timeout=30, retry=NO_RETRY) as client:
        client.check(new_citizen_id(), MATTER)  # the caller's row of today exists
        outcome: list[object] = []
        with psycopg.connect(url) as holder:  # a transaction holds the row: the next count waits for it
            holder.execute(
                "SELECT used FROM person_lookups WHERE caller_id = %s AND day = %s FOR UPDATE",
                ("waits", today),
            )
            waiting = threading.Thread(
                target=lambda: outcome.append(client.check(new_citizen_id(), MATTER)), daemon=True
            )
            waiting.start()
            assert wait_until(lambda: _waiting_for_lock(url), timeout=30)  # the count reached PostgreSQL
            # Counted on the event loop, the waiting count would hold every other call until PostgreSQL
            # gave up on it (statement_timeout, 1.5 s), and the person lookup would fail. Off the loop,
            # the gateway answers meanwhile, and the lookup is counted once the row is free.
            with Client(target, token=token, timeout=10, retry=NO_RETRY) as other:
                other.check(new_uscc(), MATTER)
            assert not outcome  # the person lookup still waits for its count
            holder.rollback()
        waiting.join(timeout=30)
        assert len(outcome) == 1
    assert _rows(url, "waits") == {today: 2}


def test_a_batch_counts_its_persons_in_order_and_past_days_are_pruned(
    on_postgres: tuple[Gateway, str],
) -> None:
    gateway, url = on_postgres
    target = f"127.0.0.1:{gateway.port}"
    quota = 4
    token = provision(target, _admin(gateway), "batched", daily_person_quota=quota)
    now = gateway.engine.clock()
    today = PersonQuota.day_of(now)
    past = {today - dt.timedelta(days=back): back for back in (1, 2, 30)}
    # Counted on past days (by this or another replica): only yesterday's may still count anywhere.
    for day, back in past.items():
        _seed(url, "batched", day, back)
    _seed(url, "another", today - dt.timedelta(days=3), 7)
    # A gateway prunes once a day, on its first lookup of the day: this one counted none yet today.
    persons = [new_citizen_id() for _ in range(quota + 3)]
    subjects = [persons[0], new_uscc(), *persons[1:]]
    with Client(target, token=token, timeout=30, retry=NO_RETRY) as client:
        result = client.batch_check(subjects, MATTER)
        allowed = [item.subject for item in result.items if item.ok]
        refused = [item for item in result.items if not item.ok]
        assert allowed == [subjects[0], subjects[1], *persons[1:quota]]  # the first `quota` persons
        assert all(isinstance(item.error, RateLimited) for item in refused)
        assert [item.subject for item in refused] == persons[quota:]
        with pytest.raises(RateLimited, match="daily quota"):
            client.check(new_citizen_id(), MATTER)
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    assert _rows(url, "batched") == {today.isoformat(): quota, yesterday: 1}
    assert _rows(url, "another") == {}
