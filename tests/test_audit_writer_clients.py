"""The embedded audit writer's answers to its worker connections (audit/writer_process.py, _Answers).

The writer writes a commit's answers without blocking, on its own thread; what a full connection (a
worker slow to read) refuses goes to an answering thread, which writes it blocking while the writer
goes on, and takes every later answer too until it has caught up: in order, none lost. A client here
speaks the writer's protocol (audit/wire.py) as a worker does, sends a burst of records each asking for
a receipt, and reads nothing until the writer has committed them all.
"""

from __future__ import annotations

import array
import datetime as dt
import fcntl
import os
import select
import socket
import termios
from pathlib import Path
from typing import Any

from mustcheck_gateway.audit import AuditLog, verify_data_dir, wire
from mustcheck_gateway.audit.record import PendingRecord
from mustcheck_gateway.audit.remote_writer import _connect, _welcome
from mustcheck_gateway.audit.sqlite_log import SqliteAuditStore
from mustcheck_gateway.audit.writer_clients import HELLO, MAIN
from mustcheck_gateway.store.codec import format_instant

from threads import wait_until

BURST = 2000


def _record(number: int) -> PendingRecord:
    return PendingRecord(
        format_instant(dt.datetime.now(dt.UTC)),
        "check",
        "burst",
        "approval",
        "MOHURD-0001",
        f"burst {number}",
        "",
        "organization",
        None,
        None,
        None,
        None,
        "no_record",
        (),
        0,
        "OK",
        0,
        "{}",
    )


def _unread(connection: socket.socket) -> int:
    """The bytes the writer has written to ``connection`` that it has not read yet."""
    count = array.array("i", [0])
    fcntl.ioctl(connection.fileno(), termios.FIONREAD, count)
    return count[0]


def test_answers_a_full_connection_refuses_arrive_later_all_and_in_order(tmp_path: Path) -> None:
    log = AuditLog.open(tmp_path, workers=True)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _connect(connection, log.clients_path)
        connection.sendall(wire.encode((HELLO, MAIN, None)))
        _, shared_count = _welcome(connection)
        os.close(shared_count)
        for token in range(1, BURST + 1):  # each a check asking for its receipt; no answer read
            message = (wire.RECORDS, token, 0, [wire.pending_row(_record(token))], False, [0])
            connection.sendall(wire.encode(message))
        database = SqliteAuditStore(log.path)
        try:  # the writer indexes a commit's records after it has answered (or handed the answers off)
            assert wait_until(lambda: database.count() >= BURST, timeout=60)
        finally:
            database.close()
        unread = _unread(connection)

        reader = wire.FrameReader(connection.fileno())
        answered: list[tuple[int, Any]] = []
        while len(answered) < BURST:
            # Bounded, so that an answer lost fails the test rather than hanging it.
            assert select.select([connection], [], [], 30)[0], f"{len(answered)} answers, then none"
            messages = reader.read()
            assert messages is not None, f"the writer closed the connection after {len(answered)} answers"
            for answer in messages:
                assert answer[0] == wire.DONE, answer
                answered += answer[1]
        receipts = sum(len(outcome[1][0]) for _, outcome in answered)  # less than the answers' bytes
        # Everything was committed, yet the connection held only part of the answers: the rest waited
        # for the answering thread, which wrote it once the client read.
        assert unread < receipts, (unread, receipts)
        assert [token for token, _ in answered] == list(range(1, BURST + 1))  # in order, none lost
        seqs = [outcome[0] for _, outcome in answered]
        assert seqs == [[seq] for seq in range(seqs[0][0], seqs[0][0] + BURST)]
        assert all(len(outcome[1]) == 1 and outcome[1][0] for _, outcome in answered)  # each its receipt
        connection.sendall(wire.encode((wire.CLOSE,)))
        closed = reader.read()  # asked for once all it sent is answered: CLOSED comes last
        assert closed is not None and [m[0] for m in closed] == [wire.CLOSED]
    finally:
        connection.close()
        log.close()
    assert verify_data_dir(tmp_path).ok
