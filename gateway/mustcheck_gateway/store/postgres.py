"""The shared store: one PostgreSQL database that several gateways may use at once (``--store postgresql://…``).

Same schema versions, same values and same semantics as :mod:`.sqlite`: every write is one transaction
that moves the data version once and appends the entry's new state to its history; reads of several
statements see one snapshot (``REPEATABLE READ``); an import is one transaction whose end ``keep()``
decides. Writers take turns on the data-version row (see :mod:`.postgres_connections`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace

import psycopg

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
from .bulk_lookup import lookups_from, subjects_to_read
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
from .import_tally import ImportTally, batches
from .postgres_connections import DEFAULT_MAX_CONNECTIONS, Connection, PostgresConnections
from .postgres_migrations import migrate


def _marks(columns: Sequence[str]) -> str:
    return ", ".join("%s" for _ in columns)


def _upsert(table: str, columns: Sequence[str], key: str) -> str:
    """Insert a row, or overwrite every column of the row with the same ``key``."""
    updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in columns if column != key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({_marks(columns)}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


_COLUMNS = ", ".join(ENTRY_COLUMNS)
# Each entry with its persons as one JSON array of [person_id, name, role]: one round trip per read.
_SELECT_ENTRIES = (
    f"SELECT {_COLUMNS}, (SELECT COALESCE(json_agg(json_build_array(p.person_id, p.name, p.role) "
    "ORDER BY p.role, p.person_id), '[]'::json) FROM entry_persons p WHERE p.entry_id = entries.entry_id) "
    "FROM entries"
)
_UPSERT_ENTRY = _upsert("entries", (*ENTRY_COLUMNS, "data_version"), "entry_id")
_INSERT_PERSON = "INSERT INTO entry_persons (entry_id, person_id, name, role) VALUES (%s, %s, %s, %s)"
_HISTORY = ", ".join(HISTORY_COLUMNS)
_INSERT_HISTORY = f"INSERT INTO entry_history ({_HISTORY}) VALUES ({_marks(HISTORY_COLUMNS)})"
_FEEDBACK = ", ".join(FEEDBACK_COLUMNS)
_CALLERS = ", ".join(CALLER_COLUMNS)
_TOKENS = ", ".join(TOKEN_COLUMNS)
_PAGE = 1000


class PostgresStore:
    """A :class:`~mustcheck_gateway.store.base.ListStore` on a PostgreSQL database (or schema: the
    connection's ``search_path`` decides where the tables live)."""

    def __init__(self, url: str, *, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        # The newest data version committed through this handle: with the change feed's polled version,
        # what a gateway knows without asking the database (``lookup_cache``).
        self.written_version = 0
        self._db = PostgresConnections(url, max_size=max_connections)
        try:
            self.migrate()
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    # -- schema ------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply pending migrations; return the schema version."""
        with self._db.unbounded() as connection:
            return migrate(connection)

    def schema_version(self) -> int:
        return self._scalar("SELECT MAX(version) FROM schema_migrations")

    # -- reads -------------------------------------------------------------------

    def _scalar(self, query: str, parameters: Sequence[object] = ()) -> int:
        with self._db.connection() as connection:
            return _scalar(connection, query, parameters)

    def data_version(self) -> int:
        return self._scalar("SELECT value FROM meta WHERE key = 'data_version'")

    def count_entries(self) -> int:
        return self._scalar("SELECT COUNT(*) FROM entries")

    def lookup(self, subject_code: str, *, person: bool) -> Lookup:
        with self._db.snapshot() as connection:
            version = _data_version(connection)
            return Lookup(
                data_version=version,
                own=_entries(connection, "WHERE subject_code = %s ORDER BY entry_id", (subject_code,)),
                linked=_entries_naming(connection, subject_code) if person else [],
                complete_since=_complete_since(connection, version),
            )

    def lookup_many(self, subjects: Sequence[tuple[str, bool]]) -> list[Lookup]:
        codes, persons = subjects_to_read(subjects)
        with self._db.snapshot() as connection:
            version = _data_version(connection)
            own = _entries(connection, "WHERE subject_code = ANY(%s) ORDER BY entry_id", (codes,))
            naming: list[tuple[str, ListEntry]] = []
            if persons:
                named: dict[str, set[str]] = {}  # entry id -> the persons asked about whom it names
                for entry_id, person_id in connection.execute(
                    "SELECT entry_id, person_id FROM entry_persons WHERE person_id = ANY(%s)", (persons,)
                ):
                    named.setdefault(entry_id, set()).add(person_id)
                if named:
                    for entry in _entries(
                        connection, "WHERE entry_id = ANY(%s) ORDER BY entry_id", (sorted(named),)
                    ):
                        naming += [(person_id, entry) for person_id in sorted(named[entry.entry_id])]
            return lookups_from(
                subjects,
                data_version=version,
                complete_since=_complete_since(connection, version),
                own=own,
                naming=naming,
            )

    def lookup_as_of(self, subject_code: str, *, person: bool, data_version: int) -> Lookup:
        """The subject's entries as they were at ``data_version``, rebuilt from their history."""
        with self._db.snapshot() as connection:
            latest = min(data_version, _data_version(connection))
            own = _entries_at(
                connection, "SELECT entry_id FROM entries WHERE subject_code = %s", (subject_code,), latest
            )
            linked = (
                _entries_at(
                    connection,
                    "SELECT entry_id FROM entry_persons WHERE person_id = %s",
                    (subject_code,),
                    latest,
                )
                if person
                else []
            )
            return Lookup(
                data_version=latest,
                own=own,
                linked=linked,
                complete_since=_complete_since(connection, latest),
            )

    def data_completeness(self, as_of_version: int | None = None) -> Completeness | None:
        with self._db.snapshot() as connection:
            version = _data_version(connection) if as_of_version is None else as_of_version
            return _completeness(connection, version)

    def set_data_complete_since(self, since: dt.datetime, *, actor: str, how: str, at: dt.datetime) -> int:
        with self._db.write() as connection:
            version = _bump(connection, "data_version")
            connection.execute(completeness.insert("%s"), completeness.values(version, since, actor, at, how))
            _record_changes(connection, version, [EVERYTHING])
        return self._committed(version)

    def data_version_at(self, instant: dt.datetime) -> int:
        """The data version in force at ``instant`` (the last change made at or before it)."""
        return self._scalar(
            "SELECT MAX(data_version) FROM entry_history WHERE changed_at <= %s", (format_instant(instant),)
        )

    def entries_for_subject(self, subject_code: str) -> list[ListEntry]:
        with self._db.connection() as connection:
            return _entries(connection, "WHERE subject_code = %s ORDER BY entry_id", (subject_code,))

    def entries_naming_person(self, person_id: str) -> list[ListEntry]:
        with self._db.connection() as connection:
            return _entries_naming(connection, person_id)

    def get_entry(self, entry_id: str) -> ListEntry:
        with self._db.connection() as connection:
            return _entry(connection, entry_id)

    def history(self, entry_id: str) -> list[HistoryRecord]:
        return self._history("WHERE entry_id = %s ORDER BY data_version", (entry_id,))

    def history_of_subject(self, subject_code: str) -> list[HistoryRecord]:
        """Every state of every entry of ``subject_code``, oldest first."""
        return self._history(
            "WHERE entry_id IN (SELECT entry_id FROM entries WHERE subject_code = %s) ORDER BY data_version",
            (subject_code,),
        )

    def _history(self, where: str, parameters: Sequence[object]) -> list[HistoryRecord]:
        with self._db.connection() as connection:
            rows = connection.execute(f"SELECT {_HISTORY} FROM entry_history {where}", parameters)
            return [history_from_values(row) for row in rows]

    def all_entries(self, *, list_kind: str | None = None) -> Iterator[ListEntry]:
        """Every entry (optionally of one list), in key order, read in pages (export streams this)."""
        after = ""
        kind_filter = " AND list_kind = %s" if list_kind else ""
        while True:
            with self._db.connection() as connection:
                page = _entries(
                    connection,
                    f"WHERE entry_id > %s{kind_filter} ORDER BY entry_id LIMIT {_PAGE}",
                    [after, *([list_kind] if list_kind else [])],
                )
            if not page:
                return
            yield from page
            after = page[-1].entry_id

    # -- writes ------------------------------------------------------------------

    def _committed(self, version: int) -> int:
        """Remember the newest data version this process has committed (see ``written_version``)."""
        self.written_version = max(self.written_version, version)
        return version

    def write_entries(self, entries: Iterable[ListEntry], *, actor: str, action: str) -> int:
        now = format_instant(dt.datetime.now(dt.UTC))
        with self._db.write() as connection:
            version = _write(connection, list(entries), action, actor, now)
        return self._committed(version)

    def replace_entry(self, entry: ListEntry, *, actor: str, action: str, at: dt.datetime) -> int:
        """Write one changed entry (its history keeps the previous state); returns the data version."""
        with self._db.write() as connection:
            version = _write(connection, [entry], action, actor, format_instant(at))
        return self._committed(version)

    def set_status(
        self, entry_id: str, status: EntryStatus, *, actor: str, action: str, at: dt.datetime
    ) -> int:
        with self._db.write() as connection:
            current = _entry(connection, entry_id)
            updated = replace(current, status=status, status_changed_at=at)
            version = _write(connection, [updated], action, actor, format_instant(at), stored=[current])
        return self._committed(version)

    def import_entries(
        self, entries: Iterable[EncodedEntry], *, actor: str, action: str, keep: Callable[[], bool]
    ) -> ImportOutcome:
        """One transaction, as in SQLite: batches of ``entries`` are compared with what is stored and
        only the changed ones written; ``keep()`` at the end commits or rolls everything back."""
        now = format_instant(dt.datetime.now(dt.UTC))
        tally = ImportTally()
        decoded = (entry_from_values(values, persons) for values, persons, _ in entries)
        with self._db.write() as connection:
            for batch in batches(decoded):
                stored = _entries(connection, "WHERE entry_id = ANY(%s)", ([e.entry_id for e in batch],))
                changed = tally.changes(batch, {entry.entry_id: entry for entry in stored})
                if not changed:
                    continue
                version = tally.take_version(lambda: _bump(connection, "data_version"))
                _put(connection, [entry for entry, _ in changed], version)
                history = [(entry, action if known else "import") for entry, known in changed]
                _record(connection, history, version, actor, now)
            if tally.version:  # a bulk change: caches drop everything rather than read a million codes
                _record_changes(connection, tally.version, [EVERYTHING])
            applied = keep()
            if not applied:
                raise psycopg.Rollback()
        if applied and tally.version:
            self._committed(tally.version)
        return tally.outcome(applied, self.data_version)

    # -- execution feedback ------------------------------------------------------------

    def get_feedback(self, caller_id: str, approval_id: str) -> Feedback | None:
        rows = self._feedback("WHERE caller_id = %s AND approval_id = %s", (caller_id, approval_id))
        return rows[0] if rows else None

    def add_feedback(self, feedback: Feedback) -> None:
        with self._db.write() as connection:
            connection.execute(
                f"INSERT INTO feedback ({_FEEDBACK}) VALUES ({_marks(FEEDBACK_COLUMNS)})",
                feedback_values(feedback),
            )

    def feedback_between(self, since: dt.datetime | None, until: dt.datetime | None) -> list[Feedback]:
        return self._feedback(
            "WHERE reported_at >= %s AND reported_at < %s ORDER BY reported_at",
            (format_instant(since) if since else "", format_instant(until) if until else "9999"),
        )

    def feedback_check_seqs(self) -> set[int]:
        with self._db.connection() as connection:
            return {int(seq) for (seq,) in connection.execute("SELECT check_seq FROM feedback")}

    def feedback_check_refs(self) -> set[tuple[str, int]]:
        with self._db.connection() as connection:
            rows = connection.execute("SELECT check_log, check_seq FROM feedback")
            return {(str(log_id), int(seq)) for log_id, seq in rows}

    def _feedback(self, where: str, parameters: Sequence[object]) -> list[Feedback]:
        with self._db.connection() as connection:
            rows = connection.execute(f"SELECT {_FEEDBACK} FROM feedback {where}", parameters)
            return [feedback_from_values(row) for row in rows]

    # -- the legacy code allow-list (R1), kept beside the policy file's ----------------

    def legacy_codes(self) -> dict[str, str]:
        with self._db.connection() as connection:
            rows = connection.execute("SELECT code, reason FROM legacy_codes ORDER BY code")
            return {code: reason for code, reason in rows}

    def allow_legacy_code(self, code: str, reason: str, *, actor: str, at: dt.datetime) -> int:
        with self._db.write() as connection:
            connection.execute(
                _upsert("legacy_codes", ("code", "reason", "added_by", "added_at"), "code"),
                (code, reason, actor, format_instant(at)),
            )
            version = _bump(connection, "data_version")
            _record_changes(connection, version, [code])
        return self._committed(version)

    def disallow_legacy_code(self, code: str, *, actor: str, at: dt.datetime) -> int | None:
        with self._db.write() as connection:
            deleted = connection.execute("DELETE FROM legacy_codes WHERE code = %s", (code,)).rowcount
            if not deleted:
                return None
            version = _bump(connection, "data_version")
            _record_changes(connection, version, [code])
        return self._committed(version)

    def publish_audit_head(self, head: AuditHead, proof: Sequence[bytes] = ()) -> None:
        with self._db.connection() as connection:
            row = connection.execute(audit_heads.select_one("%s") + " FOR UPDATE", (head.replica,)).fetchone()
            audit_heads.check_tree(None if row is None else audit_heads.head_from_values(row), head, proof)
            cursor = connection.execute(audit_heads.upsert("%s"), audit_heads.head_values(head))
            audit_heads.check_kept(head, cursor.rowcount)

    def audit_heads(self) -> list[AuditHead]:
        with self._db.connection() as connection:
            return [audit_heads.head_from_values(row) for row in connection.execute(audit_heads.SELECT)]

    def keep_policy_set(self, digest: str, body: str, *, served_by: str, at: dt.datetime) -> bool:
        with self._db.connection() as connection:
            cursor = connection.execute(
                kept_policies.insert("%s"), kept_policies.values(digest, body, served_by, at)
            )
            return bool(cursor.rowcount)

    def policy_set(self, digest: str) -> kept_policies.StoredPolicySet | None:
        with self._db.connection() as connection:
            row = connection.execute(kept_policies.select_one("%s"), (digest,)).fetchone()
        return None if row is None else kept_policies.from_values(row)

    def policy_sets(self) -> list[kept_policies.StoredPolicySet]:
        with self._db.connection() as connection:
            return [
                kept_policies.from_values(row) for row in connection.execute(kept_policies.SELECT_LISTING)
            ]

    # -- person lookups counted for the daily quotas, across every gateway of the deployment --------

    def take_person_lookup(self, caller_id: str, day: str, quota: int) -> bool:
        """Count one person lookup of ``caller_id`` on ``day`` if fewer than ``quota`` are counted (one
        statement: exact whatever the number of gateways counting at once)."""
        if quota <= 0:
            return False
        with self._db.connection() as connection:
            row = connection.execute(
                "INSERT INTO person_lookups (caller_id, day, used) VALUES (%s, %s, 1) "
                "ON CONFLICT (caller_id, day) DO UPDATE SET used = person_lookups.used + 1 "
                "WHERE person_lookups.used < %s RETURNING used",
                (caller_id, day, quota),
            ).fetchone()
        return row is not None

    def seed_person_lookups(self, caller_id: str, day: str, count: int) -> None:
        """Never fewer than ``count`` lookups counted for ``caller_id`` on ``day``."""
        with self._db.connection() as connection:
            connection.execute(
                "INSERT INTO person_lookups (caller_id, day, used) VALUES (%s, %s, %s) "
                "ON CONFLICT (caller_id, day) DO UPDATE "
                "SET used = GREATEST(person_lookups.used, excluded.used)",
                (caller_id, day, count),
            )

    def prune_person_lookups(self, before: str) -> int:
        """Delete the counts of days before ``before`` (ISO dates: they sort as text); how many rows."""
        with self._db.connection() as connection:
            return int(connection.execute("DELETE FROM person_lookups WHERE day < %s", (before,)).rowcount)

    def person_lookups(self, caller_id: str, day: str) -> int:
        with self._db.connection() as connection:
            row = connection.execute(
                "SELECT used FROM person_lookups WHERE caller_id = %s AND day = %s", (caller_id, day)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def subject_changes(self, after: int, *, limit: int = 1000) -> list[SubjectChange]:
        with self._db.connection() as connection:
            rows = connection.execute(select_changes("%s"), (after, limit))
            return group_changes((int(version), str(code)) for version, code in rows)

    # -- callers, grants, tokens -----------------------------------------------------

    def auth_version(self) -> int:
        return self._scalar("SELECT value FROM meta WHERE key = 'auth_version'")

    def load_auth(self) -> AuthData:
        with self._db.snapshot() as connection:
            version = _scalar(connection, "SELECT value FROM meta WHERE key = 'auth_version'")
            callers = connection.execute(f"SELECT {_CALLERS} FROM callers ORDER BY caller_id").fetchall()
            grants = connection.execute("SELECT caller_id, spec FROM grants ORDER BY caller_id").fetchall()
            tokens = connection.execute(f"SELECT {_TOKENS} FROM tokens ORDER BY created_at").fetchall()
        return AuthData(
            version,
            [caller_from_values(row) for row in callers],
            [grant_from_json(caller_id, spec) for caller_id, spec in grants],
            [token_from_values(row) for row in tokens],
        )

    def put_caller(self, caller: Caller) -> int:
        with self._db.write() as connection:
            connection.execute(_upsert("callers", CALLER_COLUMNS, "caller_id"), caller_values(caller))
            return _bump(connection, "auth_version")

    def put_grant(self, grant: Grant) -> int:
        now = format_instant(dt.datetime.now(dt.UTC))
        with self._db.write() as connection:
            connection.execute(
                _upsert("grants", ("caller_id", "spec", "updated_at"), "caller_id"),
                (grant.caller_id, grant_to_json(grant), now),
            )
            return _bump(connection, "auth_version")

    def delete_grant(self, caller_id: str) -> bool:
        with self._db.write() as connection:
            deleted = connection.execute("DELETE FROM grants WHERE caller_id = %s", (caller_id,)).rowcount
            _bump(connection, "auth_version")
            return bool(deleted)

    def put_first_caller(self, caller: Caller, token: TokenRecord) -> bool:
        with self._db.write() as connection:  # the writer lock: one bootstrap at a time
            if connection.execute("SELECT 1 FROM callers LIMIT 1").fetchone() is not None:
                return False
            connection.execute(
                f"INSERT INTO callers ({_CALLERS}) VALUES ({_marks(CALLER_COLUMNS)})",
                caller_values(caller),
            )
            connection.execute(
                f"INSERT INTO tokens ({_TOKENS}) VALUES ({_marks(TOKEN_COLUMNS)})", token_values(token)
            )
            _bump(connection, "auth_version")
            return True

    def put_token(self, token: TokenRecord) -> int:
        with self._db.write() as connection:
            connection.execute(
                f"INSERT INTO tokens ({_TOKENS}) VALUES ({_marks(TOKEN_COLUMNS)})", token_values(token)
            )
            return _bump(connection, "auth_version")

    def revoke_token(self, token_id: str, at: dt.datetime) -> TokenRecord:
        with self._db.write() as connection:
            row = connection.execute(
                f"SELECT {_TOKENS} FROM tokens WHERE token_id = %s", (token_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"no token {token_id!r}")
            token = token_from_values(row)
            if token.revoked_at is None:
                connection.execute(
                    "UPDATE tokens SET revoked_at = %s WHERE token_id = %s", (format_instant(at), token_id)
                )
                token = replace(token, revoked_at=at)
            _bump(connection, "auth_version")
            return token


# -- statements on a connection the caller holds ---------------------------------------


def _scalar(connection: Connection, query: str, parameters: Sequence[object] = ()) -> int:
    row = connection.execute(query, parameters).fetchone()
    return int(row[0] or 0) if row else 0


def _data_version(connection: Connection) -> int:
    return _scalar(connection, "SELECT value FROM meta WHERE key = 'data_version'")


def _entries(connection: Connection, where: str, parameters: Sequence[object]) -> list[ListEntry]:
    rows = connection.execute(f"{_SELECT_ENTRIES} {where}", parameters)
    return [entry_from_values(row[:-1], row[-1]) for row in rows]


def _entries_naming(connection: Connection, person_id: str) -> list[ListEntry]:
    return _entries(
        connection,
        "WHERE entry_id IN (SELECT entry_id FROM entry_persons WHERE person_id = %s) ORDER BY entry_id",
        (person_id,),
    )


def _entry(connection: Connection, entry_id: str) -> ListEntry:
    found = _entries(connection, "WHERE entry_id = %s", (entry_id,))
    if not found:
        raise EntryNotFound(f"no list entry {entry_id!r}")
    return found[0]


def _entries_at(
    connection: Connection, ids_query: str, parameters: Sequence[object], data_version: int
) -> list[ListEntry]:
    """The latest state at or before ``data_version`` of each entry ``ids_query`` names."""
    rows = connection.execute(
        "SELECT DISTINCT ON (entry_id) snapshot FROM entry_history "
        f"WHERE data_version <= %s AND entry_id IN ({ids_query}) ORDER BY entry_id, data_version DESC",
        (data_version, *parameters),
    )
    return [from_snapshot(text) for (text,) in rows]


def _bump(connection: Connection, key: str) -> int:
    """Move one of the versions in ``meta`` (the writer lock is already held)."""
    row = connection.execute(
        "UPDATE meta SET value = value + 1 WHERE key = %s RETURNING value", (key,)
    ).fetchone()
    if row is None:
        raise StoreError(f"store has no {key}; was it migrated?")
    return int(row[0])


def _write(
    connection: Connection,
    entries: Sequence[ListEntry],
    action: str,
    actor: str,
    at: str,
    *,
    stored: Sequence[ListEntry] | None = None,
) -> int:
    """One write: the data version moves once, the entries take their new state, their history grows,
    and the subjects their old and new states reach are recorded for the change stream (``stored``: the
    entries' states before, if the caller has just read them)."""
    if stored is None:
        stored = _entries(connection, "WHERE entry_id = ANY(%s)", ([entry.entry_id for entry in entries],))
    touched = touched_subjects(*entries, *stored)
    version = _bump(connection, "data_version")
    _put(connection, entries, version)
    _record(connection, [(entry, action) for entry in entries], version, actor, at)
    _record_changes(connection, version, touched)
    return version


def _completeness(connection: Connection, version: int) -> Completeness | None:
    return completeness.from_row(connection.execute(completeness.select_latest("%s"), (version,)).fetchone())


def _complete_since(connection: Connection, version: int) -> dt.datetime | None:
    found = _completeness(connection, version)
    return found.complete_since if found else None


def _record_changes(connection: Connection, version: int, subjects: Iterable[str]) -> None:
    with connection.cursor() as cursor:
        cursor.executemany(
            insert_change("%s"),
            [(version, subject) for subject in subjects],
        )


def _put(connection: Connection, entries: Sequence[ListEntry], version: int) -> None:
    """Write ``entries`` at ``version``, new or replacing what is stored, with their persons."""
    if not entries:
        return
    with connection.cursor() as cursor:
        ids = [entry.entry_id for entry in entries]
        cursor.execute("DELETE FROM entry_persons WHERE entry_id = ANY(%s)", (ids,))
        cursor.executemany(_UPSERT_ENTRY, [(*entry_values(entry), version) for entry in entries])
        cursor.executemany(
            _INSERT_PERSON,
            [(e.entry_id, p.person_id, p.name, p.role.value) for e in entries for p in e.responsible_persons],
        )


def _record(
    connection: Connection, changes: Sequence[tuple[ListEntry, str]], version: int, actor: str, at: str
) -> None:
    """Append each entry's new state to its history, with the action that made it."""
    with connection.cursor() as cursor:
        cursor.executemany(
            _INSERT_HISTORY,
            [(entry.entry_id, version, action, actor, at, snapshot(entry)) for entry, action in changes],
        )
