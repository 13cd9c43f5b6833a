"""The embedded store: migrations, round trips, history, the data version."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mustcheck.identifiers import SubjectKind
from mustcheck_gateway.store import EntryNotFound, EntryStatus, PersonRole, SqliteStore, open_store
from mustcheck_gateway.store.migrations import LATEST_VERSION

from factories import days, make_entry, new_citizen_id, new_uscc


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = open_store(tmp_path)
    yield opened
    opened.close()


def test_first_open_creates_and_migrates_the_file(tmp_path: Path) -> None:
    store = open_store(tmp_path / "fresh")
    assert (tmp_path / "fresh" / "mustcheck.sqlite3").is_file()
    assert store.schema_version() == LATEST_VERSION
    assert store.data_version() == 0
    journal = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"
    store.close()
    again = open_store(tmp_path / "fresh")  # migrating twice is a no-op
    assert again.schema_version() == LATEST_VERSION
    again.close()


def test_entries_round_trip_with_persons(store: SqliteStore, now: dt.datetime) -> None:
    person = new_citizen_id()
    entry = make_entry(
        new_uscc(), effective=now, persons=((person, "张三", PersonRole.LEGAL_REPRESENTATIVE),)
    )
    store.write_entries([entry], actor="test", action="add")
    assert store.entries_for_subject(entry.subject_code) == [entry]
    assert store.entries_naming_person(person) == [entry]
    lookup = store.lookup(person, person=True)
    assert lookup.own == [] and lookup.linked == [entry] and lookup.data_version == 1


def test_every_write_moves_the_data_version_once(store: SqliteStore, now: dt.datetime) -> None:
    versions = [store.data_version()]
    batch = [make_entry(new_uscc(), effective=now) for _ in range(5)]
    versions.append(store.write_entries(batch, actor="test", action="import"))
    versions.append(
        store.set_status(batch[0].entry_id, EntryStatus.UNDER_OBJECTION, actor="t", action="o", at=now)
    )
    assert versions == [0, 1, 2]
    assert store.data_version() == 2
    assert store.count_entries() == 5


def test_concurrent_writers_never_reuse_a_version(store: SqliteStore, now: dt.datetime) -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def write() -> None:
        for _ in range(10):
            version = store.write_entries([make_entry(new_uscc(), effective=now)], actor="t", action="add")
            with lock:
                seen.append(version)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == list(range(1, 41))


def test_history_keeps_every_state(store: SqliteStore, now: dt.datetime) -> None:
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


def test_failed_write_changes_nothing(store: SqliteStore, now: dt.datetime) -> None:
    bad = dataclasses.replace(make_entry(new_uscc(), effective=now), decision_date=now.replace(tzinfo=None))
    with pytest.raises(ValueError):
        store.write_entries([make_entry(new_uscc(), effective=now), bad], actor="t", action="import")
    assert store.data_version() == 0
    assert store.count_entries() == 0


def test_status_change_of_unknown_entry(store: SqliteStore, now: dt.datetime) -> None:
    with pytest.raises(EntryNotFound):
        store.set_status("E-missing", EntryStatus.REVOKED, actor="t", action="revoke", at=now)
    assert store.data_version() == 0


def test_data_survives_reopening(tmp_path: Path, now: dt.datetime) -> None:
    store = open_store(tmp_path)
    entry = make_entry(new_uscc(), effective=now)
    store.write_entries([entry], actor="t", action="add")
    store.close()
    reopened = open_store(tmp_path)
    assert reopened.entries_for_subject(entry.subject_code) == [entry]
    assert reopened.data_version() == 1
    reopened.close()


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
