"""The gateway's side of the audit writer process (:mod:`.writer_process`).

Chaining, journaling, syncing and indexing run in a process of their own, so that they never hold
the gateway's interpreter lock. :meth:`RemoteWriter.submit_to` sends protected records down a pipe
for an event loop's waiter, :meth:`RemoteWriter.submit` for a blocking caller (it returns a future).
The answers (the seqs, once the records are durable) for records submitted from the first event loop
that submits come on a pipe of their own that this loop reads itself when it is readable: no thread
and no cross-thread wake-up per commit. Everything else (blocking callers, flushes, other loops) is
answered on the main pipe, read by a thread.

If the writer process ends without being told to, every waiter gets :class:`~.errors.AuditUnavailable`
(nothing it was not told was durable may be answered) and ``on_exit`` is called: the
:class:`~.audit_log.AuditLog` starts another writer process.

The writer process hosts either backend's writer: :class:`EmbeddedStore` (the files) or
:class:`PostgresStore` (one replica's log in PostgreSQL), over the same pipes.

A worker process of a multi-process gateway (``serve --workers``) does not start a writer: it
attaches (:meth:`RemoteWriter.attach`) to the gateway's over its Unix socket (:mod:`.writer_clients`),
two connections in place of the pipes, and submits the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import marshal
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from . import errors, wire
from .announced import SharedCounter
from .checkpoint import Checkpoint
from .errors import AuditError, AuditLogClosed, AuditUnavailable
from .keys import KeyRing
from .record import PendingRecord
from .writer import DEFAULT_GROUP_WINDOW_S
from .writer_clients import HELLO, LOOP, MAIN, WELCOME

# After a commit the writer could not make durable, appends are refused this long before one is tried.
FAILURE_HOLD_S = 1.0


class _Announced(Protocol):
    def _release(self) -> None: ...


class Announcement:
    """A record on its way; ``release`` (idempotent) withdraws it, as submitting does."""

    __slots__ = ("_open", "_writer")

    def __init__(self, writer: _Announced) -> None:
        self._writer = writer
        self._open = True

    def release(self) -> None:
        if self._open:
            self._open = False
            self._writer._release()

    def __enter__(self) -> Announcement:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def current_log_level() -> str:
    """This process's operational log level, for the writer process's own log lines."""
    level = structlog.get_logger().bind().get_effective_level()
    return str(logging.getLevelName(level)).lower()


def deliver_to_waiters(results: list[tuple[asyncio.Future[Any], Any]]) -> None:
    """On the waiters' loop: resolve every waiter of one commit (a cancelled one is skipped)."""
    for waiter, outcome in results:
        if waiter.done():
            continue
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)


@dataclass(frozen=True, slots=True)
class WriterSettings:
    checkpoint_every: int
    checkpoint_interval_s: float
    group_window_s: float = DEFAULT_GROUP_WINDOW_S
    index_every: int | None = None
    index_interval_s: float | None = None
    log_level: str = "warning"


@dataclass(frozen=True, slots=True)
class EmbeddedStore:
    """The embedded backend's files, and the heads the log must extend (no rewind)."""

    db_path: Path
    journal_path: Path
    mirror_path: Path
    published_head: Checkpoint | None = None
    published_tree_head: str = ""

    def arguments(self) -> list[str]:
        found = [
            "--db",
            str(self.db_path),
            "--journal",
            str(self.journal_path),
            "--mirror",
            str(self.mirror_path),
        ]
        if self.published_head is not None:
            found += ["--published-head", self.published_head.to_json()]
        if self.published_tree_head:
            found += ["--published-tree-head", self.published_tree_head]
        return found

    def environment(self) -> dict[str, str] | None:
        return None


@dataclass(frozen=True, slots=True)
class PostgresStore:
    """One replica's log (``log_id``) in the PostgreSQL database at ``url``."""

    url: str
    log_id: str

    def arguments(self) -> list[str]:
        return ["--postgres-log", self.log_id]

    def environment(self) -> dict[str, str] | None:
        return {**os.environ, wire.URL_VARIABLE: self.url}


@dataclass(slots=True)
class _Waiting:
    """Who waits for one submission: a blocking caller (``future``) or an event loop (``waiter``)."""

    records: int
    future: Future[Any] | None = None
    waiter: asyncio.Future[Any] | None = None


def _error(class_name: str, message: str) -> AuditError:
    kind = getattr(errors, class_name, None)
    if isinstance(kind, type) and issubclass(kind, AuditError):
        return kind(message)
    return AuditError(f"the audit writer failed to start: {class_name}: {message}")


class RemoteWriter:
    """Thread-safe :meth:`submit`, :meth:`flush`; idempotent :meth:`close`."""

    def __init__(
        self,
        store: EmbeddedStore | PostgresStore,
        keyring: KeyRing,
        settings: WriterSettings,
        *,
        on_exit: Callable[[], None] | None = None,
        clients: socket.socket | None = None,
    ) -> None:
        """Start a writer process for ``store``; ``clients``: the listening socket the workers of this
        gateway attach through, if any (embedded only)."""
        self._keyring = keyring
        self._on_exit = on_exit
        self._sockets: tuple[socket.socket, ...] = ()
        self.cut: tuple[int, int] | None = None  # the torn journal tail the writer cut off at start
        self._announced = SharedCounter()
        requests_in, self._requests = os.pipe()
        self._answers, answers_out = os.pipe()
        self._loop_answers, loop_answers_out = os.pipe()
        os.set_blocking(self._loop_answers, False)
        wire.widen(self._requests)
        command = [
            sys.executable,
            "-m",
            "mustcheck_gateway.audit.writer_process",
            *store.arguments(),
            *("--keys-dir", str(keyring.directory), "--log-level", settings.log_level),
            *("--checkpoint-every", str(settings.checkpoint_every)),
            *("--checkpoint-interval", repr(settings.checkpoint_interval_s)),
            *("--group-window", repr(settings.group_window_s)),
            *("--requests", str(requests_in), "--answers", str(answers_out)),
            *("--loop-answers", str(loop_answers_out), "--announced", str(self._announced.descriptor)),
        ]
        if settings.index_every is not None:
            command += ["--index-every", str(settings.index_every)]
        if settings.index_interval_s is not None:
            command += ["--index-interval", repr(settings.index_interval_s)]
        passed = [requests_in, answers_out, loop_answers_out, self._announced.descriptor]
        if clients is not None:
            command += ["--clients", str(clients.fileno())]
            passed.append(clients.fileno())
        try:
            self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
                command,
                pass_fds=passed,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=store.environment(),
            )
        finally:
            for descriptor in (requests_in, answers_out, loop_answers_out):
                os.close(descriptor)
        self._init_state()
        self._start()
        self._start_reader()

    @classmethod
    def attach(
        cls, path: Path, keyring: KeyRing, *, on_exit: Callable[[], None] | None = None
    ) -> RemoteWriter:
        """Attach to the writer of this gateway's log listening at ``path`` (a worker's side); raises
        :class:`~.errors.AuditUnavailable` if no writer answers there."""
        self = cls.__new__(cls)
        self._keyring = keyring
        self._on_exit = on_exit
        self.cut = None
        self._process = None
        main = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        loop = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            main.settimeout(10.0)
            _connect(main, path)
            main.sendall(wire.encode((HELLO, MAIN, None)))
            welcome, descriptor = _welcome(main)
            main.settimeout(None)
            _, ident, slot, stats = welcome
            self._announced = SharedCounter(descriptor, slot=int(slot))
            _connect(loop, path)
            loop.sendall(wire.encode((HELLO, LOOP, int(ident))))
        except (OSError, ValueError, EOFError) as error:
            main.close()
            loop.close()
            raise AuditUnavailable(f"the audit writer does not answer at {path} ({error})") from None
        self._sockets = (main, loop)
        self._requests = self._answers = main.fileno()
        self._loop_answers = loop.fileno()
        os.set_blocking(self._loop_answers, False)
        self._init_state()
        self._record_stats(tuple(stats))
        self._start_reader()
        return self

    @property
    def pid(self) -> int | None:
        """The writer process's id (None: attached to another process's writer, or it has ended)."""
        process = self._process
        return None if process is None or process.poll() is not None else process.pid

    def _init_state(self) -> None:
        self._reader = wire.FrameReader(self._answers)
        self._loop_reader = wire.FrameReader(self._loop_answers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_read_lock = threading.Lock()
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._waiting: dict[int, _Waiting] = {}
        self._write_lock = threading.Lock()
        self._closed = False  # no more submissions: close() was called or the writer process is gone
        self._closed_reason = "the audit log is closed"
        self._counter_closed = False  # the shared count of announced requests is unmapped
        self._gone = False  # the writer process ended without being told to
        self._shut = False  # close() has run
        self._pending_records = 0
        self._failed: tuple[float, str] | None = None  # when the last commit failed, and why
        self.last_seq = 0
        self.commits = 0
        self.checkpoints_written = 0
        self.last_commit_latency_s = 0.0

    def _start_reader(self) -> None:
        self._thread = threading.Thread(target=self._read_answers, name="mustcheck-audit-acks", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        assert self._process is not None
        messages = self._reader.read()
        if not messages:
            self._process.wait()
            self._close_pipes()
            raise AuditError(
                f"the audit writer process exited ({self._process.returncode}) before it started"
            )
        first = messages[0]
        if first[0] == wire.FAILED:
            self._process.wait()
            self._close_pipes()
            raise _error(first[1], first[2])
        self.last_seq = int(first[1])
        self.cut = None if first[2] is None else (int(first[2][0]), int(first[2][1]))

    def _close_pipes(self) -> None:
        for descriptor in (self._requests, self._answers, self._loop_answers):
            with contextlib.suppress(OSError):
                os.close(descriptor)
        self._close_counter()

    # -- the caller's side ---------------------------------------------------------

    def recent_failure(self) -> str | None:
        """Why the last commit failed, if it did in the last ``FAILURE_HOLD_S`` (e.g. a full disk)."""
        failed = self._failed
        if failed is None or time.monotonic() - failed[0] >= FAILURE_HOLD_S:
            return None
        return f"the audit writer could not make records durable ({failed[1]})"

    @property
    def queue_depth(self) -> int:
        with self._lock:
            return self._pending_records

    def announce(self) -> Announcement:
        """A request that will submit is under way (refused, as submitting is, once the writer is gone:
        its shared count is unmapped then, and nothing would be answered anyway)."""
        with self._lock:
            if self._closed:
                raise self._refusal()
            self._announced.add(1)
        return Announcement(self)

    def _refusal(self) -> AuditError:
        """Why nothing more is taken (under the lock): the log was closed, or the writer process is gone
        (retryable, even once the log has reaped it to start another)."""
        if self._shut and not self._gone:
            return AuditLogClosed(self._closed_reason)
        return AuditUnavailable(self._closed_reason)

    def _release(self) -> None:
        with self._lock:
            if not self._counter_closed:  # announced before the writer went: nobody counts any more
                self._announced.add(-1)

    def _close_counter(self) -> None:
        with self._lock:
            self._counter_closed = True
            self._announced.close()

    def _send(self, message: tuple[Any, ...], waiting: _Waiting, token: int) -> None:
        data = wire.encode(message)
        with self._lock:
            if self._closed:
                raise self._refusal()
            self._waiting[token] = waiting
            self._pending_records += waiting.records
        try:
            # A lock of its own: the answer reader never waits for a write (which may wait for it).
            with self._write_lock:
                wire.write_all(self._requests, data)
        except OSError as error:
            with self._lock:
                self._waiting.pop(token, None)
                self._pending_records -= waiting.records
            raise AuditUnavailable(f"the audit writer process is gone ({error})") from error

    def submit(self, records: list[PendingRecord]) -> Future[list[int]]:
        """Send ``records`` for a blocking caller: the future resolves to their seqs once they are durable."""
        future: Future[list[int]] = Future()
        self._submit(records, _Waiting(len(records), future=future), None, (), to_loop=False)
        return future

    def submit_to(
        self,
        waiter: asyncio.Future[Any],
        records: list[PendingRecord],
        announcement: Announcement | None = None,
        receipts_for: Sequence[int] = (),
    ) -> None:
        """Send ``records``; ``waiter`` (on its event loop) resolves to their seqs once they are durable,
        or to ``(seqs, receipts)`` with the receipts of the records at ``receipts_for`` (allowed checks)."""
        waiting = _Waiting(len(records), waiter=waiter)
        to_loop = self._answered_in(waiter.get_loop())
        self._submit(records, waiting, announcement, receipts_for, to_loop=to_loop)

    def _submit(
        self,
        records: list[PendingRecord],
        waiting: _Waiting,
        announcement: Announcement | None,
        receipts_for: Sequence[int],
        *,
        to_loop: bool,
    ) -> None:
        token = next(self._tokens)
        rows = [wire.pending_row(r) for r in records]
        message = (wire.RECORDS, token, self._keyring.generation, rows, to_loop, list(receipts_for))
        try:
            self._send(message, waiting, token)
        finally:
            if announcement is not None:
                announcement.release()

    def _answered_in(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether ``loop`` (the running loop) reads its answers itself: the first loop to submit does."""
        if self._loop is None:
            with self._lock:
                attach = self._loop is None and not self._closed
                if attach:
                    self._loop = loop
            if attach:
                loop.add_reader(self._loop_answers, self._read_loop_answers)
        return loop is self._loop

    def _read_loop_answers(self, *, in_loop: bool = True) -> None:
        with self._loop_read_lock:
            while messages := self._loop_reader.read_ready():
                for message in messages:
                    self._settle(message[1], in_loop=in_loop)
                    self._record_stats(message[2])
            if messages is None and in_loop and self._loop is not None:
                self._loop.remove_reader(self._loop_answers)  # the writer is gone: stop polling

    def flush(self, *, checkpoint: bool = False) -> None:
        """Wait until everything durable so far is indexed (and, with ``checkpoint``, covered by a
        signed checkpoint)."""
        token = next(self._tokens)
        flushed: Future[Any] = Future()
        waiting = _Waiting(0, future=flushed)
        try:
            self._send((wire.FLUSH, token, checkpoint), waiting, token)
        except AuditLogClosed:
            return  # close() indexed everything
        flushed.result()

    def close(self) -> None:
        """Let the writer commit everything sent and stop; wait for it (also after it died)."""
        with self._lock:
            if self._shut:
                return
            self._shut = self._closed = True
        with self._write_lock, contextlib.suppress(OSError):
            wire.write_all(self._requests, wire.encode((wire.CLOSE,)))
        if self._process is None:  # attached: the writer answers CLOSED, then ends the connection
            self._thread.join()
            self._sockets[0].close()
            self._close_counter()
            self._detach_loop()
            return
        os.close(self._requests)
        self._thread.join()
        self._process.wait()
        os.close(self._answers)
        self._close_counter()
        self._detach_loop()

    def _detach_loop(self) -> None:
        """Stop the loop reading its answer pipe (in the loop's thread), then close the pipe."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._close_loop_answers()
            return

        def detach() -> None:
            loop.remove_reader(self._loop_answers)
            self._close_loop_answers()

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            detach()
        else:
            try:
                loop.call_soon_threadsafe(detach)
            except RuntimeError:  # closed meanwhile
                self._close_loop_answers()

    def _close_loop_answers(self) -> None:
        if self._sockets:
            self._sockets[1].close()
        else:
            os.close(self._loop_answers)

    # -- the reader thread ---------------------------------------------------------

    def _read_answers(self) -> None:
        while (messages := self._read_main()) is not None:
            for message in messages:
                if message[0] == wire.DONE:
                    self._settle(message[1])
                    self._record_stats(message[2])
                elif message[0] == wire.CLOSED:
                    self._record_stats(message[1])
        # The writer has exited: whatever it answered on the loop's pipe is there now (the loop itself
        # may be blocked in close()).
        self._read_loop_answers(in_loop=False)
        with self._lock:
            unexpected = not self._closed
            if unexpected:
                self._gone = True
                self._closed_reason = "the audit writer process stopped"
            self._closed = True
            left = list(self._waiting.items())
        if left:
            stopped = AuditUnavailable("the audit writer process stopped before these records were durable")
            self._settle([(token, stopped) for token, _ in left])
        if unexpected and self._on_exit is not None:
            self._on_exit()

    def _read_main(self) -> list[tuple[Any, ...]] | None:
        try:
            return self._reader.read()
        except OSError:  # an attached worker's connection reset: the writer is gone
            return None

    def _record_stats(self, stats: tuple[int, int, int, float]) -> None:
        self.last_seq, self.commits, self.checkpoints_written, self.last_commit_latency_s = stats

    def _settle(self, outcomes: list[tuple[int, Any]], *, in_loop: bool = False) -> None:
        deliveries: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        with self._lock:
            settled = [(self._waiting.pop(token), outcome) for token, outcome in outcomes]
            self._pending_records -= sum(waiting.records for waiting, _ in settled)
        for waiting, outcome in settled:
            if isinstance(outcome, str):
                self._failed = (time.monotonic(), outcome)
            # A commit the writer could not make durable (e.g. a full disk): retryable, never answered.
            result: Any = (
                AuditUnavailable(f"audit commit failed: {outcome}") if isinstance(outcome, str) else outcome
            )
            if waiting.waiter is not None and in_loop:
                deliver_to_waiters([(waiting.waiter, result)])
            elif waiting.waiter is not None:
                deliveries.setdefault(waiting.waiter.get_loop(), []).append((waiting.waiter, result))
            if waiting.future is None:
                continue
            if isinstance(result, BaseException):
                waiting.future.set_exception(result)
            else:
                waiting.future.set_result(result)
        for loop, results in deliveries.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(deliver_to_waiters, results)


def _welcome(connection: socket.socket) -> tuple[tuple[Any, ...], int]:
    """Read the writer's welcome frame and the descriptor of the shared count sent with it."""
    data, descriptors, _, _ = socket.recv_fds(connection, 1 << 16, 1)
    if not descriptors:
        raise ValueError("no welcome from the audit writer")
    buffer = bytearray(data)
    while len(buffer) < 4 or len(buffer) < 4 + int.from_bytes(buffer[:4], "little"):
        chunk = connection.recv(1 << 16)
        if not chunk:
            os.close(descriptors[0])
            raise EOFError("the audit writer closed the connection")
        buffer += chunk
    message = marshal.loads(bytes(buffer[4 : 4 + int.from_bytes(buffer[:4], "little")]))
    if not isinstance(message, tuple) or not message or message[0] != WELCOME:
        os.close(descriptors[0])
        raise ValueError("an unexpected answer from the audit writer")
    return message, descriptors[0]


def _connect(connection: socket.socket, path: Path) -> None:
    """Connect through the directory's descriptor: a socket's address holds only 107 bytes."""
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        connection.connect(f"/proc/self/fd/{directory}/{path.name}")
    finally:
        os.close(directory)
