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
from ..audit import verify_data_dir
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
        return fail(f"backup failed: {error}", EXIT_FAILURE)
    print(
        f"backed up {options.data_dir} into {options.out}: databases {', '.join(report.databases)}, "
        f"{len(report.files)} other files, {report.journal_bytes:,} bytes of journal "
        f"({report.bytes:,} bytes in all)"
    )
    return EXIT_OK


def run_migrate(options: argparse.Namespace) -> int:
    from ..store.transfer import copy_sqlite_to_postgres  # needs the postgresql extra

    if not options.source.startswith(SQLITE_PREFIX):
        return fail(f"--from must be sqlite:PATH, got {options.source!r}", EXIT_INVALID)
    if not is_postgres_url(options.target):
        return fail(f"--to must be a postgresql:// URL, got {redacted(options.target)!r}", EXIT_INVALID)
    path = Path(options.source[len(SQLITE_PREFIX) :])
    store_file = path / DEFAULT_FILE_NAME if path.is_dir() else path
    if not store_file.is_file():
        return fail(f"no SQLite store at {store_file}", EXIT_INVALID)
    try:
        report = copy_sqlite_to_postgres(
            store_file,
            options.target,
            progress=lambda table, rows: print(f"copied {table}: {rows} rows", file=sys.stderr),
        )
    except StoreError as error:
        return fail(str(error), EXIT_FAILURE)
    print(f"copied into {redacted(options.target)}; counts and versions verified:")
    for table, rows in report.rows.items():
        print(f"  {table}: {rows}")
    for key, value in report.versions.items():
        print(f"  {key}: {value}")
    data_dir = store_file.parent
    audit_file = data_dir / AUDIT_FILE_NAME
    if not audit_file.is_file():
        print(f"no audit log in {data_dir}: nothing to verify")
        return EXIT_OK
    verdict = verify_data_dir(data_dir)
    if not verdict.ok:
        return fail(
            f"audit chain in {data_dir}: TAMPERED at seq {verdict.problem_seq}: {verdict.reason}",
            EXIT_FAILURE,
        )
    print(
        f"audit chain in {data_dir}: intact "
        f"({verdict.records_checked} records, {verdict.checkpoints_checked} checkpoints)"
    )
    return EXIT_OK
