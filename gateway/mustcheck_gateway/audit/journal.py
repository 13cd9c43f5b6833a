"""The write-ahead journal: what makes a record durable before the gateway answers.

Each group of records is appended to ``audit.journal`` as ONE frame and ``fdatasync``-ed: one write
and one sync per group, whatever its size. The SQLite database is the index that queries and
verification read; the writer copies journal records into it in larger transactions, and empties
the journal once everything in it is committed there. On open, whatever the journal holds beyond
the database's last record is copied in first (a crash in between).

A frame is ``MAGIC`` (4 bytes), the payload's length and its CRC-32 (4 bytes each, big-endian),
then the payload: one JSON line per record (``{"r": [...]}``) or checkpoint (``{"c": [...]}``).
The magic's first byte (0xFF) never occurs in UTF-8 text and JSON text holds no zero byte, so:

* a frame cut short by a crash or a full disk during its write (the sync never returned, so
  nothing in it was acknowledged) still has zeros in it: it is a **torn tail**, reported by
  :func:`read_journal` and cut off when the writer next starts, which logs an audit record saying so;
* a complete frame whose checksum does not match, anything else where a frame should start, or an
  intact frame right after a torn one, is damage nobody's crash explains: :class:`AuditIntegrityError`.

The file is preallocated with zeros (``GROW_BYTES`` at a time) and written in place, so that a sync
writes data only, not the file's size as well (on ext4 that halves the cost of the sync that each
group of records waits for). Beyond the last frame the file holds only zeros: reading stops at the
first zero byte where a frame would start, and emptying the journal zeroes what was written. A write
that fails (a full disk) is zeroed again at once, so the next frame starts on zeros.

A journal written by an earlier version (bare JSON lines, no frames) is still read.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint import Checkpoint
from .errors import AuditIntegrityError

JOURNAL_SUFFIX = ".journal"
GROW_BYTES = 1 << 20
MAGIC = b"\xffMJ\x01"
_HEADER = struct.Struct(">4sII")  # magic, payload length, CRC-32 of the payload


def journal_path_for(db_path: Path) -> Path:
    return db_path.with_suffix(JOURNAL_SUFFIX)


@dataclass(frozen=True, slots=True)
class TornTail:
    """An unfinished frame at the end of the journal: where it starts and how many bytes it spans."""

    offset: int
    length: int

    def describe(self) -> str:
        return f"an unfinished write of {self.length} bytes at offset {self.offset}"


@dataclass(frozen=True, slots=True)
class JournalContents:
    rows: list[tuple[Any, ...]]
    checkpoints: list[tuple[Any, ...]]
    torn: TornTail | None = None
    end: int = 0  # where the intact frames end (the next frame is written here)
    legacy: bool = field(default=False)
    # Records of whole frames found beyond the zero byte where reading stopped. A crash while the journal
    # was being emptied leaves only records the database already holds there; any other record there
    # means part of the journal was erased (see :func:`erased_records`).
    stranded: list[tuple[Any, ...]] = field(default_factory=list)


# A frame's lines, as ``json.dumps(..., ensure_ascii=False, separators=(",", ":"))`` writes them, with
# one encoder made once (``json.dumps`` with options builds one each call).
_FRAME_LINE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode_frame(
    rows: Sequence[tuple[Any, ...]], checkpoints: Sequence[Checkpoint], row_lines: Sequence[str] | None = None
) -> bytes:
    """``row_lines``: the rows' lines already encoded (``PendingRecord.chain_line``), else encoded here."""
    # A row's line is '{"r":' and the row as an array: the encoder writes a tuple as it writes a list,
    # so the same bytes as encoding {"r": list(row)}, without the dict and the list made for each row.
    encode = _FRAME_LINE.encode
    if row_lines is not None:
        lines = [f"{line}\n" for line in row_lines]
    else:
        lines = [f'{{"r":{encode(row)}}}\n' for row in rows]
    lines += [f'{{"c":{encode(checkpoint.to_row())}}}\n' for checkpoint in checkpoints]
    payload = "".join(lines).encode()
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def _entries(
    name: str, payload: bytes, where: str, rows: list[tuple[Any, ...]], checkpoints: list[tuple[Any, ...]]
) -> None:
    for number, line in enumerate(payload.split(b"\n")[:-1], start=1):
        try:
            entry = json.loads(line)
            if "r" in entry:
                rows.append(tuple(entry["r"]))
            else:
                checkpoints.append(tuple(entry["c"]))
        except (ValueError, KeyError, TypeError) as error:
            raise AuditIntegrityError(f"{name} {where} line {number} cannot be read ({error})") from None


def _read_legacy(name: str, data: bytes) -> JournalContents:
    """Bare JSON lines (before frames): a torn last line is dropped, as that version did."""
    rows: list[tuple[Any, ...]] = []
    checkpoints: list[tuple[Any, ...]] = []
    end = data.find(b"\0")
    text = data if end < 0 else data[:end]
    complete = text[: text.rfind(b"\n") + 1]
    _entries(name, complete, "(unframed)", rows, checkpoints)
    torn = TornTail(len(complete), len(text) - len(complete)) if len(text) > len(complete) else None
    return JournalContents(rows, checkpoints, torn, len(complete), legacy=True)


def parse_journal(name: str, data: bytes) -> JournalContents:
    """Read frames from ``data`` (a journal file's bytes); see the module's docstring for the rules."""
    if data[:1] == b"{":
        return _read_legacy(name, data)
    rows: list[tuple[Any, ...]] = []
    checkpoints: list[tuple[Any, ...]] = []
    offset = 0
    size = len(data)
    while offset < size and data[offset] != 0:
        header = data[offset : offset + _HEADER.size]
        magic = header[:4]
        if magic != MAGIC:
            written = magic.split(b"\0", 1)[0]
            if (
                len(written) < 4
                and MAGIC.startswith(written)
                and not data[offset + len(written) :].strip(b"\0")
            ):
                return JournalContents(rows, checkpoints, TornTail(offset, len(written)), offset)
            raise AuditIntegrityError(f"{name}: no frame starts at offset {offset} (altered or damaged)")
        if len(header) < _HEADER.size:
            return JournalContents(rows, checkpoints, TornTail(offset, size - offset), offset)
        _, length, checksum = _HEADER.unpack(header)
        start, stop = offset + _HEADER.size, offset + _HEADER.size + length
        payload = data[start:stop]
        if length and stop <= size and zlib.crc32(payload) == checksum:  # (no empty frame is written)
            _entries(name, payload, f"frame at offset {offset}", rows, checkpoints)
            offset = stop
            continue
        if length and stop <= size and b"\0" not in payload:
            raise AuditIntegrityError(
                f"{name}: the frame at offset {offset} is complete but its checksum does not match "
                "(altered or damaged)"
            )
        # Cut short: what was written of it, then zeros. Nothing intact may follow it.
        if data[stop : stop + 4] == MAGIC:
            raise AuditIntegrityError(
                f"{name}: a damaged frame at offset {offset} is followed by another (altered or damaged)"
            )
        kept = len(payload.rstrip(b"\0"))
        return JournalContents(rows, checkpoints, TornTail(offset, _HEADER.size + kept), offset)
    stranded = _stranded_rows(name, data, offset) if data[offset:].strip(b"\0") else []
    return JournalContents(rows, checkpoints, None, offset, stranded=stranded)


def _whole_frame_end(data: bytes, offset: int) -> int | None:
    """Where the whole, checksummed frame starting at ``offset`` ends; None if none starts there."""
    header = data[offset : offset + _HEADER.size]
    if len(header) < _HEADER.size or header[:4] != MAGIC:
        return None
    _, length, checksum = _HEADER.unpack(header)
    stop: int = offset + _HEADER.size + int(length)
    if not length or stop > len(data) or zlib.crc32(data[offset + _HEADER.size : stop]) != checksum:
        return None
    return stop


def _stranded_rows(name: str, data: bytes, start: int) -> list[tuple[Any, ...]]:
    """The records of whole, checksummed frames anywhere after ``start``."""
    rows: list[tuple[Any, ...]] = []
    checkpoints: list[tuple[Any, ...]] = []
    position = data.find(MAGIC, start)
    while position >= 0:
        stop = _whole_frame_end(data, position)
        if stop is None:
            position = data.find(MAGIC, position + 1)
            continue
        _entries(name, data[position + _HEADER.size : stop], f"frame at offset {position}", rows, checkpoints)
        position = data.find(MAGIC, stop)
    return rows


def erased_records(name: str, contents: JournalContents, last_seq: int) -> None:
    """Raise if whole frames beyond a zeroed stretch hold records after ``last_seq`` (the last record
    the database and the journal's readable frames hold): acknowledged records would vanish unseen."""
    lost = sorted(int(row[0]) for row in contents.stranded if int(row[0]) > last_seq)
    if lost:
        raise AuditIntegrityError(
            f"{name}: records {lost[0]}–{lost[-1]} lie in whole frames beyond a zeroed stretch of the "
            f"journal (from offset {contents.end}): part of the journal was erased (altered or damaged)"
        )


def intact_prefix(data: bytes) -> bytes:
    """The longest run of intact frames at the start of ``data``, and nothing after it.

    For a copy of a journal that a running writer kept writing and emptying while it was read (an
    online backup): such a copy can hold a frame cut short by the copy, or by the emptying, before
    later bytes. Every frame it keeps is whole and checksummed; what it drops was either committed to
    the database before the emptying or written after the copy began.
    """
    if data[:1] == b"{":  # an earlier version's bare JSON lines
        text = data.split(b"\0", 1)[0]
        return text[: text.rfind(b"\n") + 1]
    offset = 0
    while (stop := _whole_frame_end(data, offset)) is not None:
        offset = stop
    return data[:offset]


def read_journal(path: Path) -> JournalContents:
    """The rows and checkpoint rows in the journal (empty if there is none), and any torn tail."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return JournalContents([], [])
    return parse_journal(path.name, data)


class Journal:
    """Append-and-sync file of the writer (not thread-safe: the writer is its only user).

    ``size`` is how much of it holds frames; ``capacity`` the preallocated length of the file.
    Opening it cuts off a torn tail (zeroes it): the writer logs that it did, and what it cut.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.capacity = os.fstat(self._descriptor).st_size
        data = os.pread(self._descriptor, self.capacity, 0) if self.capacity else b""
        contents = parse_journal(path.name, data)
        self.size = contents.end
        self.cut: TornTail | None = contents.torn
        if contents.legacy or contents.torn is not None:  # zero everything after the intact frames
            dirty = len(data.rstrip(b"\0"))
            if dirty > self.size:
                self._write_at(self.size, bytes(dirty - self.size))
                os.fdatasync(self._descriptor)
        if self.capacity - self.size < GROW_BYTES // 2:
            self._grow(GROW_BYTES)

    def _grow(self, needed: int) -> None:
        """Extend the file with zeros (written, not just allocated: a sync then has no metadata to write)."""
        added = max(needed, GROW_BYTES)
        try:
            self._write_at(self.capacity, bytes(added))
            os.fsync(self._descriptor)
        except OSError:
            os.ftruncate(self._descriptor, self.capacity)  # give back what was written of it
            raise
        self.capacity += added

    def append(
        self,
        rows: Sequence[tuple[Any, ...]],
        checkpoints: Sequence[Checkpoint],
        row_lines: Sequence[str] | None = None,
    ) -> None:
        """Write the rows and checkpoints as one frame and return once they are on disk (``row_lines``:
        the rows' lines, already encoded).

        On failure (a full disk) nothing is acknowledged and what was written of the frame is zeroed
        again, so that the next frame starts on zeros; if even that fails, reopening cuts it off.
        """
        payload = encode_frame(rows, checkpoints, row_lines)
        if self.size + len(payload) > self.capacity:
            self._grow(self.size + len(payload) - self.capacity)
        try:
            self._write_at(self.size, payload)
            os.fdatasync(self._descriptor)
        except OSError:
            with contextlib.suppress(OSError):
                self._write_at(self.size, bytes(len(payload)))
            raise
        self.size += len(payload)

    def _write_at(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self._descriptor, view, offset)
            view, offset = view[written:], offset + written

    def clear(self) -> None:
        """Empty the journal (everything in it is committed to the database): zero what was written."""
        if self.size:
            self._write_at(0, bytes(self.size))
            os.fdatasync(self._descriptor)
        self.size = 0

    def close(self) -> None:
        if self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1
