"""The audit writer process: the group-commit writer, away from the gateway's interpreter lock.

Started by :class:`~.remote_writer.RemoteWriter` as ``python -m mustcheck_gateway.audit.writer_process``
with the descriptors of its request pipe, its two answer pipes and the shared count of requests in
progress (:mod:`.announced`). It holds the database's writer lock, replays the journal, then reads
protected records (:mod:`.wire`), gives them their seqs and hash links, journals and syncs them
(:class:`~.writer.GroupCommitWriter`, on this process's only thread: it reads the request pipe
itself) and answers with the seqs once they are durable, and with the receipts (R11) of the allowed
checks among them, made here because here is where their seqs and the tree are known: inclusion
proofs against the one tree head the writer signs for each commit. It stops,
after committing everything it was sent and writing a final checkpoint, when told to or when the
request pipe closes (the gateway is gone: whatever it sent is still made durable).

With ``--clients`` it also takes requests from the worker processes of the same gateway over a Unix
socket (:mod:`.writer_clients`): one log for the whole gateway, one writer.

With ``--postgres-log LOG_ID`` it hosts the PostgreSQL backend's writer instead
(:class:`~.postgres_writer.PostgresWriter`, the database's URL in the environment variable
``MUSTCHECK_AUDIT_WRITER_URL``, never on the command line where ``ps`` shows it): the same pipes, the
same answers; the log's lock is the writer's advisory lock in the database, not a file's.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import queue
import select
import signal
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from mustcheck.tree_head import TreeHead

from ..logs import configure_logging
from . import wire
from .announced import SharedCounter
from .checkpoint import Checkpoint
from .exclusive import WriterLock
from .keys import KeyRing
from .mirror import CheckpointMirror
from .record import PendingRecord
from .sqlite_log import SqliteAuditStore
from .writer import STOP, Flush, GroupCommitWriter, Submission
from .writer_clients import ClientHub, Item


class _Writer(Protocol):
    """What the answers need of either backend's writer."""

    @property
    def last_seq(self) -> int: ...

    commits: int
    checkpoints_written: int
    last_commit_latency_s: float

    def receipt(self, seq: int) -> str: ...

    def use_keyring(self, keyring: KeyRing) -> None: ...


def _write_ready(descriptor: int, data: bytes | memoryview) -> memoryview:
    """Write what a non-blocking pipe takes now; return the rest (empty when all is written)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(descriptor, view) :]
        except BlockingIOError:
            break
    return view


def _write_blocking(descriptor: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to a non-blocking pipe, waiting while it is full."""
    view = _write_ready(descriptor, data)
    while view:
        select.select([], [descriptor], [])
        view = _write_ready(descriptor, view)


class _Answers:
    """The two answer pipes: outcomes of commits and flushes, and the start and the end.

    The receipts asked for with the records (R11) are made on the writer's thread when the commit is
    settled (inclusion proofs against the tree head signed for that commit, while its tree is the
    current one). The outcomes are then written on the writer's thread too, without blocking (a
    thread hand-off per commit cost about as much as the commit's sync); only when a pipe is full (the
    gateway is slow to read) does the rest go to a thread of its own, which writes it blocking while
    the writer goes on reading requests (never a deadlock with a gateway blocked on the request pipe).
    Until that thread has written everything handed to it, later outcomes go to it too: in order.
    """

    def __init__(self, descriptor: int, loop_descriptor: int) -> None:
        self._descriptor = descriptor
        self._loop_descriptor = loop_descriptor
        for end in (descriptor, loop_descriptor):
            os.set_blocking(end, False)
        self._lock = threading.Lock()
        self._answering = ThreadPoolExecutor(max_workers=1, thread_name_prefix="answers")
        self._handed_off = 0  # batches of frames the answering thread has not finished writing
        self.writer: _Writer | None = None
        self.hub: ClientHub | None = None  # the workers' connections (--clients), if any
        self.loop_tokens: set[int] = set()
        # token -> (indexes of the rows to sign receipts for, the submission's records)
        self.receipts_due: dict[int, tuple[list[int], list[PendingRecord]]] = {}

    def send(self, *message: Any, to_loop: bool = False) -> None:
        """Write one message, blocking until it is written (the start and the end)."""
        _write_blocking(self._loop_descriptor if to_loop else self._descriptor, wire.encode(message))

    def stats(self) -> tuple[int, int, int, float]:
        writer = self.writer
        if writer is None:
            return (0, 0, 0, 0.0)
        return (writer.last_seq, writer.commits, writer.checkpoints_written, writer.last_commit_latency_s)

    def done(self, outcomes: list[tuple[int, Any]]) -> None:
        """Report one commit's outcomes, each on the pipe its submitter reads (on the writer's thread)."""
        to_loop: list[tuple[int, Any]] = []
        to_main: list[tuple[int, Any]] = []
        to_clients: dict[int, list[tuple[int, Any]]] = {}
        for token, outcome in outcomes:
            loop = token in self.loop_tokens
            self.loop_tokens.discard(token)
            due = self.receipts_due.pop(token, None)
            if due is not None and not isinstance(outcome, BaseException):
                # Proven against the head the writer signed for this commit, on the writer's thread,
                # while the commit's tree is the current one (one signature for all of them).
                try:
                    assert self.writer is not None
                    outcome = (outcome, [self.writer.receipt(outcome[i]) for i in due[0]])
                except Exception as error:  # the records are durable; the checks fail without receipts
                    outcome = f"the receipts could not be made: {error!r}"
            plain: Any = repr(outcome) if isinstance(outcome, BaseException) else outcome
            if token < 0:  # a worker's (writer_clients): answered under its own token, if it is still there
                route = self.hub.route(token) if self.hub is not None else None
                if route is not None:
                    to_clients.setdefault(route[0], []).append((route[1], plain))
                continue
            (to_loop if loop else to_main).append((token, plain))
        stats = self.stats()
        frames: list[tuple[int, bytes]] = [
            (descriptor, wire.encode((wire.DONE, answered, stats)))
            for descriptor, answered in to_clients.items()
        ]
        if to_loop:
            frames.append((self._loop_descriptor, wire.encode((wire.DONE, to_loop, stats))))
        if to_main:
            frames.append((self._descriptor, wire.encode((wire.DONE, to_main, stats))))
        self._post(frames)

    def idle(self) -> bool:
        """Whether every answer handed to the answering thread has been written."""
        with self._lock:
            return self._handed_off == 0

    def _post(self, frames: list[tuple[int, bytes]]) -> None:
        """Write ``frames`` now if the pipes take them; hand what is left to the answering thread."""
        left: list[tuple[int, memoryview]] = []
        with self._lock:
            if self._handed_off == 0:
                for index, (descriptor, data) in enumerate(frames):
                    try:
                        rest = _write_ready(descriptor, data)
                    except OSError:  # the gateway (or a worker) is gone: nobody waits for these
                        continue
                    if rest:
                        left = [(descriptor, rest), *((d, memoryview(b)) for d, b in frames[index + 1 :])]
                        break
                if not left:
                    return
            else:
                left = [(descriptor, memoryview(data)) for descriptor, data in frames]
            self._handed_off += 1
        self._answering.submit(self._write_later, left)

    def _write_later(self, frames: list[tuple[int, memoryview]]) -> None:
        try:
            for descriptor, data in frames:
                with contextlib.suppress(OSError):  # the gateway (or a worker) is gone: nobody waits
                    _write_blocking(descriptor, data)
        finally:
            with self._lock:
                self._handed_off -= 1

    def finish(self) -> None:
        """Wait until every outcome reported so far has been sent."""
        self._answering.shutdown(wait=True)

    def flushed(self, token: int) -> Callable[[Future[None]], None]:
        def report(future: Future[None]) -> None:
            error = future.exception()
            self.done([(token, [] if error is None else error)])

        return report


class _PipeInbox:
    """The writer's inbox: requests read straight from the pipe (and the workers' connections, if
    any), on the writer's own thread."""

    def __init__(self, descriptor: int, answers: _Answers, keys_dir: Path) -> None:
        os.set_blocking(descriptor, False)
        self._descriptor = descriptor
        self._reader = wire.FrameReader(descriptor)
        self._answers = answers
        self._keys_dir = keys_dir
        self._generation = 0
        self._items: collections.deque[object] = collections.deque()
        self._ended = False

    def get(self, block: bool = True, timeout: float | None = None) -> object:
        hub = self._answers.hub
        if hub is not None:
            return self._get_with_clients(hub, block, timeout)
        if not self._items and not self._ended:
            if block and not select.select([self._descriptor], [], [], timeout)[0]:
                raise queue.Empty
            self._take(self._reader.read_ready())
        if not self._items:
            raise queue.Empty
        return self._items.popleft()

    def _get_with_clients(self, hub: ClientHub, block: bool, timeout: float | None) -> object:
        hub.sweep(self._answers.idle())
        if not self._items and not self._ended:
            if hub.closing and (timeout is None or timeout > 0.05):
                timeout = 0.05  # come back to close a gone worker's connections once its answers are out
            ready = select.select([self._descriptor, *hub.descriptors()], [], [], timeout if block else 0)[0]
            for descriptor in ready:
                if descriptor == self._descriptor:
                    self._take(self._reader.read_ready())
                else:
                    self._take_client(hub.readable(descriptor))
        if not self._items:
            raise queue.Empty
        return self._items.popleft()

    def _take_client(self, items: list[Item]) -> None:
        for item in items:
            if isinstance(item[0], Submission):
                submission, receipts_for = item
                if receipts_for:
                    self._answers.receipts_due[submission.token] = (receipts_for, submission.records)
                self._items.append(submission)
                continue
            flush, token = item
            if token is not None:  # a worker's flush, answered under the writer's token
                flush.future.add_done_callback(self._answers.flushed(token))
            self._items.append(flush)

    def reload_keys(self) -> None:
        """A worker rotated a key: the files are written; the writer signs with the new ones."""
        assert self._answers.writer is not None
        self._answers.writer.use_keyring(KeyRing(self._keys_dir))

    def get_nowait(self) -> object:
        return self.get(block=False)

    def _take(self, messages: list[tuple[Any, ...]] | None) -> None:
        if messages is None:  # the gateway is gone: commit what it sent, then stop
            self._ended = True
            self._items.append(STOP)
            return
        for message in messages:
            if message[0] == wire.RECORDS:
                _, token, key_generation, rows, to_loop, receipts_for = message
                if key_generation != self._generation:  # rotated in the gateway: the files are written
                    self._generation = key_generation
                    assert self._answers.writer is not None
                    keyring = KeyRing(self._keys_dir)
                    self._answers.writer.use_keyring(keyring)
                if to_loop:
                    self._answers.loop_tokens.add(token)
                records = [wire.pending_from_row(row) for row in rows]
                if receipts_for:
                    self._answers.receipts_due[token] = (receipts_for, records)
                self._items.append(Submission(records, token))
            elif message[0] == wire.FLUSH:
                flush = Flush(checkpoint=bool(message[2]))
                flush.future.add_done_callback(self._answers.flushed(message[1]))
                self._items.append(flush)
            elif message[0] == wire.CLOSE:
                self._ended = True
                self._items.append(STOP)


def _serve_postgres(options: argparse.Namespace, answers: _Answers) -> None:
    from .postgres_writer import PostgresWriter

    inbox = _PipeInbox(options.requests, answers, options.keys_dir)
    try:
        writer = PostgresWriter(
            os.environ.pop(wire.URL_VARIABLE),
            options.postgres_log,
            KeyRing(options.keys_dir),
            checkpoint_every=options.checkpoint_every,
            checkpoint_interval_s=options.checkpoint_interval,
            group_window_s=options.group_window,
            inbox=inbox,
            deliver=answers.done,
            announced=SharedCounter(options.announced),
        )
    except Exception as error:
        answers.send(wire.FAILED, type(error).__name__, str(error))
        return
    answers.writer = writer
    answers.send(wire.READY, writer.last_seq, None)
    try:
        writer.run()
    finally:
        answers.finish()
        answers.send(wire.CLOSED, answers.stats())


def _serve(options: argparse.Namespace, answers: _Answers) -> None:
    store = SqliteAuditStore(options.db)
    inbox = _PipeInbox(options.requests, answers, options.keys_dir)
    announced = SharedCounter(options.announced)
    try:
        keyring = KeyRing(options.keys_dir)
        writer = GroupCommitWriter(
            store,
            keyring,
            CheckpointMirror(options.mirror),
            checkpoint_every=options.checkpoint_every,
            checkpoint_interval_s=options.checkpoint_interval,
            group_window_s=options.group_window,
            journal_path=options.journal,
            index_every=options.index_every,
            index_interval_s=options.index_interval,
            deliver=answers.done,
            announced=announced,
            inbox=inbox,
            published_head=(
                None if options.published_head is None else Checkpoint.from_json(options.published_head)
            ),
            published_tree_head=(
                None
                if options.published_tree_head is None
                else TreeHead.from_json(options.published_tree_head)
            ),
        )
    except Exception as error:
        store.close()
        answers.send(wire.FAILED, type(error).__name__, str(error))
        return
    answers.writer = writer
    if options.clients is not None:
        listener = socket.socket(fileno=options.clients)
        answers.hub = ClientHub(listener, announced, inbox.reload_keys, answers.stats, answers._post)
    cut = None if writer.cut is None else (writer.cut.offset, writer.cut.length)
    answers.send(wire.READY, writer.last_seq, cut)
    try:
        writer.run()
    finally:
        if answers.hub is not None:
            answers.finish()  # every answer out before the workers' connections close
            answers.hub.close()
        store.close()
        answers.finish()
        answers.send(wire.CLOSED, answers.stats())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--journal", type=Path, default=None)
    parser.add_argument("--mirror", type=Path, default=None)
    parser.add_argument(
        "--postgres-log", default=None, help=f"the log id to write in PostgreSQL (${wire.URL_VARIABLE})"
    )
    parser.add_argument("--keys-dir", type=Path, required=True)
    parser.add_argument("--checkpoint-every", type=int, required=True)
    parser.add_argument("--checkpoint-interval", type=float, required=True)
    parser.add_argument("--group-window", type=float, required=True)
    parser.add_argument("--index-every", type=int, default=None)
    parser.add_argument("--index-interval", type=float, default=None)
    parser.add_argument("--requests", type=int, required=True, help="descriptor to read requests from")
    parser.add_argument("--answers", type=int, required=True, help="descriptor to write answers to")
    parser.add_argument("--loop-answers", type=int, required=True, help="descriptor for the event loop's")
    parser.add_argument("--announced", type=int, required=True, help="descriptor of the shared count")
    parser.add_argument("--clients", type=int, default=None, help="descriptor of the workers' socket")
    parser.add_argument("--published-head", default=None, help="the head last published, as JSON")
    parser.add_argument("--published-tree-head", default=None, help="its signed tree head, as JSON")
    parser.add_argument("--log-level", default="info")
    options = parser.parse_args(argv)
    if options.postgres_log is None and None in (options.db, options.journal, options.mirror):
        parser.error("give --db, --journal and --mirror, or --postgres-log")
    if options.postgres_log is not None and wire.URL_VARIABLE not in os.environ:
        parser.error(f"--postgres-log needs the database's URL in ${wire.URL_VARIABLE}")
    # Ctrl-C or a service manager's SIGTERM reach the whole process group: the gateway decides when this
    # process stops (it closes the log, or its end of the request pipe when it exits).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(level=options.log_level)
    answers = _Answers(options.answers, options.loop_answers)
    wire.widen(options.answers)
    wire.widen(options.loop_answers)
    if options.postgres_log is not None:  # the log's lock is the writer's advisory lock in the database
        try:
            _serve_postgres(options, answers)
        finally:
            os.close(options.answers)
            os.close(options.loop_answers)
        return
    try:
        lock = WriterLock(options.db, suffix=".writer-lock", wait=True)
    except Exception as error:
        answers.send(wire.FAILED, type(error).__name__, str(error))
        return
    try:
        _serve(options, answers)
    finally:
        lock.release()
        os.close(options.answers)
        os.close(options.loop_answers)


if __name__ == "__main__":
    main()
