"""The store's other records, on every backend: callers, grants and tokens (R8), execution feedback,
the legacy code allow-list (R1)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from mustcheck.identifiers import SubjectKind
from mustcheck_gateway.admin_service import issue_token
from mustcheck_gateway.auth.model import Caller, Grant
from mustcheck_gateway.feedback import Feedback
from mustcheck_gateway.store import StoreError
from mustcheck_gateway.store.feedback_codec import FEEDBACK_COLUMNS, feedback_values
from mustcheck_gateway.store.postgres import PostgresStore
from mustcheck_gateway.store.sqlite import SqliteStore

from factories import days

Store = SqliteStore | PostgresStore


def test_callers_grants_and_tokens_move_the_auth_version(store: Store, now: dt.datetime) -> None:
    admin = Caller("admin", "ndrc", name="管理员", roles=frozenset({"admin"}), created_at=now)
    clerk = Caller("clerk", "approval", tls_identity="CN=clerk", created_at=now)
    assert store.put_caller(admin) == 1
    assert store.put_caller(clerk) == 2
    assert store.put_caller(dataclasses.replace(clerk, disabled=True)) == 3  # an update, not a second row
    grant = Grant(
        "clerk",
        matters=("*",),
        subject_kinds=frozenset({SubjectKind.PERSON, SubjectKind.ORGANIZATION}),
        valid_until=now + days(30),
    )
    assert store.put_grant(grant) == 4
    assert store.put_grant(dataclasses.replace(grant, burst=7)) == 5
    _, first = issue_token("clerk", dt.timedelta(days=1), "one", now)
    _, second = issue_token("clerk", dt.timedelta(days=1), "two", now + dt.timedelta(seconds=1))
    store.put_token(first)
    assert store.put_token(second) == 7
    auth = store.load_auth()
    assert auth.version == 7 == store.auth_version()
    assert auth.callers == [admin, dataclasses.replace(clerk, disabled=True)]
    assert auth.grants == [dataclasses.replace(grant, burst=7)]
    assert auth.tokens == [first, second]
    assert store.data_version() == 0  # callers are not list data


def test_revoking_and_deleting(store: Store, now: dt.datetime) -> None:
    store.put_caller(Caller("clerk", "approval", created_at=now))
    store.put_grant(Grant("clerk", matters=("*",)))
    _, token = issue_token("clerk", dt.timedelta(days=1), "", now)
    store.put_token(token)
    revoked = store.revoke_token(token.token_id, now + days(1))
    assert revoked == dataclasses.replace(token, revoked_at=now + days(1))
    assert store.revoke_token(token.token_id, now + days(2)) == revoked  # the first revocation stands
    assert store.load_auth().tokens == [revoked]
    with pytest.raises(StoreError):
        store.revoke_token("no-such-token", now)
    assert store.delete_grant("clerk") is True
    assert store.delete_grant("clerk") is False
    assert store.load_auth().grants == []


def _feedback(approval: str, reported_at: dt.datetime, *, seq: int) -> Feedback:
    return Feedback(
        caller_id="clerk",
        approval_id=approval,
        matter="MOF-0001",
        department="approval",
        subject_hash="h" * 64,
        decision="rejected",
        applied=("m-1", "m-2"),
        note="依法不予许可",
        receipt_id=f"r-{seq}",
        check_seq=seq,
        check_outcome="restrictions_apply",
        check_measures=("m-1", "m-2", "m-3"),
        checked_at=reported_at - dt.timedelta(minutes=5),
        reported_at=reported_at,
    )


def test_feedback_round_trips(store: Store, now: dt.datetime) -> None:
    early = _feedback("A-1", now, seq=11)
    late = dataclasses.replace(_feedback("A-2", now + days(1), seq=12), receipt_id="", checked_at=None)
    store.add_feedback(late)
    store.add_feedback(early)
    assert store.get_feedback("clerk", "A-1") == early
    assert store.get_feedback("clerk", "A-9") is None
    assert store.feedback_between(None, None) == [early, late]
    assert store.feedback_between(now + dt.timedelta(hours=1), None) == [late]
    assert store.feedback_between(None, now + dt.timedelta(hours=1)) == [early]
    assert store.feedback_check_seqs() == {11, 12}
    named = dataclasses.replace(_feedback("A-3", now, seq=11), check_log="replica-b")
    store.add_feedback(named)
    assert store.get_feedback("clerk", "A-3") == named
    # A check is named by (log id, seq): seq 11 of replica-b is not seq 11 of the unnamed (older) report.
    assert store.feedback_check_refs() == {("", 11), ("", 12), ("replica-b", 11)}


def test_feedback_given_before_logs_were_named_stays_readable(tmp_path: Path, now: dt.datetime) -> None:
    """A store of the previous schema (no ``check_log``) is migrated; its feedback reads as naming no log."""
    path = tmp_path / "old.sqlite3"
    SqliteStore(path).close()
    values = feedback_values(_feedback("OLD-1", now, seq=7))[:-1]  # the columns of the previous schema
    with sqlite3.connect(path) as old:
        old.execute("ALTER TABLE feedback DROP COLUMN check_log")
        old.execute("DELETE FROM schema_migrations WHERE version = 10")
        marks = ", ".join("?" for _ in values)
        old.execute(f"INSERT INTO feedback ({', '.join(FEEDBACK_COLUMNS[:-1])}) VALUES ({marks})", values)
    reopened = SqliteStore(path)
    try:
        read = reopened.get_feedback("clerk", "OLD-1")
        assert read is not None and read.check_seq == 7 and read.check_log == ""
        assert reopened.feedback_check_refs() == {("", 7)}
    finally:
        reopened.close()


def test_legacy_codes_move_the_data_version(store: Store, now: dt.datetime) -> None:
    assert store.allow_legacy_code("91350203M0001QAY9B", "试点", actor="admin", at=now) == 1
    assert store.allow_legacy_code("91350203M0001QAY9B", "试点赋码", actor="admin", at=now) == 2
    assert store.legacy_codes() == {"91350203M0001QAY9B": "试点赋码"}
