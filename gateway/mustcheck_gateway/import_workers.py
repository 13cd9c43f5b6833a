"""An import's rows are decoded and validated in worker processes; the gateway's own process writes.

Validation (R1 identifiers, memoranda, dates, severity bounds) costs more than writing, and one
Python process runs on one core. So each chunk of the import stream (lines of a JSON Lines file, or
``{"line": N, "row": {...}}`` items made of a CSV file's rows) goes to a worker process, which parses
it, validates its rows with :func:`~mustcheck_gateway.list_rows.entry_from_row` and encodes them for
the store (column values, persons, history snapshot). Results come back in stream order: problems
are reported by line exactly as if one process had done everything. The workers are started at the
first import and stay until the gateway stops.
"""

from __future__ import annotations

import collections
import functools
import json
import multiprocessing
import os
import re
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, NamedTuple

from .list_rows import TRUNCATED, RowError, entry_from_row
from .policy.model import PolicySet
from .store.base import EncodedEntry
from .store.codec import encode_entry

MALFORMED = 'the import stream is malformed (expected {"line": N, "row": {...}} lines)'
# A line as a file read with universal newlines kept (newline=""): it ends at \n, \r\n or \r.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")

# (line, the encoded entry or None, why the row is bad or ""), in stream order
RowResult = tuple[int, EncodedEntry | None, str]


class StreamPart(NamedTuple):
    """A chunk of the import stream: lines of a JSON Lines file from ``first_line`` on, or (``first_line``
    0) items ``{"line": N, "row": {...}}`` that the client made of a CSV file's rows."""

    first_line: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ChunkResult:
    rows: list[RowResult]
    parsed: int  # rows that are JSON objects or items (a file without any holds no rows)
    fatal: str = ""  # set when the stream cannot be read on: nothing may be applied


@dataclass(frozen=True, slots=True)
class ImportRules:
    """What a worker needs to judge rows: the policy set, the legacy codes, the default source."""

    policy: PolicySet
    legacy: frozenset[str]
    source: str


def decode_part(rules: ImportRules, part: StreamPart) -> ChunkResult:
    """Validate and encode the rows of one chunk of the import stream."""
    if part.first_line:
        return _decode_lines(rules, part.first_line, part.data.decode("utf-8"))
    return _decode_items(rules, part.data.decode("utf-8"))


def _decode_lines(rules: ImportRules, first_line: int, text: str) -> ChunkResult:
    rows: list[RowResult] = []
    parsed = 0
    for number, match in enumerate(_LINE.finditer(text), start=first_line):
        line = match.group()
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            if not line.endswith("\n"):
                return ChunkResult(rows, parsed, TRUNCATED.format(number))
            rows.append((number, None, f"not valid JSON ({error.msg})"))
            continue
        parsed += 1
        if not isinstance(row, dict):
            rows.append((number, None, "a row must be a JSON object"))
            continue
        rows.append(_judge(rules, number, row))
    return ChunkResult(rows, parsed)


def _decode_items(rules: ImportRules, text: str) -> ChunkResult:
    rows: list[RowResult] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            number, row = int(item["line"]), item["row"]
        except (ValueError, KeyError, TypeError):
            return ChunkResult(rows, len(rows), MALFORMED)
        error = item.get("error")
        result = (number, None, str(error)) if error is not None else _judge(rules, number, row)
        if result[1] is None and item.get("unterminated"):
            return ChunkResult(rows, len(rows), TRUNCATED.format(number))
        rows.append(result)
    return ChunkResult(rows, len(rows))


def _judge(rules: ImportRules, number: int, row: Any) -> RowResult:
    if isinstance(row, dict) and not row.get("source"):
        row["source"] = rules.source
    try:
        return number, encode_entry(entry_from_row(row, rules.policy, legacy_codes=rules.legacy)), ""
    except RowError as invalid:
        return number, None, str(invalid)


def default_import_workers() -> int:
    """One worker per core, at most two: with the writer and the importing client, that fills a small
    machine; more workers than cores only take turns."""
    return min(2, os.cpu_count() or 1)


class ImportWorkers:
    """Worker processes shared by the gateway's imports (``processes=0``: validate in this process).

    Started at the first import (a fresh interpreter each, never a fork of the running gateway) and
    stopped by :meth:`close`. A worker that dies fails its import (rolled back) and the next import
    starts new ones.
    """

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def map(self, rules: ImportRules, parts: Iterable[StreamPart]) -> Iterator[ChunkResult]:
        """The parts' results in order, with a few parts in flight ahead of the one returned."""
        if self.processes <= 0:
            yield from map(functools.partial(decode_part, rules), parts)
            return
        pool = self._executor()
        pending: collections.deque[Future[ChunkResult]] = collections.deque()
        try:
            for part in parts:
                pending.append(pool.submit(decode_part, rules, part))
                if len(pending) > self.processes:  # one part each in hand, one waiting
                    yield self._result(pending.popleft())
            while pending:
                yield self._result(pending.popleft())
        finally:
            for future in pending:
                future.cancel()

    def _result(self, future: Future[ChunkResult]) -> ChunkResult:
        try:
            return future.result()
        except BrokenProcessPool:
            self._discard()
            raise

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.processes, mp_context=multiprocessing.get_context("spawn")
                )
            return self._pool

    def _discard(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
