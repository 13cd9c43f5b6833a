"""SQLite plumbing shared by the list store and the audit log: per-thread connections and transactions.

Both stores open one connection per thread (a SQLite connection is not shared across threads while a
statement runs) and keep every connection they opened, so that ``close()`` closes them all.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class ThreadConnections:
    """One connection per thread, opened on first use by ``open_connection``; all closed together."""

    def __init__(self, open_connection: Callable[[], sqlite3.Connection]) -> None:
        self._open_connection = open_connection
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def current(self) -> sqlite3.Connection:
        """This thread's connection."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self.open()
            self._local.connection = connection
        return connection

    def open(self) -> sqlite3.Connection:
        """A new connection for a caller that keeps its own (closed with the others by ``close``)."""
        connection = self._open_connection()
        with self._lock:
            self._opened.append(connection)
        return connection

    def close(self) -> None:
        with self._lock:
            for connection in self._opened:
                connection.close()
            self._opened.clear()
        self._local = threading.local()


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction (``BEGIN IMMEDIATE``): committed if the block ends, rolled back if it raises."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    else:
        connection.execute("COMMIT")


@contextmanager
def consistent_read(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One consistent read across several statements."""
    connection.execute("BEGIN")
    try:
        yield connection
    finally:
        connection.execute("COMMIT")
