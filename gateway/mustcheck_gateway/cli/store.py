"""``mustcheck store migrate --from sqlite:PATH --to postgresql://…``: move a store to PostgreSQL.

Copies every table in one transaction, checks the counts and versions before committing, then
verifies the audit chain of the data directory, which the gateways keep using beside the new store
(each gateway keeps its own audit log: see docs/scaling.md).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from ..audit import DEFAULT_FILE_NAME as AUDIT_FILE_NAME
from ..audit import AuditError, verify_data_dir
from ..backup import BackupError, backup_data_dir
from ..i18n import _
from ..store import DEFAULT_FILE_NAME, StoreError, is_postgres_url, redacted
from .common import EXIT_FAILURE, EXIT_INVALID, EXIT_OK, Subparsers, fail

SQLITE_PREFIX = "sqlite:"


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "store",
        help=_("move the store between backends; back up a data directory"),
        description=_("Manage the store behind the gateway."),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    migrate = actions.add_parser(
        "migrate",
        help=_("copy a SQLite store into an empty PostgreSQL database and verify it"),
        description=_(
            "Copy everything in a SQLite store (lists, history, callers, grants, tokens, "
            "feedback, legacy codes, change records, versions) into an empty PostgreSQL database in one "
            "transaction, compare every table's count and the versions before committing, then verify the "
            "audit chain of the data directory. Stop the gateway first."
        ),
    )
    migrate.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="sqlite:PATH",
        help=_("the data directory or store file"),
    )
    migrate.add_argument(
        "--to", dest="target", required=True, metavar="postgresql://…", help=_("an empty database")
    )
    migrate.add_argument(
        "--audit-only",
        action="store_true",
        help=_(
            "move only the data directory's audit log into the database (whose store is already there): "
            "one replica's log at a time, receipts issued before still prove against it"
        ),
    )
    migrate.set_defaults(run=run_migrate)
    backup = actions.add_parser(
        "backup",
        help=_("copy a data directory, online, into a new folder that restores to a working gateway"),
        description=_(
            "Copy a data directory while its gateway runs: the store, keys, heads and tokens "
            "first, then the audit journal's whole frames, then the audit index (SQLite's online backup), so "
            "that the copy holds every record its heads cover. Restore by copying the folder back in place "
            "of the data directory with the gateway stopped (docs/operations.md). A PostgreSQL store is "
            "dumped with pg_dump before this command runs."
        ),
    )
    backup.add_argument("--data-dir", type=Path, required=True, metavar="DIR", help=_("the data directory"))
    backup.add_argument("--out", type=Path, required=True, metavar="DIR", help=_("a new (or empty) folder"))
    backup.set_defaults(run=run_backup)


def run_backup(options: argparse.Namespace) -> int:
    try:
        report = backup_data_dir(options.data_dir, options.out)
    except (BackupError, OSError, sqlite3.Error) as error:
        return fail(_("backup failed: {error}").format(error=error), EXIT_FAILURE)
    print(
        _(
            "backed up {source} into {out}: databases {databases}, {files} other files, {journal} bytes "
            "of journal ({total} bytes in all)"
        ).format(
            source=options.data_dir,
            out=options.out,
            databases=", ".join(report.databases),
            files=len(report.files),
            journal=f"{report.journal_bytes:,}",
            total=f"{report.bytes:,}",
        )
    )
    return EXIT_OK


def run_migrate(options: argparse.Namespace) -> int:
    from ..store.transfer import copy_sqlite_to_postgres  # needs the postgresql extra

    if not options.source.startswith(SQLITE_PREFIX):
        return fail(_("--from must be sqlite:PATH, got {value!r}").format(value=options.source), EXIT_INVALID)
    if not is_postgres_url(options.target):
        return fail(
            _("--to must be a postgresql:// URL, got {value!r}").format(value=redacted(options.target)),
            EXIT_INVALID,
        )
    path = Path(options.source[len(SQLITE_PREFIX) :])
    store_file = path / DEFAULT_FILE_NAME if path.is_dir() else path
    if options.audit_only:
        return _move_audit(path if path.is_dir() else path.parent, options.target)
    if not store_file.is_file():
        return fail(_("no SQLite store at {path}").format(path=store_file), EXIT_INVALID)
    # The audit log is checked before anything moves: a tampered log stops the migration untouched.
    audit_file = store_file.parent / AUDIT_FILE_NAME
    if audit_file.is_file():
        verdict = verify_data_dir(store_file.parent)
        if not verdict.ok:
            return fail(
                _("audit chain in {directory}: TAMPERED at seq {seq}: {reason}").format(
                    directory=store_file.parent, seq=verdict.problem_seq, reason=verdict.reason
                ),
                EXIT_FAILURE,
            )
    try:
        report = copy_sqlite_to_postgres(
            store_file,
            options.target,
            progress=lambda table, rows: print(
                _("copied {table}: {rows} rows").format(table=table, rows=rows), file=sys.stderr
            ),
        )
    except StoreError as error:
        return fail(str(error), EXIT_FAILURE)
    print(_("copied into {target}; counts and versions verified:").format(target=redacted(options.target)))
    for table, rows in report.rows.items():
        print(f"  {table}: {rows}")
    for key, value in report.versions.items():
        print(f"  {key}: {value}")
    if not audit_file.is_file():
        print(_("no audit log in {directory}: nothing to move").format(directory=store_file.parent))
        return EXIT_OK
    return _move_audit(store_file.parent, options.target)


def _move_audit(data_dir: Path, target: str) -> int:
    """Move the data directory's audit log into PostgreSQL (audit/postgres_migrate.py) and say so."""
    from ..audit.postgres_migrate import move_audit_log

    try:
        moved = move_audit_log(
            data_dir,
            target,
            progress=lambda table, rows: print(
                _("copied {table}: {rows} rows").format(table=table, rows=rows), file=sys.stderr
            ),
        )
    except AuditError as error:
        return fail(str(error), EXIT_FAILURE)
    except Exception as error:  # psycopg's errors: the database cannot be reached or written
        return fail(_("the audit log was not moved: {error}").format(error=error), EXIT_FAILURE)
    print(
        _(
            "audit log {log} moved into {target} and verified there, intact ({records} records, "
            "{checkpoints} checkpoints, {heads} tree heads); receipts issued before prove against it"
        ).format(
            log=moved.log_id,
            target=redacted(target),
            records=moved.records,
            checkpoints=moved.checkpoints,
            heads=moved.tree_heads,
        )
    )
    return EXIT_OK
