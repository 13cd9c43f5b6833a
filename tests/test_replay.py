"""Point-in-time replay: an auditor sees the answer as it was at a receipt's data version."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from mustcheck import Client, Outcome, PermissionDenied
from mustcheck_gateway.server import Gateway
from mustcheck_gateway.store import EntryStatus

from factories import days, make_entry, new_uscc
from provision import provision


def test_replay_at_a_receipts_version_equals_the_receipt(
    gateway: Gateway, target: str, token: str, admin_token: str, now: dt.datetime
) -> None:
    auditor = provision(target, admin_token, "replay-auditor", roles=["auditor"], grant=False)
    subject = new_uscc()
    first = make_entry(subject, effective=now - days(10))
    gateway.store.write_entries([first], actor="test", action="add")
    with Client(target, token=token) as client:
        before = client.check(subject, "MOF-0001")
    assert before.receipt is not None and before.outcome is Outcome.RESTRICTIONS

    # The list changes: a second entry, an objection on the first, then its repair.
    second = make_entry(
        subject,
        memorandum="a-grade-taxpayers",
        list_kind=__import__("mustcheck").ListKind.RED,
        effective=now - days(5),
        severity="none",
    )
    gateway.store.write_entries([second], actor="test", action="add")
    gateway.store.replace_entry(
        dataclasses.replace(first, status=EntryStatus.UNDER_OBJECTION, status_changed_at=now),
        actor="t",
        action="objection open",
        at=now,
    )
    gateway.store.replace_entry(
        dataclasses.replace(first, status=EntryStatus.REPAIRED, status_changed_at=now),
        actor="t",
        action="repair",
        at=now,
    )
    with Client(target, token=token) as client:
        after = client.check(subject, "MOF-0001")
    assert after.outcome is not before.outcome

    receipt = before.receipt
    with Client(target, token=auditor) as client:
        replayed = client.check(
            subject, "MOF-0001", as_of_version=receipt.data_version, as_of_time=receipt.issued_at
        )
        assert replayed.outcome.value == receipt.outcome
        assert tuple(m.id for m in replayed.measures) == receipt.measure_ids
        assert replayed.data_version == receipt.data_version
        assert replayed.receipt is None  # a replay shows the past; it is no new check
        assert after.receipt is not None
        latest = client.check(subject, "MOF-0001", as_of_version=after.receipt.data_version)
        assert latest.outcome is after.outcome


def test_only_auditors_may_replay(target: str, token: str) -> None:
    with Client(target, token=token) as client, pytest.raises(PermissionDenied, match="auditor role"):
        client.check(new_uscc(), "MOF-0001", as_of_version=1)
