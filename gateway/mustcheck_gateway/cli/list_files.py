"""Reading list files for import: CSV or JSON Lines, UTF-8 or GBK, streamed.

A JSON Lines file goes as it is, in runs of whole lines (the gateway parses them). A CSV file's rows
come out one by one with their line numbers. Problems that make the whole file unusable (an empty
file, an unknown encoding, missing columns, a CSV file's last line cut short) raise
:class:`ListFileError`; a CSV row that cannot be read becomes an item carrying an ``error`` for the
gateway to report with the others.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..list_rows import ROW_FIELDS, TRUNCATED

REQUIRED = tuple(
    f
    for f in ROW_FIELDS
    if f not in ("status", "status_changed", "responsible_persons", "reason", "subject_name", "source")
)
SNIFF_BYTES = 1 << 20
GBK = "gb18030"  # a superset of GBK and GB 2312: every GBK file reads correctly
RUN_CHARS = 1 << 20  # a JSON Lines file goes to the gateway in runs of about a megabyte of text


class ListFileError(Exception):
    """The file cannot be imported at all; the message says why."""


def detect_encoding(path: Path) -> str:
    """``utf-8-sig`` or GB 18030, judged from the first megabyte; anything else is refused."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head.strip():
        raise ListFileError(f"{path} is empty")
    cut = head if len(head) < SNIFF_BYTES else head[: head.rfind(b"\n") + 1] or head
    for encoding in ("utf-8-sig", GBK):
        try:
            codecs.decode(cut, encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    raise ListFileError(f"{path} is neither UTF-8 nor GBK text; convert it to UTF-8")


def guess_format(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".txt"):
        return "csv"
    raise ListFileError(f"cannot tell the format of {path.name}: give --format csv or jsonl")


def read_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """A JSON Lines file in runs of whole lines as read (line breaks kept), each with the number of its
    first line. The gateway parses them: a bad line is reported with the others, a last line cut short
    (or a file without any JSON row) stops the import."""
    with path.open("r", encoding=encoding, errors="strict", newline="") as handle:
        number = 1
        try:
            while lines := handle.readlines(RUN_CHARS):
                yield number, "".join(lines)
                number += len(lines)
        except UnicodeDecodeError as error:
            raise _not_text(path, encoding, error) from None


def read_items(path: Path, encoding: str) -> Iterator[dict[str, Any]]:
    """A CSV file's rows as ``{"line": N, "row": {...}}`` items (``"row": None, "error": "..."`` for a row
    that cannot be read)."""
    with path.open("rb") as raw:
        raw.seek(0, 2)
        size = raw.tell()
        raw.seek(max(0, size - 1))
        ends_with_newline = raw.read(1) in (b"\n", b"\r")
    with path.open("r", encoding=encoding, errors="strict", newline="") as handle:
        try:
            yield from _csv(handle, ends_with_newline)
        except UnicodeDecodeError as error:
            raise _not_text(path, encoding, error) from None


def _not_text(path: Path, encoding: str, error: UnicodeDecodeError) -> ListFileError:
    return ListFileError(f"{path} is not valid {encoding} text past its start ({error.reason})")


def _csv(handle: io.TextIOBase, ends_with_newline: bool) -> Iterator[dict[str, Any]]:
    reader = csv.reader(handle)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise ListFileError("the file is empty") from None
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise ListFileError(f"missing column(s): {', '.join(missing)} (the header has: {', '.join(header)})")
    unknown = [name for name in header if name not in ROW_FIELDS]
    if unknown:
        raise ListFileError(f"unknown column(s): {', '.join(unknown)}; known: {', '.join(ROW_FIELDS)}")
    rows = 0
    lines = ((reader.line_num, fields) for fields in reader)
    current = next(lines, None)
    while current is not None:
        number, fields = current
        current = next(lines, None)
        if not any(field.strip() for field in fields):
            continue
        rows += 1
        if len(fields) != len(header):
            if len(fields) < len(header) and current is None and not ends_with_newline:
                raise ListFileError(TRUNCATED.format(number))
            yield {
                "line": number,
                "row": None,
                "error": f"has {len(fields)} fields, the header has {len(header)}",
            }
            continue
        row: dict[str, Any] = {name: value.strip() for name, value in zip(header, fields, strict=True)}
        # A last line without its newline may have been cut inside its last field: if the gateway finds
        # it invalid, the whole file is taken as truncated.
        unterminated = {"unterminated": True} if current is None and not ends_with_newline else {}
        if "responsible_persons" in row:
            try:
                row["responsible_persons"] = _persons(row["responsible_persons"])
            except ValueError as error:
                yield {"line": number, "row": None, "error": f"responsible_persons: {error}", **unterminated}
                continue
        yield {"line": number, "row": row, **unterminated}
    if rows == 0:
        raise ListFileError("the file holds no rows")


def _persons(cell: str) -> list[dict[str, str]]:
    """``id|name|role;id|name|role`` (roles: legal_representative, principal, directly_responsible)."""
    persons = []
    for part in filter(None, (piece.strip() for piece in cell.split(";"))):
        pieces = [piece.strip() for piece in part.split("|")]
        if len(pieces) != 3:
            raise ValueError(f"{part!r} is not id|name|role")
        persons.append({"id": pieces[0], "name": pieces[1], "role": pieces[2]})
    return persons
