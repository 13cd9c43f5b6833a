"""The store, on every backend (SQLite, and PostgreSQL when MUSTCHECK_TEST_POSTGRES is set):
migrations, round trips, history, the data version."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from mustcheck.identifiers import SubjectKind
from mustcheck_gateway.policy.model import ListKind
from mustcheck_gateway.store import (
    DEFAULT_FILE_NAME,
    EntryNotFound,
    EntryStatus,
    ListEntry,
    PersonRole,
    open_store,
)
from mustcheck_gateway.store.base import EncodedEntry
from mustcheck_gateway.store.codec import encode_entry
from mustcheck_gateway.store.migrations import LATEST_VERSION
from mustcheck_gateway.store.postgres import PostgresStore
from mustcheck_gateway.store.sqlite import SqliteStore

from backends import StoreAt
from factories import days, make_entry, new_citizen_id, new_uscc
from threads import together

Store = SqliteStore | PostgresStore


def encoded(entries: list[ListEntry]) -> list[EncodedEntry]:
    """Entries in the form an import hands the store (built in the import's worker processes)."""
    return [encode_entry(entry) for entry in entries]


def test_first_open_creates_and_migrates(store_location: StoreAt) -> None:
    store = store_location.open()
    assert store.schema_version() == LATEST_VERSION
    assert store.data_version() == 0
    assert store.auth_version() == 0
    store.close()
    again = store_location.open()  # migrating twice is a no-op
    assert again.schema_version() == LATEST_VERSION
    assert again.migrate() == LATEST_VERSION
    again.close()


def test_the_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    store = open_store(tmp_path / "fresh")
    path = tmp_path / "fresh" / DEFAULT_FILE_NAME
    assert path.is_file()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_entries_round_trip_with_persons(store: Store, now: dt.datetime) -> None:
    person = new_citizen_id()
    entry = make_entry(
        new_uscc(), effective=now, persons=((person, "张三", PersonRole.LEGAL_REPRESENTATIVE),)
    )
    store.write_entries([entry], actor="test", action="add")
    assert store.entries_for_subject(entry.subject_code) == [entry]
    assert store.entries_naming_person(person) == [entry]
    assert store.get_entry(entry.entry_id) == entry
    lookup = store.lookup(person, person=True)
    assert lookup.own == [] and lookup.linked == [entry] and lookup.data_version == 1


def test_every_write_moves_the_data_version_once(store: Store, now: dt.datetime) -> None:
    versions = [store.data_version()]
    batch = [make_entry(new_uscc(), effective=now) for _ in range(5)]
    versions.append(store.write_entries(batch, actor="test", action="import"))
    versions.append(
        store.set_status(batch[0].entry_id, EntryStatus.UNDER_OBJECTION, actor="t", action="o", at=now)
    )
    assert versions == [0, 1, 2]
    assert store.data_version() == 2
    assert store.count_entries() == 5


def test_concurrent_writers_never_reuse_a_version(store: Store, now: dt.datetime) -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def write() -> None:
        for _ in range(10):
            version = store.write_entries([make_entry(new_uscc(), effective=now)], actor="t", action="add")
            with lock:
                seen.append(version)

    together(*[write] * 4)
    assert sorted(seen) == list(range(1, 41))


def test_two_handles_on_one_store_take_turns(store_location: StoreAt, now: dt.datetime) -> None:
    """Two gateways on one store (two handles here) never hand out the same version."""
    handles = [store_location.open(), store_location.open()]
    seen: list[int] = []
    lock = threading.Lock()

    def write(store: Store) -> None:
        for _ in range(10):
            version = store.write_entries([make_entry(new_uscc(), effective=now)], actor="t", action="add")
            with lock:
                seen.append(version)

    together(*[functools.partial(write, handle) for handle in handles for _ in range(2)])
    assert sorted(seen) == list(range(1, 41))
    assert [handle.count_entries() for handle in handles] == [40, 40]
    for handle in handles:
        handle.close()


def test_history_keeps_every_state(store: Store, now: dt.datetime) -> None:
    entry = make_entry(new_uscc(), effective=now - days(400), kind=SubjectKind.ORGANIZATION)
    store.write_entries([entry], actor="importer", action="import")
    store.set_status(
        entry.entry_id, EntryStatus.UNDER_OBJECTION, actor="clerk", action="objection open", at=now
    )
    store.set_status(
        entry.entry_id, EntryStatus.ACTIVE, actor="clerk", action="objection upheld", at=now + days(1)
    )
    history = store.history(entry.entry_id)
    assert [(h.data_version, h.action, h.actor, h.entry.status) for h in history] == [
        (1, "import", "importer", EntryStatus.ACTIVE),
        (2, "objection open", "clerk", EntryStatus.UNDER_OBJECTION),
        (3, "objection upheld", "clerk", EntryStatus.ACTIVE),
    ]
    assert history[0].entry == entry
    assert history[1].changed_at == now
    assert store.history_of_subject(entry.subject_code) == history


def test_failed_write_changes_nothing(store: Store, now: dt.datetime) -> None:
    bad = dataclasses.replace(make_entry(new_uscc(), effective=now), decision_date=now.replace(tzinfo=None))
    with pytest.raises(ValueError):
        store.write_entries([make_entry(new_uscc(), effective=now), bad], actor="t", action="import")
    assert store.data_version() == 0
    assert store.count_entries() == 0


def test_status_change_of_unknown_entry(store: Store, now: dt.datetime) -> None:
    with pytest.raises(EntryNotFound):
        store.set_status("E-missing", EntryStatus.REVOKED, actor="t", action="revoke", at=now)
    with pytest.raises(EntryNotFound):
        store.get_entry("E-missing")
    assert store.data_version() == 0


def test_data_survives_reopening(store_location: StoreAt, now: dt.datetime) -> None:
    store = store_location.open()
    entry = make_entry(new_uscc(), effective=now)
    store.write_entries([entry], actor="t", action="add")
    store.close()
    reopened = store_location.open()
    assert reopened.entries_for_subject(entry.subject_code) == [entry]
    assert reopened.data_version() == 1
    reopened.close()


def test_replay_sees_each_version(store: Store, now: dt.datetime) -> None:
    person = new_citizen_id()
    first = make_entry(new_uscc(), effective=now, persons=((person, "李四", PersonRole.PRINCIPAL),))
    store.write_entries([first], actor="t", action="add")
    revoked = dataclasses.replace(first, status=EntryStatus.REVOKED, status_changed_at=now + days(1))
    store.replace_entry(revoked, actor="t", action="revoke", at=now + days(1))
    at_one = store.lookup_as_of(first.subject_code, person=False, data_version=1)
    assert at_one.data_version == 1 and at_one.own == [first] and at_one.linked == []
    assert store.lookup_as_of(person, person=True, data_version=1).linked == [first]
    later = store.lookup_as_of(first.subject_code, person=False, data_version=99)
    assert later.data_version == 2 and later.own == [revoked]
    assert store.lookup_as_of(first.subject_code, person=False, data_version=0).own == []
    assert store.data_version_at(now - days(1)) == 0
    assert store.data_version_at(now + days(2)) == 2


def test_a_lookup_reads_one_snapshot(store: Store, now: dt.datetime) -> None:
    """While a writer moves an entry on, every lookup sees the entry as of the version it reports."""
    entry = make_entry(new_uscc(), effective=now)
    store.write_entries([dataclasses.replace(entry, reason="v1")], actor="t", action="add")
    done = threading.Event()

    def writer() -> None:
        for version in range(2, 60):
            store.replace_entry(
                dataclasses.replace(entry, reason=f"v{version}"), actor="t", action="e", at=now
            )
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    looked = 0
    while not done.is_set() or looked == 0:
        lookup = store.lookup(entry.subject_code, person=False)
        assert [own.reason for own in lookup.own] == [f"v{lookup.data_version}"]
        looked += 1
    thread.join()


def test_import_counts_and_moves_the_version_once(store: Store, now: dt.datetime) -> None:
    entries = [make_entry(new_uscc(), effective=now) for _ in range(2100)]  # more than one batch
    outcome = store.import_entries(encoded(entries), actor="admin", action="import-update", keep=lambda: True)
    assert (outcome.inserted, outcome.updated, outcome.unchanged) == (2100, 0, 0)
    assert outcome.applied and outcome.data_version == 1 == store.data_version()
    assert store.history(entries[0].entry_id)[0].action == "import"
    changed = dataclasses.replace(entries[5], reason="更正")
    again = store.import_entries(
        encoded([*entries[:5], changed]), actor="admin", action="import-update", keep=lambda: True
    )
    assert (again.inserted, again.updated, again.unchanged, again.data_version) == (0, 1, 5, 2)
    assert [h.action for h in store.history(changed.entry_id)] == ["import", "import-update"]
    same = store.import_entries(
        encoded(entries[:3]), actor="admin", action="import-update", keep=lambda: True
    )
    assert (same.unchanged, same.data_version, store.data_version()) == (3, 2, 2)
    assert store.count_entries() == 2100


def test_an_import_not_kept_changes_nothing(store: Store, now: dt.datetime) -> None:
    entries = [make_entry(new_uscc(), effective=now) for _ in range(3)]
    outcome = store.import_entries(
        encoded(entries), actor="admin", action="import-update", keep=lambda: False
    )
    assert not outcome.applied and outcome.inserted == 3 and outcome.data_version == 0
    assert store.count_entries() == 0 and store.data_version() == 0

    def broken() -> bool:
        raise RuntimeError("the stream broke off")

    with pytest.raises(RuntimeError):
        store.import_entries(encoded(entries), actor="admin", action="import-update", keep=broken)
    assert store.count_entries() == 0 and store.data_version() == 0
    assert store.history(entries[0].entry_id) == []


def test_all_entries_pages_in_key_order(store: Store, now: dt.datetime) -> None:
    black = [make_entry(new_uscc(), effective=now) for _ in range(1005)]
    red = [make_entry(new_uscc(), effective=now, list_kind=ListKind.RED, memorandum="a-taxpayers")]
    store.write_entries([*black, *red], actor="t", action="add")
    every = list(store.all_entries())
    assert [e.entry_id for e in every] == sorted(e.entry_id for e in [*black, *red])
    assert list(store.all_entries(list_kind="red")) == red
    assert len(list(store.all_entries(list_kind="black"))) == 1005


def test_import_into_an_empty_store_then_again(store: SqliteStore) -> None:
    from mustcheck_gateway.store.codec import encode_entry

    now = dt.datetime.now(dt.UTC)
    entries = [make_entry(new_uscc(), effective=now) for _ in range(3)]

    def load(batch: list[Any]) -> tuple[int, int, int, int]:
        outcome = store.import_entries(
            [encode_entry(e) for e in batch], actor="t", action="import-update", keep=lambda: True
        )
        return outcome.inserted, outcome.updated, outcome.unchanged, outcome.data_version

    assert load(entries) == (3, 0, 0, 1)  # a first load: nothing looked up
    assert load(entries) == (0, 0, 3, 1)  # the same again changes nothing
    changed = dataclasses.replace(entries[1], reason="更正")
    assert load([entries[0], changed]) == (0, 1, 1, 2)
    assert [h.action for h in store.history(changed.entry_id)] == ["import", "import-update"]
    assert store.get_entry(changed.entry_id) == changed


def test_a_large_import_builds_the_secondary_indexes_afresh(tmp_path: Path) -> None:
    from mustcheck_gateway.store.codec import encode_entry
    from mustcheck_gateway.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "lists.sqlite3", defer_indexes_after=2)

    def indexes() -> list[str]:
        with sqlite3.connect(store.path) as db:
            return [sql for (sql,) in db.execute("SELECT sql FROM sqlite_master WHERE type = 'index'")]

    before = indexes()
    now = dt.datetime.now(dt.UTC)
    person = new_citizen_id()
    entries = [
        make_entry(new_uscc(), effective=now, persons=((person, "王五", PersonRole.LEGAL_REPRESENTATIVE),))
        for _ in range(3)
    ]
    encoded = [encode_entry(e) for e in entries]
    rolled_back = store.import_entries(encoded, actor="t", action="import", keep=lambda: False)
    assert not rolled_back.applied and indexes() == before and store.count_entries() == 0
    assert store.import_entries(encoded, actor="t", action="import", keep=lambda: True).inserted == 3
    assert sorted(indexes(), key=str) == sorted(before, key=str)
    assert store.entries_for_subject(entries[0].subject_code) == [entries[0]]
    assert {e.entry_id for e in store.entries_naming_person(person)} == {e.entry_id for e in entries}
    store.close()


def test_data_completeness_is_kept_per_data_version(store: Store) -> None:
    """R6: since when the list data is complete, as of each data version (a replay reads the old one)."""
    code = new_uscc()
    assert store.data_completeness() is None and store.lookup(code, person=False).complete_since is None
    at = dt.datetime.now(dt.UTC)
    first = dt.datetime(2019, 1, 1, tzinfo=dt.UTC)
    before = store.data_version()
    version = store.set_data_complete_since(first, actor="admin", how="admin", at=at)
    assert version == before + 1
    later = store.set_data_complete_since(first.replace(year=2018), actor="importer", how="import", at=at)
    found = store.data_completeness()
    assert found is not None and found.complete_since.year == 2018 and found.how == "import"
    assert found.set_by == "importer" and found.data_version == later
    assert store.lookup(code, person=False).complete_since == found.complete_since
    assert store.lookup_as_of(code, person=False, data_version=version).complete_since == first
    assert store.lookup_as_of(code, person=False, data_version=before).complete_since is None
    # Every answer's green channel may change: caches drop everything.
    assert any(change.everything for change in store.subject_changes(before))


def test_a_legacy_code_can_be_withdrawn_once(store: Store) -> None:
    at = dt.datetime.now(dt.UTC)
    code = "91350203M0001QAY9C"
    store.allow_legacy_code(code, "pilot", actor="admin", at=at)
    assert code in store.legacy_codes()
    version = store.disallow_legacy_code(code, actor="admin", at=at)
    assert version is not None and code not in store.legacy_codes()
    assert store.disallow_legacy_code(code, actor="admin", at=at) is None
    assert store.data_version() == version


def test_a_batch_of_lookups_reads_what_each_lookup_reads(store: Store, now: dt.datetime) -> None:
    # One read for a batch's subjects (lookup_many) gives each subject exactly what lookup gives it alone:
    # its own entries, and for a person the organisations' entries naming them, in entry order.
    first, second, alone = new_citizen_id(), new_citizen_id(), new_citizen_id()
    company, other, unlisted = new_uscc(), new_uscc(), new_uscc()
    entries = [
        make_entry(
            company,
            effective=now,
            persons=(
                (first, "张三", PersonRole.LEGAL_REPRESENTATIVE),
                (second, "李四", PersonRole.PRINCIPAL),
            ),
        ),
        make_entry(company, effective=now, list_kind=ListKind.RED, memorandum="tax-a-grade"),
        make_entry(other, effective=now, persons=((first, "张三", PersonRole.LEGAL_REPRESENTATIVE),)),
        make_entry(alone, effective=now, kind=SubjectKind.PERSON, name="王五"),
    ]
    store.write_entries(entries, actor="test", action="add")
    asked = [
        (company, False),
        (first, True),
        (unlisted, False),
        (alone, True),
        (second, True),
        (company, False),  # twice in one batch
        (first, False),  # a person's number asked as if no person: no linked entries
        (other, False),
    ]
    many = store.lookup_many(asked)
    assert many == [store.lookup(code, person=person) for code, person in asked]
    assert [len(lookup.own) for lookup in many] == [2, 0, 0, 1, 0, 2, 0, 1]
    assert [len(lookup.linked) for lookup in many] == [0, 2, 0, 0, 1, 0, 0, 0]
    assert store.lookup_many([]) == []
