"""The Merkle-tree side of ``mustcheck audit``: the heads an auditor holds, the verification state kept
between runs, and ``audit prove SEQ`` (an inclusion proof for one record)."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mustcheck.merkle import verify_inclusion
from mustcheck.receipts import InvalidReceipt, load_public_keys, verify_receipt
from mustcheck.tree_head import TreeHead

from ..audit import DEFAULT_FILE_NAME, KEYS_DIR_NAME
from ..audit.errors import AuditIntegrityError
from ..audit.journal import journal_path_for, read_journal
from ..audit.sqlite_log import connect_read_only, iter_rows
from ..audit.tree import latest_head, record_leaf, stored_tree
from ..audit.verify import TreeState
from ..bounds import TEXT_LIMITS
from ..i18n import _
from ..store.urls import redacted
from .common import EXIT_INVALID, EXIT_OK, fail, print_json
from .numbers import MOST_SEQ, whole

# How long ``prove`` waits for a running gateway to index a record it holds in its journal.
INDEX_WAIT_S = 2.0


def add_verify_options(verify: argparse.ArgumentParser) -> None:
    verify.add_argument(
        "--receipts",
        type=Path,
        metavar="FILE",
        help=_(
            "receipts an auditor holds, one per line; the log must still hold every "
            "record their signed tree heads cover (records cut from the end are reported)"
        ),
    )
    verify.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help=_(
            "the auditor's verification state (one line per log): verify each log incrementally from "
            "the head it names and write the new ones there when the logs verify"
        ),
    )
    verify.add_argument("--full", action="store_true", help=_("with --state: verify the whole log again"))


MOST_RECEIPT_CHARACTERS = TEXT_LIMITS["receipt"]  # the gateway's own bound on a receipt it is sent


def receipt_heads(path: Path, public_keys_dir: Path) -> list[tuple[TreeHead, str]]:
    """The signed tree heads of the receipts in ``path`` (``ValueError`` names the file and the line that
    cannot be read or is not a genuine receipt)."""
    keys = load_public_keys(public_keys_dir)
    heads: list[tuple[TreeHead, str]] = []
    for number, line in _receipt_lines(path):
        try:
            receipt = verify_receipt(line, keys)
        except InvalidReceipt as error:
            raise ValueError(f"{path.name} line {number}: not a genuine receipt: {error.message}") from None
        if receipt.tree_head is not None:
            heads.append(
                (receipt.tree_head, f"receipt on line {number} of {path.name}, record {receipt.audit_seq}")
            )
    return heads


def _receipt_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The non-blank lines of a receipts file, numbered, each read no further than a receipt's bound (a
    file of one endless line is refused at the bound, not read into memory)."""
    try:
        with path.open("rb") as lines:
            number = 0
            while line := lines.readline(MOST_RECEIPT_CHARACTERS + 2):
                number += 1
                try:
                    text = line.decode("utf-8").strip()
                except UnicodeDecodeError:
                    raise ValueError(
                        _(
                            "{name} line {number}: not UTF-8 text (a receipts file holds one receipt a line)"
                        ).format(name=path.name, number=number)
                    ) from None
                if len(text) > MOST_RECEIPT_CHARACTERS:
                    raise ValueError(
                        _("{name} line {number}: over {most:,} characters, longer than any receipt").format(
                            name=path.name, number=number, most=MOST_RECEIPT_CHARACTERS
                        )
                    )
                if text:
                    yield number, text
    except OSError as error:
        raise ValueError(
            _("cannot read the receipts file {path}: {reason}").format(path=path, reason=error.strerror)
        ) from None


def published_tree_head(text: str) -> tuple[TreeHead, str]:
    """The tree head a gateway published to the shared store (``ValueError`` if unreadable)."""
    return TreeHead.from_json(text), "the tree head published to the store"


def read_states(options: argparse.Namespace) -> dict[str, TreeState]:
    """The auditor's verification states, by log id (one line each; none with ``--full`` or no file)."""
    path: Path | None = options.state
    if path is None or options.full or not path.exists():
        return {}
    states: dict[str, TreeState] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            state = TreeState.from_json(line)
        except ValueError as error:
            raise ValueError(f"{path.name} line {number}: {error}") from None
        states[state.log_id] = state
    return states


def read_state(options: argparse.Namespace, log_id: str | None = None) -> TreeState | None:
    """The state of the one log of a data directory (``log_id``, its replica id, where known)."""
    states = read_states(options)
    if log_id is not None and log_id in states:
        return states[log_id]
    return next(iter(states.values())) if len(states) == 1 else None


def write_state(path: Path | None, state: TreeState | None) -> None:
    write_states(path, [] if state is None else [state])


def write_states(path: Path | None, states: Sequence[TreeState]) -> None:
    """Keep ``states`` (one line per log) in ``path``, replacing what it held, atomically."""
    if path is None or not states:
        return
    partial = path.with_name(path.name + ".tmp")
    partial.write_text("".join(state.to_json() + "\n" for state in states), encoding="utf-8")
    os.replace(partial, path)


# -- prove -------------------------------------------------------------------------------------


def register_prove(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prove = actions.add_parser(
        "prove",
        help=_("print an inclusion proof for one record (offline)"),
        description=_(
            "Prove that record SEQ is in the log: its leaf, the inclusion proof in the tree of the "
            "newest signed tree head, and that head. Runs offline on a (copy of a) data directory."
        ),
    )
    prove.add_argument("seq", type=whole(1, MOST_SEQ), metavar="SEQ")
    where = prove.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", type=Path, metavar="DIR")
    where.add_argument(
        "--store",
        metavar="postgresql://…",
        help=_("the PostgreSQL database that holds the deployment's audit logs (with --log)"),
    )
    prove.add_argument(
        "--log", metavar="LOG_ID", help=_("with --store: the log (replica id) the record is in")
    )
    prove.add_argument("--json", action="store_true")
    prove.set_defaults(run=run_prove)


def _open_log(options: argparse.Namespace) -> Any:
    """A read connection on the log to prove from: the data directory's file, or one log in PostgreSQL."""
    if options.store is not None:
        if not options.log:
            raise ValueError(_("--store needs --log LOG_ID (each record names its log: see audit query)"))
        import psycopg

        from ..audit.postgres_schema import LogConnection, bind_log

        try:
            connection = psycopg.connect(options.store, autocommit=True, connect_timeout=10)
            bind_log(connection, options.log)
        except psycopg.Error as error:
            raise ValueError(str(error)) from None
        return LogConnection(connection)
    return connect_read_only(options.data_dir / DEFAULT_FILE_NAME)


def _journaled(options: argparse.Namespace) -> bool:
    """Whether record SEQ is in the data directory's journal: durable, answered, not yet indexed (the
    running gateway copies it into the database, under a new signed tree head, within moments)."""
    if options.store is not None:
        return False  # the PostgreSQL log commits records and their tree head together: no journal
    try:
        journal = read_journal(journal_path_for(options.data_dir / DEFAULT_FILE_NAME))
    except (OSError, AuditIntegrityError):
        return False
    return any(int(row[0]) == options.seq for row in journal.rows)


def _covering_head(options: argparse.Namespace, connection: Any) -> tuple[TreeHead | None, bool]:
    """The newest tree head, and whether it covers record SEQ. A record still in the journal of a
    running gateway is waited for, a short while, until the gateway has indexed it."""
    deadline = time.monotonic() + INDEX_WAIT_S
    while True:
        head = latest_head(connection)
        covered = head is not None and 1 <= options.seq <= head.size
        if covered or time.monotonic() >= deadline or not _journaled(options):
            return head, covered
        time.sleep(0.05)


def _not_covered(options: argparse.Namespace, head: TreeHead) -> int:
    if options.seq >= 1 and _journaled(options):
        return fail(
            _(
                "record {seq} is not covered by the newest tree head (size {size}) yet: it is durable in "
                "the journal, but its gateway has not indexed it under a signed tree head; retry in a moment"
            ).format(seq=options.seq, size=head.size),
            EXIT_INVALID,
        )
    return fail(
        _("record {seq} is not covered by the newest tree head (size {size})").format(
            seq=options.seq, size=head.size
        ),
        EXIT_INVALID,
    )


def run_prove(options: argparse.Namespace) -> int:
    where = redacted(options.store) if options.store is not None else options.data_dir / DEFAULT_FILE_NAME
    try:
        connection = _open_log(options)
    except (OSError, ValueError) as error:
        return fail(_("no audit log at {path}: {error}").format(path=where, error=error), EXIT_INVALID)
    try:
        head, covered = _covering_head(options, connection)
        if head is None:
            return fail(_("the log has no signed tree head yet: start its gateway once"), EXIT_INVALID)
        if not covered:
            return _not_covered(options, head)
        rows = list(iter_rows(connection, after_seq=options.seq - 1, until_seq=options.seq))
        if not rows:
            return fail(_("record {seq} is not in the log (pruned?)").format(seq=options.seq), EXIT_INVALID)
        hasher = head.hasher  # the head names its suite's tree hash (SHA-256 or SM3)
        leaf = record_leaf(hasher, rows[0])
        proof = stored_tree(connection, hasher).inclusion(options.seq - 1, head.size)
    finally:
        connection.close()
    proven = verify_inclusion(hasher, options.seq - 1, head.size, leaf, proof, head.root)
    if options.json:
        print_json(
            {
                "seq": options.seq,
                "leaf_index": options.seq - 1,
                "leaf_hash": leaf.hex(),
                "proof": [node.hex() for node in proof],
                "tree_head": head.to_json(),
                "proven": proven,
            }
        )
    else:
        print(
            _("record {seq}: leaf {leaf}, leaf hash {hash}").format(
                seq=options.seq, leaf=options.seq - 1, hash=leaf.hex()
            )
        )
        print(_("tree head: {head}").format(head=head.to_json()))
        for node in proof:
            print(f"  {node.hex()}")
        print(
            _("proven: the proof leads to the signed root")
            if proven
            else _("NOT PROVEN: the stored tree is altered")
        )
    return EXIT_OK if proven else 1


def default_public_keys(options: argparse.Namespace) -> Path:
    return Path(options.public_keys or options.data_dir / KEYS_DIR_NAME / "public")
