"""The embedded store: one SQLite file in WAL mode (the default backend).

Reads use one connection per thread; writes are serialised by a lock and run in
one ``BEGIN IMMEDIATE`` transaction each, so a write is all or nothing and the
data version moves exactly once per write.
"""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..auth.codec import (
    CALLER_COLUMNS,
    TOKEN_COLUMNS,
    caller_from_values,
    caller_values,
    grant_from_json,
    grant_to_json,
    token_from_values,
    token_values,
)
from ..auth.model import Caller, Grant, TokenRecord
from ..feedback import Feedback
from . import audit_heads, completeness
from . import policy_sets as kept_policies
from .base import (
    AuditHead,
    AuthData,
    Completeness,
    EncodedEntry,
    EntryNotFound,
    EntryStatus,
    HistoryRecord,
    ImportOutcome,
    ListEntry,
    Lookup,
    StoreError,
)
from .bulk_lookup import chunks, lookups_from, subjects_to_read
from .changes import (
    EVERYTHING,
    SubjectChange,
    group_changes,
    insert_change,
    select_changes,
    touched_subjects,
)
from .codec import (
    ENTRY_COLUMNS,
    HISTORY_COLUMNS,
    entry_from_values,
    entry_values,
    format_instant,
    from_snapshot,
    history_from_values,
    snapshot,
)
from .feedback_codec import FEEDBACK_COLUMNS, feedback_from_values, feedback_values
from .import_tally import IMPORT_BATCH
from .migrations import MIGRATIONS, apply_migrations
from .sqlite_connections import ThreadConnections, consistent_read, transaction

_COLUMNS = ", ".join(ENTRY_COLUMNS)
_PLACEHOLDERS = ", ".join("?" for _ in ENTRY_COLUMNS)
_SELECT_ENTRIES = f"SELECT {_COLUMNS} FROM entries"
_HISTORY = ", ".join(HISTORY_COLUMNS)
_FEEDBACK_COLUMNS = ", ".join(FEEDBACK_COLUMNS)
_FEEDBACK_MARKS = ", ".join("?" for _ in FEEDBACK_COLUMNS)
# Page cache per connection: list keys are hashes, so inserts land all over the B-trees; a cache that
# holds them keeps a million-row import from re-reading pages it has just written.
CACHE_KIB = 32 * 1024
# An import's transaction writes into every index of a million-row store: while it runs, its connection
# gets a larger cache (given back when it ends), which halves the time SQLite spends re-reading pages.
IMPORT_CACHE_KIB = 96 * 1024
# An import of more rows than this, and than the store holds, builds the secondary indexes afresh.
DEFER_INDEXES_AFTER = 100_000
_REBUILD_CACHE_KIB = 8 * 1024


class SqliteStore:
    """A :class:`~mustcheck_gateway.store.base.ListStore` on one SQLite file."""

    def __init__(self, path: Path, *, defer_indexes_after: int = DEFER_INDEXES_AFTER) -> None:
        self.path = path
        self.defer_indexes_after = defer_indexes_after
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._connections = ThreadConnections(self._open_connection)
        self.migrate()

    # -- connections -------------------------------------------------------------

    def _open_connection(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    def _connection(self) -> sqlite3.Connection:
        return self._connections.current()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock, transaction(self._connection()) as connection:
            yield connection

    def close(self) -> None:
        self._connections.close()

    # -- schema ------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply pending migrations; return the schema version."""
        with self._transaction() as connection:
            return apply_migrations(connection, MIGRATIONS)

    def schema_version(self) -> int:
        row = self._connection().execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    # -- reads -------------------------------------------------------------------

    def data_version(self) -> int:
        row = self._connection().execute("SELECT value FROM meta WHERE key = 'data_version'").fetchone()
        return int(row[0])

    def count_entries(self) -> int:
        return int(self._connection().execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def lookup(self, subject_code: str, *, person: bool) -> Lookup:
        with consistent_read(self._connection()):
            version = self.data_version()
            return Lookup(
                data_version=version,
                own=self.entries_for_subject(subject_code),
                linked=self.entries_naming_person(subject_code) if person else [],
                complete_since=self._complete_since(version),
            )

    def lookup_many(self, subjects: Sequence[tuple[str, bool]]) -> list[Lookup]:
        codes, persons = subjects_to_read(subjects)
        with consistent_read(self._connection()) as connection:
            version = self.data_version()
            own: list[ListEntry] = []
            for part in chunks(codes):
                marks = ", ".join("?" for _ in part)
                own += self._entries(
                    f"{_SELECT_ENTRIES} WHERE subject_code IN ({marks}) ORDER BY entry_id", part
                )
            named: dict[str, set[str]] = {}  # entry id -> the persons asked about whom it names
            for part in chunks(persons):
                marks = ", ".join("?" for _ in part)
                for entry_id, person_id in connection.execute(
                    f"SELECT entry_id, person_id FROM entry_persons WHERE person_id IN ({marks})", part
                ):
                    named.setdefault(entry_id, set()).add(person_id)
            naming: list[tuple[str, ListEntry]] = []
            for part in chunks(sorted(named)):
                marks = ", ".join("?" for _ in part)
                for entry in self._entries(
                    f"{_SELECT_ENTRIES} WHERE entry_id IN ({marks}) ORDER BY entry_id", part
                ):
                    naming += [(person_id, entry) for person_id in sorted(named[entry.entry_id])]
            return lookups_from(
                subjects,
                data_version=version,
                complete_since=self._complete_since(version),
                own=own,
                naming=naming,
            )

    def lookup_as_of(self, subject_code: str, *, person: bool, data_version: int) -> Lookup:
        """The subject's entries as they were at ``data_version``, rebuilt from their history."""
        with consistent_read(self._connection()):
            latest = min(data_version, self.data_version())
            own = self._entries_at(
                "SELECT entry_id FROM entries WHERE subject_code = ?", (subject_code,), latest
            )
            linked = (
                self._entries_at(
                    "SELECT entry_id FROM entry_persons WHERE person_id = ?",
                    (subject_code,),
                    latest,
                )
                if person
                else []
            )
            return Lookup(
                data_version=latest, own=own, linked=linked, complete_since=self._complete_since(latest)
            )

    def _complete_since(self, version: int) -> dt.datetime | None:
        found = self.data_completeness(version)
        return found.complete_since if found else None

    def data_completeness(self, as_of_version: int | None = None) -> Completeness | None:
        version = self.data_version() if as_of_version is None else as_of_version
        row = self._connection().execute(completeness.select_latest("?"), (version,)).fetchone()
        return completeness.from_row(row)

    def set_data_complete_since(self, since: dt.datetime, *, actor: str, how: str, at: dt.datetime) -> int:
        with self._transaction() as connection:
            version = self._bump(connection)
            connection.execute(completeness.insert("?"), completeness.values(version, since, actor, at, how))
            self._record_changes(connection, version, [EVERYTHING])
            return version

    def _entries_at(self, ids_query: str, parameters: Sequence[object], data_version: int) -> list[ListEntry]:
        rows = self._connection().execute(
            "SELECT h.snapshot FROM entry_history h JOIN "
            "(SELECT entry_id, MAX(data_version) AS version FROM entry_history "
            f"WHERE data_version <= ? AND entry_id IN ({ids_query}) GROUP BY entry_id) latest "
            "ON h.entry_id = latest.entry_id AND h.data_version = latest.version ORDER BY h.entry_id",
            (data_version, *parameters),
        )
        return [from_snapshot(snapshot_text) for (snapshot_text,) in rows]

    def data_version_at(self, instant: dt.datetime) -> int:
        """The data version in force at ``instant`` (the last change made at or before it)."""
        row = (
            self._connection()
            .execute(
                "SELECT MAX(data_version) FROM entry_history WHERE changed_at <= ?",
                (format_instant(instant),),
            )
            .fetchone()
        )
        return int(row[0] or 0)

    def entries_for_subject(self, subject_code: str) -> list[ListEntry]:
        return self._entries(f"{_SELECT_ENTRIES} WHERE subject_code = ? ORDER BY entry_id", (subject_code,))

    def entries_naming_person(self, person_id: str) -> list[ListEntry]:
        return self._entries(
            f"{_SELECT_ENTRIES} WHERE entry_id IN "
            "(SELECT entry_id FROM entry_persons WHERE person_id = ?) ORDER BY entry_id",
            (person_id,),
        )

    def get_entry(self, entry_id: str) -> ListEntry:
        found = self._existing(entry_id)
        if found is None:
            raise EntryNotFound(f"no list entry {entry_id!r}")
        return found

    def _entries(self, query: str, parameters: Sequence[object]) -> list[ListEntry]:
        found = self._rows_with_persons(self._connection(), query, parameters)
        return [entry_from_values(row, persons) for row, persons in found.values()]

    @staticmethod
    def _rows_with_persons(
        connection: sqlite3.Connection, query: str, parameters: Sequence[object]
    ) -> dict[str, tuple[tuple[Any, ...], list[tuple[str, str, str]]]]:
        """The entry rows ``query`` selects, by id in its order, each with its persons (store order)."""
        found: dict[str, tuple[tuple[Any, ...], list[tuple[str, str, str]]]] = {
            row[0]: (row, []) for row in connection.execute(query, parameters)
        }
        if found:
            ids = list(found)
            for entry_id, person_id, name, role in connection.execute(
                "SELECT entry_id, person_id, name, role FROM entry_persons "
                f"WHERE entry_id IN ({', '.join('?' for _ in ids)}) ORDER BY entry_id, role, person_id",
                ids,
            ):
                found[entry_id][1].append((person_id, name, role))
        return found

    def history(self, entry_id: str) -> list[HistoryRecord]:
        rows = self._connection().execute(
            f"SELECT {_HISTORY} FROM entry_history WHERE entry_id = ? ORDER BY data_version", (entry_id,)
        )
        return [history_from_values(row) for row in rows]

    # -- writes ------------------------------------------------------------------

    def write_entries(self, entries: Iterable[ListEntry], *, actor: str, action: str) -> int:
        now = format_instant(dt.datetime.now(dt.UTC))
        with self._transaction() as connection:
            version = self._bump(connection)
            touched: set[str] = set()
            for entry in entries:
                touched |= touched_subjects(entry, self._existing(entry.entry_id))
                self._put(connection, entry, version)
                self._record(connection, entry, version, action, actor, now)
            self._record_changes(connection, version, touched)
            return version

    def _existing(self, entry_id: str) -> ListEntry | None:
        found = self._entries(f"{_SELECT_ENTRIES} WHERE entry_id = ?", (entry_id,))
        return found[0] if found else None

    def publish_audit_head(self, head: AuditHead, proof: Sequence[bytes] = ()) -> None:
        with self._transaction() as connection:
            row = connection.execute(audit_heads.select_one("?"), (head.replica,)).fetchone()
            audit_heads.check_tree(None if row is None else audit_heads.head_from_values(row), head, proof)
            cursor = connection.execute(audit_heads.upsert("?"), audit_heads.head_values(head))
            audit_heads.check_kept(head, cursor.rowcount)

    def audit_heads(self) -> list[AuditHead]:
        return [audit_heads.head_from_values(row) for row in self._connection().execute(audit_heads.SELECT)]

    def keep_policy_set(self, digest: str, body: str, *, served_by: str, at: dt.datetime) -> bool:
        with self._transaction() as connection:
            cursor = connection.execute(
                kept_policies.insert("?"), kept_policies.values(digest, body, served_by, at)
            )
            return bool(cursor.rowcount)

    def policy_set(self, digest: str) -> kept_policies.StoredPolicySet | None:
        row = self._connection().execute(kept_policies.select_one("?"), (digest,)).fetchone()
        return None if row is None else kept_policies.from_values(row)

    def policy_sets(self) -> list[kept_policies.StoredPolicySet]:
        return [
            kept_policies.from_values(row) for row in self._connection().execute(kept_policies.SELECT_LISTING)
        ]

    def subject_changes(self, after: int, *, limit: int = 1000) -> list[SubjectChange]:
        return group_changes(self._connection().execute(select_changes("?"), (after, limit)))

    @staticmethod
    def _record_changes(connection: sqlite3.Connection, version: int, subjects: Iterable[str]) -> None:
        connection.executemany(
            insert_change("?"),
            [(version, subject) for subject in subjects],
        )

    def import_entries(
        self, entries: Iterable[EncodedEntry], *, actor: str, action: str, keep: Callable[[], bool]
    ) -> ImportOutcome:
        """Insert new entries and update changed ones in ONE transaction; unchanged ones are left alone.

        ``entries`` (distinct ids) are consumed inside the transaction (streaming: memory stays flat);
        afterwards ``keep()`` decides whether to commit or roll everything back. The data version moves
        once, and only if something changed.
        """
        now = format_instant(dt.datetime.now(dt.UTC))
        counts = {"inserted": 0, "updated": 0, "unchanged": 0}
        version: list[int] = []  # the data version, taken at the first change only
        connection = self._connection()
        with self._write_lock, _cache_of(connection, IMPORT_CACHE_KIB):
            connection.execute("BEGIN IMMEDIATE")
            try:
                # Into an empty store (a first load) no entry can exist but those this import writes,
                # each once: nothing to look up.
                (stored,) = connection.execute("SELECT coalesce(max(rowid), 0) FROM entries").fetchone()
                deferred = _DeferredIndexes(connection, after=max(self.defer_indexes_after, stored))
                write = functools.partial(
                    self._import_batch,
                    connection,
                    version=version,
                    counts=counts,
                    actor=actor,
                    action=action,
                    now=now,
                    look_up=stored > 0,
                )
                batch: list[EncodedEntry] = []
                for entry in entries:
                    batch.append(entry)
                    if len(batch) >= IMPORT_BATCH:
                        deferred.count(len(batch))
                        write(batch)
                        batch = []
                if batch:
                    deferred.count(len(batch))
                    write(batch)
                if version:  # a bulk change: caches drop everything rather than read a million codes
                    self._record_changes(connection, version[0], [EVERYTHING])
                applied = keep()
                if applied:
                    deferred.rebuild()
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT" if applied else "ROLLBACK")
        data_version = version[0] if applied and version else self.data_version()
        return ImportOutcome(
            counts["inserted"], counts["updated"], counts["unchanged"], data_version, applied
        )

    def _import_batch(
        self,
        connection: sqlite3.Connection,
        batch: list[EncodedEntry],
        *,
        version: list[int],
        counts: dict[str, int],
        actor: str,
        action: str,
        now: str,
        look_up: bool,
    ) -> None:
        """Write a batch of imported entries with a few statements: existing ones are looked up at once."""
        batch.sort(key=_entry_id_of)  # key order: neighbouring B-tree pages, fewer misses
        existing = self._stored(connection, [values[0] for values, _, _ in batch]) if look_up else {}
        changed: list[tuple[EncodedEntry, bool]] = []
        for entry in batch:
            current = existing.get(entry[0][0])
            if current is not None and _same(current, entry):
                counts["unchanged"] += 1
                continue
            counts["updated" if current else "inserted"] += 1
            changed.append((entry, current is not None))
        if not changed:
            return
        if not version:
            version.append(self._bump(connection))
        connection.executemany(
            "DELETE FROM entry_persons WHERE entry_id = ?",
            [(values[0],) for (values, _, _), known in changed if known],
        )
        connection.executemany(
            f"INSERT OR REPLACE INTO entries ({_COLUMNS}, data_version) VALUES ({_PLACEHOLDERS}, ?)",
            [(*values, version[0]) for (values, _, _), _ in changed],
        )
        connection.executemany(
            "INSERT INTO entry_persons (entry_id, person_id, name, role) VALUES (?, ?, ?, ?)",
            [(values[0], *person) for (values, persons, _), _ in changed for person in persons],
        )
        connection.executemany(  # the snapshot comes as UTF-8 bytes: stored as the text it is
            "INSERT INTO entry_history (entry_id, data_version, action, actor, changed_at, snapshot) "
            "VALUES (?, ?, ?, ?, ?, CAST(? AS TEXT))",
            [
                (values[0], version[0], action if known else "import", actor, now, snapshot)
                for (values, _, snapshot), known in changed
            ],
        )

    @classmethod
    def _stored(
        cls, connection: sqlite3.Connection, entry_ids: list[str]
    ) -> dict[str, tuple[tuple[Any, ...], list[tuple[str, str, str]]]]:
        """The stored values and persons (in the store's order) of those of ``entry_ids`` that exist."""
        marks = ", ".join("?" for _ in entry_ids)
        return cls._rows_with_persons(connection, f"{_SELECT_ENTRIES} WHERE entry_id IN ({marks})", entry_ids)

    def history_of_subject(self, subject_code: str) -> list[HistoryRecord]:
        """Every state of every entry of ``subject_code``, oldest first."""
        rows = self._connection().execute(
            f"SELECT {_HISTORY} FROM entry_history WHERE entry_id IN "
            "(SELECT entry_id FROM entries WHERE subject_code = ?) ORDER BY data_version",
            (subject_code,),
        )
        return [history_from_values(row) for row in rows]

    def all_entries(self, *, list_kind: str | None = None) -> Iterator[ListEntry]:
        """Every entry (optionally of one list), in key order, read in pages (export streams this)."""
        after = ""
        kind_filter = " AND list_kind = ?" if list_kind else ""
        while True:
            parameters: list[object] = [after, *([list_kind] if list_kind else [])]
            page = self._entries(
                f"{_SELECT_ENTRIES} WHERE entry_id > ?{kind_filter} ORDER BY entry_id LIMIT 1000", parameters
            )
            if not page:
                return
            yield from page
            after = page[-1].entry_id

    def replace_entry(self, entry: ListEntry, *, actor: str, action: str, at: dt.datetime) -> int:
        """Write one changed entry (its history keeps the previous state); returns the data version."""
        with self._transaction() as connection:
            previous = self._existing(entry.entry_id)
            version = self._bump(connection)
            self._put(connection, entry, version)
            self._record(connection, entry, version, action, actor, format_instant(at))
            self._record_changes(connection, version, touched_subjects(entry, previous))
            return version

    # -- execution feedback ------------------------------------------------------------

    def get_feedback(self, caller_id: str, approval_id: str) -> Feedback | None:
        rows = self._feedback("WHERE caller_id = ? AND approval_id = ?", (caller_id, approval_id))
        return rows[0] if rows else None

    def add_feedback(self, feedback: Feedback) -> None:
        with self._transaction() as connection:
            connection.execute(
                f"INSERT INTO feedback ({_FEEDBACK_COLUMNS}) VALUES ({_FEEDBACK_MARKS})",
                feedback_values(feedback),
            )

    def feedback_between(self, since: dt.datetime | None, until: dt.datetime | None) -> list[Feedback]:
        return self._feedback(
            "WHERE reported_at >= ? AND reported_at < ? ORDER BY reported_at",
            (format_instant(since) if since else "", format_instant(until) if until else "9999"),
        )

    def feedback_check_seqs(self) -> set[int]:
        return {int(seq) for (seq,) in self._connection().execute("SELECT check_seq FROM feedback")}

    def feedback_check_refs(self) -> set[tuple[str, int]]:
        rows = self._connection().execute("SELECT check_log, check_seq FROM feedback")
        return {(str(log_id), int(seq)) for log_id, seq in rows}

    def _feedback(self, where: str, parameters: Sequence[object]) -> list[Feedback]:
        rows = self._connection().execute(f"SELECT {_FEEDBACK_COLUMNS} FROM feedback {where}", parameters)
        return [feedback_from_values(row) for row in rows]

    # -- the legacy code allow-list (R1), kept beside the policy file's ----------------

    def legacy_codes(self) -> dict[str, str]:
        rows = self._connection().execute("SELECT code, reason FROM legacy_codes ORDER BY code")
        return {code: reason for code, reason in rows}

    def allow_legacy_code(self, code: str, reason: str, *, actor: str, at: dt.datetime) -> int:
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO legacy_codes (code, reason, added_by, added_at) VALUES (?, ?, ?, ?)",
                (code, reason, actor, format_instant(at)),
            )
            version = self._bump(connection)
            self._record_changes(connection, version, [code])
            return version

    def disallow_legacy_code(self, code: str, *, actor: str, at: dt.datetime) -> int | None:
        with self._transaction() as connection:
            deleted = connection.execute("DELETE FROM legacy_codes WHERE code = ?", (code,)).rowcount
            if not deleted:
                return None
            version = self._bump(connection)
            self._record_changes(connection, version, [code])
            return version

    def set_status(
        self, entry_id: str, status: EntryStatus, *, actor: str, action: str, at: dt.datetime
    ) -> int:
        with self._transaction() as connection:
            current = self.get_entry(entry_id)
            updated = replace(current, status=status, status_changed_at=at)
            version = self._bump(connection)
            self._put(connection, updated, version)
            self._record(connection, updated, version, action, actor, format_instant(at))
            self._record_changes(connection, version, touched_subjects(updated))
            return version

    @staticmethod
    def _bump(connection: sqlite3.Connection) -> int:
        row = connection.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'data_version' RETURNING value"
        ).fetchone()
        if row is None:
            raise StoreError("store has no data version; was it migrated?")
        return int(row[0])

    @staticmethod
    def _put(connection: sqlite3.Connection, entry: ListEntry, version: int) -> None:
        connection.execute("DELETE FROM entry_persons WHERE entry_id = ?", (entry.entry_id,))
        connection.execute(
            f"INSERT OR REPLACE INTO entries ({_COLUMNS}, data_version) VALUES ({_PLACEHOLDERS}, ?)",
            (*entry_values(entry), version),
        )
        connection.executemany(
            "INSERT INTO entry_persons (entry_id, person_id, name, role) VALUES (?, ?, ?, ?)",
            [(entry.entry_id, p.person_id, p.name, p.role.value) for p in entry.responsible_persons],
        )

    @staticmethod
    def _record(
        connection: sqlite3.Connection, entry: ListEntry, version: int, action: str, actor: str, at: str
    ) -> None:
        connection.execute(
            "INSERT INTO entry_history (entry_id, data_version, action, actor, changed_at, snapshot) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (entry.entry_id, version, action, actor, at, snapshot(entry)),
        )

    # -- callers, grants, tokens -----------------------------------------------------

    def auth_version(self) -> int:
        row = self._connection().execute("SELECT value FROM meta WHERE key = 'auth_version'").fetchone()
        return int(row[0])

    def load_auth(self) -> AuthData:
        with consistent_read(self._connection()) as connection:
            version = self.auth_version()
            callers = [
                caller_from_values(row)
                for row in connection.execute(
                    f"SELECT {', '.join(CALLER_COLUMNS)} FROM callers ORDER BY caller_id"
                )
            ]
            grants = [
                grant_from_json(caller_id, spec)
                for caller_id, spec in connection.execute(
                    "SELECT caller_id, spec FROM grants ORDER BY caller_id"
                )
            ]
            tokens = [
                token_from_values(row)
                for row in connection.execute(
                    f"SELECT {', '.join(TOKEN_COLUMNS)} FROM tokens ORDER BY created_at"
                )
            ]
        return AuthData(version, callers, grants, tokens)

    def put_caller(self, caller: Caller) -> int:
        marks = ", ".join("?" for _ in CALLER_COLUMNS)
        with self._transaction() as connection:
            connection.execute(
                f"INSERT OR REPLACE INTO callers ({', '.join(CALLER_COLUMNS)}) VALUES ({marks})",
                caller_values(caller),
            )
            return self._bump_auth(connection)

    def put_grant(self, grant: Grant) -> int:
        now = format_instant(dt.datetime.now(dt.UTC))
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO grants (caller_id, spec, updated_at) VALUES (?, ?, ?)",
                (grant.caller_id, grant_to_json(grant), now),
            )
            return self._bump_auth(connection)

    def delete_grant(self, caller_id: str) -> bool:
        with self._transaction() as connection:
            deleted = connection.execute("DELETE FROM grants WHERE caller_id = ?", (caller_id,)).rowcount
            self._bump_auth(connection)
            return bool(deleted)

    def put_first_caller(self, caller: Caller, token: TokenRecord) -> bool:
        with self._transaction() as connection:
            if connection.execute("SELECT 1 FROM callers LIMIT 1").fetchone() is not None:
                return False
            for table, columns, values in (
                ("callers", CALLER_COLUMNS, caller_values(caller)),
                ("tokens", TOKEN_COLUMNS, token_values(token)),
            ):
                marks = ", ".join("?" for _ in columns)
                connection.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)
            self._bump_auth(connection)
            return True

    def put_token(self, token: TokenRecord) -> int:
        marks = ", ".join("?" for _ in TOKEN_COLUMNS)
        with self._transaction() as connection:
            connection.execute(
                f"INSERT INTO tokens ({', '.join(TOKEN_COLUMNS)}) VALUES ({marks})", token_values(token)
            )
            return self._bump_auth(connection)

    def revoke_token(self, token_id: str, at: dt.datetime) -> TokenRecord:
        with self._transaction() as connection:
            row = connection.execute(
                f"SELECT {', '.join(TOKEN_COLUMNS)} FROM tokens WHERE token_id = ?", (token_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"no token {token_id!r}")
            token = token_from_values(row)
            if token.revoked_at is None:
                connection.execute(
                    "UPDATE tokens SET revoked_at = ? WHERE token_id = ?", (format_instant(at), token_id)
                )
                token = replace(token, revoked_at=at)
            self._bump_auth(connection)
            return token

    @staticmethod
    def _bump_auth(connection: sqlite3.Connection) -> int:
        row = connection.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'auth_version' RETURNING value"
        ).fetchone()
        return int(row[0])


class _DeferredIndexes:
    """A large import stops maintaining the secondary (not unique) indexes of entries and persons (keyed
    by subject and person: every insert lands on a random page) and builds them anew, by sorting, before it
    commits. All inside the import's transaction: readers keep the committed state, indexes included,
    and a rollback puts everything back."""

    def __init__(self, connection: sqlite3.Connection, *, after: int) -> None:
        self._connection = connection
        self._after = after
        self._rows = 0
        self._dropped: list[str] = []

    def count(self, rows: int) -> None:
        self._rows += rows
        if self._rows >= self._after and not self._dropped:
            indexes = self._connection.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                "AND sql NOT LIKE 'CREATE UNIQUE%' AND tbl_name IN ('entries', 'entry_persons') ORDER BY name"
            ).fetchall()
            for name, sql in indexes:
                self._connection.execute(f'DROP INDEX "{name}"')
                self._dropped.append(sql)

    def rebuild(self) -> None:
        if self._dropped:
            # Each sort takes as much memory as the page cache may: a small one holds the peak down (the
            # sorted runs go to temporary files and are merged from there).
            self._connection.execute(f"PRAGMA cache_size=-{_REBUILD_CACHE_KIB}")
        for sql in self._dropped:
            self._connection.execute(sql)
        self._dropped = []


@contextmanager
def _cache_of(connection: sqlite3.Connection, kib: int) -> Iterator[None]:
    """The connection's page cache at ``kib`` KiB for the block; back to the usual size after it."""
    connection.execute(f"PRAGMA cache_size=-{kib}")
    try:
        yield
    finally:
        connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        connection.execute("PRAGMA shrink_memory")


def _entry_id_of(entry: EncodedEntry) -> str:
    return str(entry[0][0])


def _same(stored: tuple[tuple[Any, ...], list[tuple[str, str, str]]], entry: EncodedEntry) -> bool:
    """Is the imported entry equal to the stored one (as entries: same values, persons in the same order)?

    Equal text is equal entries; text that differs may still be the same instants written another way,
    so only then are both sides decoded and compared as entries.
    """
    values, persons = stored
    new_values, new_persons, _ = entry
    if values == new_values and tuple(persons) == new_persons:
        return True
    return entry_from_values(values, persons) == entry_from_values(new_values, new_persons)
