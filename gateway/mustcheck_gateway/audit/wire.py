"""What the gateway and its audit writer process say to each other over two pipes.

A frame is a 4-byte little-endian length and a :mod:`marshal` payload (plain tuples, lists, dicts,
strings and numbers only: nothing that runs code when read). Requests go one way, answers the other.

Requests (gateway → writer): ``(RECORDS, token, key_generation, rows, to_loop, receipts_for)`` with
rows from :func:`pending_row` and the indexes of the rows (allowed checks) whose receipts the writer
signs, ``(FLUSH, token, checkpoint)``, ``(CLOSE,)``. Answers (writer → gateway) on the main answer pipe:
``(READY, last_seq, cut)`` (``cut``: the torn journal tail cut off, ``(offset, length)``, or None)
or ``(FAILED, error_class, message)`` once at start, then
``(DONE, [(token, outcome), ...], stats)`` per commit or flush, and ``(CLOSED, stats)`` last. An
outcome is the submission's seqs, or ``(seqs, receipts)`` if it asked for receipts, or an error's
text. The outcomes of records sent with ``to_loop`` come as ``DONE`` on the loop answer pipe, which
the gateway's event loop reads itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import marshal
import os
import struct
from typing import Any

from .record import PendingRecord

RECORDS, FLUSH, CLOSE = "records", "flush", "close"
# The environment variable that carries the database's URL to a writer of the PostgreSQL backend (not
# its command line, which ``ps`` shows to everyone).
URL_VARIABLE = "MUSTCHECK_AUDIT_WRITER_URL"
READY, FAILED, DONE, CLOSED = "ready", "failed", "done", "closed"
_LENGTH = struct.Struct("<I")
_PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031


def pending_row(record: PendingRecord) -> tuple[Any, ...]:
    return record.as_values()


def pending_from_row(row: tuple[Any, ...]) -> PendingRecord:
    return PendingRecord(*row)


def encode(message: tuple[Any, ...]) -> bytes:
    payload = marshal.dumps(message)
    return _LENGTH.pack(len(payload)) + payload


def write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def widen(descriptor: int) -> None:
    """Ask for a 1 MiB pipe buffer (Linux), so a burst of records does not block the sender."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(descriptor, _F_SETPIPE_SZ, _PIPE_SIZE)


class FrameReader:
    """Reads whole frames from a blocking descriptor."""

    def __init__(self, descriptor: int) -> None:
        self._descriptor = descriptor
        self._buffer = bytearray()

    def read(self) -> list[tuple[Any, ...]] | None:
        """Every complete frame available (blocking for at least one); None at end of file."""
        while True:
            messages = self._complete()
            if messages:
                return messages
            chunk = os.read(self._descriptor, _PIPE_SIZE)
            if not chunk:
                return None
            self._buffer += chunk

    def read_ready(self) -> list[tuple[Any, ...]] | None:
        """The complete frames a non-blocking descriptor holds now (maybe none); None at end of file."""
        try:
            chunk = os.read(self._descriptor, _PIPE_SIZE)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        self._buffer += chunk
        return self._complete()

    def _complete(self) -> list[tuple[Any, ...]]:
        messages: list[tuple[Any, ...]] = []
        offset, buffer = 0, self._buffer
        while len(buffer) - offset >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer, offset)
            end = offset + _LENGTH.size + length
            if len(buffer) < end:
                break
            messages.append(marshal.loads(bytes(buffer[offset + _LENGTH.size : end])))
            offset = end
        if offset:
            del buffer[:offset]
        return messages
