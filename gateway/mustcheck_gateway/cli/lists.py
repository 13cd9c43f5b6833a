"""``mustcheck lists …``: import list files, change entries one by one, history, legacy codes, export.

All through the gateway's lists service (admin role): every change is audited and moves the data
version. Exit codes: 0 done, 2 invalid input (nothing applied), 3 gateway unavailable, 4 not allowed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

from mustcheck._generated.v1 import lists_pb2 as pb
from mustcheck._generated.v1 import lists_pb2_grpc as pb_grpc
from mustcheck.identifiers import normalise

from ..i18n import _
from .common import EXIT_INVALID, EXIT_OK, Subparsers, fail, print_json, shown_instant
from .dates import instant_help, instant_text
from .list_files import GBK, ListFileError, detect_encoding, guess_format, read_items, read_lines
from .numbers import finite
from .rpc import CallOptions, as_dict, stub_command, write_text_chunks

Handler = Callable[[argparse.Namespace, pb_grpc.ListsServiceStub, CallOptions], int]

CHUNK_ROWS = 2000
SHOWN_PROBLEMS = 20


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "lists",
        help=_("import and change red/black list entries (admin role)"),
        description=_(
            "List data: bulk import, one-by-one changes, objections (33号 §22), repair (33号 §21, "
            "NDRC order No. 36), revocation, history, the legacy code allow-list and export. Every change is "
            "audited."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    imports = _command(actions, "import", _("import a CSV or JSON Lines file"), _import)
    imports.add_argument("file", type=Path, metavar="FILE")
    imports.add_argument("--format", choices=["csv", "jsonl"], help=_("default: from the file name"))
    imports.add_argument("--source", default="", help=_("the supplier, for rows without a source column"))
    imports.add_argument(
        "--skip-invalid",
        action="store_true",
        help=_("apply the valid rows and write the bad ones to --rejects"),
    )
    imports.add_argument(
        "--rejects", type=Path, metavar="FILE", help=_("where --skip-invalid writes bad rows")
    )
    imports.add_argument(
        "--complete-since",
        type=instant_text,
        default="",
        metavar="DATE",
        help=instant_help(
            _(
                "the file is a complete snapshot of the list data since DATE: once applied, "
                "the store's data is complete since then (R6, green channel)"
            )
        ),
    )
    imports.add_argument(
        "--timeout",
        type=finite(0.0, 86_400.0, above_least=True),
        default=3600.0,
        metavar="SECONDS",
        help=_("deadline for the whole import (default 3600)"),
    )

    for name, handler, text in (("add", _add, "add one entry"), ("update", _update, "change one entry")):
        command = _command(actions, name, text + " (a row as JSON, or @FILE)", handler)
        command.add_argument("row", metavar="ROW_JSON|@FILE")

    objection = actions.add_parser(
        "objection",
        help=_("open or resolve an objection (33号 §22)"),
        description=_("Open or resolve an objection: while open, the measures are suspended (R4)."),
    )
    objection_actions = objection.add_subparsers(dest="objection_action", metavar="ACTION", required=True)
    opened = _command(objection_actions, "open", _("open an objection: measures suspended at once"), _open)
    _entry_arguments(opened)
    resolved = _command(objection_actions, "resolve", _("resolve an objection"), _resolve)
    _entry_arguments(resolved)
    outcome = resolved.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--upheld", action="store_true", help=_("the record stands: measures apply again"))
    outcome.add_argument(
        "--corrected", metavar="FIELDS_JSON", help=_("the record is corrected: these fields change")
    )
    outcome.add_argument("--revoked", action="store_true", help=_("the record was wrong: it is revoked"))

    repair = _command(
        actions, "repair", _("repair an entry (refused before the class's minimum period)"), _repair
    )
    _entry_arguments(repair)
    revoke = _command(actions, "revoke", _("revoke an entry"), _revoke)
    _entry_arguments(revoke)

    history = _command(actions, "history", _("every state a subject's entries have been in"), _history)
    history.add_argument("subject", metavar="SUBJECT")
    history.add_argument("--json", action="store_true")

    legacy = _command(
        actions, "allow-legacy", _("admit a pilot-era code that fails its checksum (R1)"), _legacy
    )
    legacy.add_argument("code", metavar="CODE")
    legacy.add_argument("--reason", required=True)
    withdraw = _command(
        actions, "disallow-legacy", _("withdraw a legacy code admitted with allow-legacy (R1)"), _disallow
    )
    withdraw.add_argument("code", metavar="CODE")
    withdraw.add_argument("--reason", required=True)

    complete = _command(
        actions,
        "data-complete-since",
        _("record (or, without DATE, show) since when the list data is complete (R6, green channel)"),
        _complete_since,
    )
    complete.add_argument(
        "date",
        nargs="?",
        type=instant_text,
        default="",
        metavar="DATE",
        help=instant_help("the day (or instant) the list data is complete since"),
    )
    complete.add_argument(
        "--reason", default="", help=_("why the data is complete since then (required with DATE)")
    )
    complete.add_argument("--json", action="store_true")

    export = _command(actions, "export", _("export the entries in force, persons masked"), _export)
    export.add_argument("--list", choices=["red", "black"])
    export.add_argument(
        "--as-of",
        type=instant_text,
        default="",
        metavar="DATE",
        help=instant_help("the entries in force at this day or instant"),
    )
    export.add_argument("--format", choices=["csv", "jsonl"], default="jsonl")
    export.add_argument("--out", type=Path, metavar="FILE", help=_("default: standard output"))


def _command(actions: Subparsers, name: str, text: str, handler: Handler) -> argparse.ArgumentParser:
    return stub_command(actions, name, text, pb_grpc.ListsServiceStub, handler)


def _entry_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("entry", nargs="?", default="", metavar="ENTRY_ID")
    parser.add_argument("--source", default="", help=_("with --document: the entry's key instead of its id"))
    parser.add_argument("--document", default="", help=_("decision document number"))
    parser.add_argument("--note", default="")


def _ref(options: argparse.Namespace) -> pb.EntryRef:
    return pb.EntryRef(entry_id=options.entry, source=options.source, decision_document=options.document)


def _print_change(change: pb.EntryChange) -> int:
    print(
        _("{entry}: {status} (data version {version})").format(
            entry=change.entry_id, status=change.status, version=change.data_version
        )
    )
    return EXIT_OK


# -- import ----------------------------------------------------------------------------------


def _import(options: argparse.Namespace, lists: pb_grpc.ListsServiceStub, call: CallOptions) -> int:
    if options.skip_invalid and options.rejects is None:
        return fail(_("--skip-invalid needs --rejects FILE for the rows it leaves out"), EXIT_INVALID)
    try:
        file_format = guess_format(options.file, options.format)
        encoding = detect_encoding(options.file)
    except (ListFileError, OSError) as error:
        return fail(f"{options.file}: {error}", EXIT_INVALID)
    if encoding == GBK:
        print(_("reading {file} as GBK (GB 18030)").format(file=options.file), file=sys.stderr)
    reader = _Chunks(options, file_format, encoding)
    try:
        report = lists.Import(reader.chunks(), timeout=options.timeout, metadata=call["metadata"])
    except grpc.RpcError:
        if reader.error is None:
            raise
    if reader.error is not None:
        return fail(
            _("{file}: {error}; nothing was applied").format(file=options.file, error=reader.error),
            EXIT_INVALID,
        )
    reader.finish_progress()
    if not report.applied:
        print(
            _("nothing applied: {rejected} of {rows} rows are bad").format(
                rejected=report.rejected, rows=report.rows
            ),
            file=sys.stderr,
        )
        for problem in report.problems[:SHOWN_PROBLEMS]:
            print(
                _("  line {line}: {reason}").format(line=problem.line, reason=problem.reason), file=sys.stderr
            )
        if report.rejected > SHOWN_PROBLEMS:
            print(_("  … and {count} more").format(count=report.rejected - SHOWN_PROBLEMS), file=sys.stderr)
        return EXIT_INVALID
    print(
        _(
            "imported {rows} rows: {inserted} new, {updated} updated, {unchanged} unchanged, "
            "{rejected} rejected; data version {version}"
        ).format(
            rows=report.rows,
            inserted=report.inserted,
            updated=report.updated,
            unchanged=report.unchanged,
            rejected=report.rejected,
            version=report.data_version,
        )
    )
    if report.rejected:
        _write_rejects(options.file, options.rejects, encoding, report.problems)
        print(
            _("the {count} rejected rows are in {path}").format(count=report.rejected, path=options.rejects),
            file=sys.stderr,
        )
    return EXIT_OK


class _Chunks:
    """The import stream: the header, then rows in chunks; a file-level problem stops it."""

    def __init__(self, options: argparse.Namespace, file_format: str, encoding: str) -> None:
        self.options = options
        self.file_format = file_format
        self.encoding = encoding
        self.error: str | None = None
        self.sent = 0
        self.progress = sys.stderr.isatty()

    def chunks(self) -> Iterator[pb.ImportChunk]:
        yield pb.ImportChunk(
            header=pb.ImportHeader(
                source=self.options.source or self.options.file.stem,
                skip_invalid=self.options.skip_invalid,
                file_name=self.options.file.name,
                complete_since=self.options.complete_since,
            )
        )
        try:
            yield from self._lines() if self.file_format == "jsonl" else self._items()
        except ListFileError as error:
            self.error = str(error)
            return  # the gateway sees too few rows or none: nothing is applied
        yield pb.ImportChunk(end=True)

    def _lines(self) -> Iterator[pb.ImportChunk]:
        for first_line, text in read_lines(self.options.file, self.encoding):
            lines = pb.JsonLines(first_line=first_line, text=text.encode())
            self._sent(text.count("\n") or 1)
            yield pb.ImportChunk(lines=lines)

    def _items(self) -> Iterator[pb.ImportChunk]:
        batch: list[str] = []
        for item in read_items(self.options.file, self.encoding):
            batch.append(json.dumps(item, ensure_ascii=False))
            if len(batch) >= CHUNK_ROWS:
                yield self._send(batch)
                batch = []
        if batch:
            yield self._send(batch)

    def _send(self, batch: list[str]) -> pb.ImportChunk:
        self._sent(len(batch))
        return pb.ImportChunk(rows=("\n".join(batch) + "\n").encode())

    def _sent(self, rows: int) -> None:
        self.sent += rows
        if self.progress:
            print(f"\r{self.sent:,} rows sent", end="", file=sys.stderr, flush=True)

    def finish_progress(self) -> None:
        if self.progress:
            print(file=sys.stderr)


def _write_rejects(source: Path, target: Path, encoding: str, problems: Any) -> None:
    wanted = {problem.line: problem.reason for problem in problems}
    with source.open("r", encoding=encoding, newline="") as lines, target.open("w", encoding="utf-8") as out:
        for number, text in enumerate(lines, start=1):
            if number in wanted:
                out.write(
                    json.dumps(
                        {"line": number, "reason": wanted[number], "text": text.rstrip("\r\n")},
                        ensure_ascii=False,
                    )
                    + "\n"
                )


# -- one by one --------------------------------------------------------------------------------


def _row_text(argument: str) -> str:
    return Path(argument[1:]).read_text(encoding="utf-8") if argument.startswith("@") else argument


def _add(options: argparse.Namespace, lists: pb_grpc.ListsServiceStub, call: CallOptions) -> int:
    return _print_change(lists.AddEntry(pb.EntryRow(row_json=_row_text(options.row)), **call))


def _update(options: argparse.Namespace, lists: pb_grpc.ListsServiceStub, call: CallOptions) -> int:
    return _print_change(lists.UpdateEntry(pb.EntryRow(row_json=_row_text(options.row)), **call))


def _open(options: argparse.Namespace, lists: pb_grpc.ListsServiceStub, call: CallOptions) -> int:
    return _print_change(lists.OpenObjection(pb.EntryAction(entry=_ref(options), note=options.note), **call))


def _resolve(options: argparse.Namespace, lists: pb_grpc.ListsServiceStub, call: CallOptions) -> int:
    resolution = "upheld" if options.upheld else "revoked" if options.revoked else "corrected"
    request = pb.ObjectionResolution(
        entry=_ref(options), resolution=resolution, corrected_json=options.corrected or "", note=options.note
    )
    return _print_change(lists.ResolveObjection(request, **call))


def _repair(options: argparse.Namespace, lists: pb_grpc.ListsServiceStub, call: CallOptions) -> int:
    return _print_change(lists.Repair(pb.EntryAction(entry=_ref(options), note=options.note), **call))


def _revoke(options: argparse.Namespace, lists: pb_grpc.ListsServiceStub, call: CallOptions) -> int:
    return _print_change(lists.Revoke(pb.EntryAction(entry=_ref(options), note=options.note), **call))


def _history(options: argparse.Namespace, lists: pb_grpc.ListsServiceStub, call: CallOptions) -> int:
    response = lists.History(pb.SubjectRef(subject=normalise(options.subject)), **call)
    if options.json:
        print_json([as_dict(item) for item in response.items])
        return EXIT_OK
    if not response.items:
        print(_("no entries"))
    for item in response.items:
        print(
            f"v{item.data_version:<8} {shown_instant(item.changed_at)}  {item.entry_id}  "
            f"{item.memorandum:32} {item.status:16} {item.action} by {item.actor}"
        )
    return EXIT_OK


def _legacy(options: argparse.Namespace, lists: pb_grpc.ListsServiceStub, call: CallOptions) -> int:
    response = lists.AllowLegacy(pb.LegacyCode(code=normalise(options.code), reason=options.reason), **call)
    if not response.changed:
        print(_("{code} was already admitted as a legacy code: nothing changed").format(code=response.code))
        return EXIT_OK
    print(
        _("{code} admitted as a legacy code (data version {version})").format(
            code=response.code, version=response.data_version
        )
    )
    return EXIT_OK


def _disallow(options: argparse.Namespace, lists: pb_grpc.ListsServiceStub, call: CallOptions) -> int:
    response = lists.DisallowLegacy(
        pb.LegacyCode(code=normalise(options.code), reason=options.reason), **call
    )
    if not response.changed:
        print(_("{code} was not admitted by allow-legacy: nothing changed").format(code=response.code))
        return EXIT_OK
    print(
        _("{code} withdrawn from the legacy codes (data version {version})").format(
            code=response.code, version=response.data_version
        )
    )
    return EXIT_OK


def _complete_since(options: argparse.Namespace, lists: pb_grpc.ListsServiceStub, call: CallOptions) -> int:
    if options.date and not options.reason.strip():
        return fail(_("say why the list data is complete since then (--reason)"), EXIT_INVALID)
    response = lists.SetDataCompleteness(
        pb.DataCompleteness(complete_since=options.date, reason=options.reason), **call
    )
    if options.json:
        print_json(as_dict(response))
    elif not response.complete_since:
        print(_("the store attests no complete list data: nobody is green-channel eligible (R6)"))
    else:
        print(
            _("list data complete since {since} (set by {actor} at {at}; data version {version})").format(
                since=shown_instant(response.complete_since),
                actor=response.set_by,
                at=shown_instant(response.set_at),
                version=response.data_version,
            )
        )
    return EXIT_OK


def _export(options: argparse.Namespace, lists: pb_grpc.ListsServiceStub, call: CallOptions) -> int:
    request = pb.ExportListsRequest(list=options.list or "", as_of=options.as_of, format=options.format)
    write_text_chunks(lists.Export(request, **call), options.out)
    return EXIT_OK
