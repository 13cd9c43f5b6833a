"""PostgreSQL plumbing for the list store: a connection pool, snapshot reads and serialised writes.

Connections are in autocommit mode: a plain read is one statement on whatever connection the pool
lends. A read of several statements that must agree runs in a ``REPEATABLE READ READ ONLY``
transaction (one snapshot). Every write transaction first locks the data-version row of ``meta``, so
writers take turns — across threads and across gateways on the same database — as SQLite's single
writer does: versions are handed out and committed in order, and a writer sees every earlier write.

Every call is bounded, so that in an outage a check fails with UNAVAILABLE well within the SDK's
default 3 s deadline (and the caller can fail over to another replica): a call waits at most
``wait`` (1 s) for a pooled connection, and only ``OUTAGE_WAIT_S`` while the database was found
unreachable in the last ``OUTAGE_HOLD_S`` (a lookup is two calls: the second does not wait again);
a read statement runs at most ``statement_timeout`` (1.5 s; writes and migrations are not cut short);
the pool's connection attempts time out after 2 s, and ``tcp_user_timeout`` drops a connection whose
server stopped acknowledging.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .base import StoreError, StoreUnavailable
from .urls import redacted

Connection = psycopg.Connection[tuple[Any, ...]]

DEFAULT_MIN_CONNECTIONS = 1
# The gateway's executor threads, the registry's refresh and an import at once, with room to spare.
DEFAULT_MAX_CONNECTIONS = 10
DEFAULT_CONNECT_TIMEOUT_S = 10.0
# How long a call waits for a pooled connection (or for the database to come back) before it fails: a
# check fails closed rather than holding one of the gateway's few worker threads.
DEFAULT_WAIT_S = 1.0
# Once the database was found unreachable, calls for this long wait only OUTAGE_WAIT_S.
OUTAGE_HOLD_S = 1.0
OUTAGE_WAIT_S = 0.05
# The longest a read statement may run (a lock wait or a struggling server), in milliseconds.
DEFAULT_STATEMENT_TIMEOUT_MS = 1500
# libpq's own bounds on each pooled connection: connecting (whole seconds, 2 at least) and unacknowledged
# data (milliseconds).
POOL_CONNECT_TIMEOUT_S = 2
TCP_USER_TIMEOUT_MS = 2000
WRITER_LOCK = "SELECT value FROM meta WHERE key = 'data_version' FOR UPDATE"


class PostgresConnections:
    """A pool of autocommit connections to one database; ``close()`` closes them all."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = DEFAULT_MIN_CONNECTIONS,
        max_size: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        wait: float = DEFAULT_WAIT_S,
        statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    ) -> None:
        self.url = url
        self.wait = wait
        self.statement_timeout_ms = statement_timeout_ms
        self._unreachable_at = float("-inf")
        try:  # one connection first: its error says why (a pool's timeout would not)
            psycopg.connect(url, connect_timeout=max(1, round(connect_timeout))).close()
        except psycopg.Error as error:
            raise StoreError(f"cannot connect to PostgreSQL at {redacted(url)}: {error}") from None
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={
                "autocommit": True,
                "connect_timeout": POOL_CONNECT_TIMEOUT_S,
                "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
            },
            configure=self._configure,
            timeout=wait,
            name="mustcheck-store",
            open=False,
        )
        self._pool.open(wait=True, timeout=connect_timeout)

    def _configure(self, connection: Connection) -> None:
        """Each new pooled connection: reads are cut short after ``statement_timeout_ms``."""
        connection.execute(f"SET statement_timeout = {int(self.statement_timeout_ms)}")

    def _timeout(self) -> float:
        """How long this call may wait for a connection: short while the database is known away."""
        if time.monotonic() - self._unreachable_at < OUTAGE_HOLD_S:
            return min(self.wait, OUTAGE_WAIT_S)
        return self.wait

    @contextmanager
    def _bounded(self) -> Iterator[None]:
        """A lost connection or an empty pool is an outage (retry later), not a fault of the request."""
        try:
            yield
        except (psycopg.OperationalError, PoolTimeout) as error:
            self._unreachable_at = time.monotonic()
            raise StoreUnavailable(f"the PostgreSQL store cannot be reached: {error}") from None
        self._unreachable_at = float("-inf")

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection for single-statement reads (each statement sees the latest commit)."""
        with self._bounded(), self._pool.connection(self._timeout()) as connection:
            yield connection

    @contextmanager
    def unbounded(self) -> Iterator[Connection]:
        """A connection whose statements may run as long as they need (migrations)."""
        with self.connection() as connection:
            connection.execute("SET statement_timeout = 0")
            try:
                yield connection
            finally:
                if not connection.closed:
                    connection.execute(f"SET statement_timeout = {int(self.statement_timeout_ms)}")

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """Several reads that see one snapshot of the database."""
        with self._bounded(), self._pool.connection(self._timeout()) as connection:
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield connection
            finally:
                if not connection.closed:
                    connection.execute("ROLLBACK")  # read only: nothing to keep

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction holding the writer lock: committed if the block ends, rolled back if it
        raises (``psycopg.Rollback`` rolls back quietly)."""
        with (
            self._bounded(),
            self._pool.connection(self._timeout()) as connection,
            connection.transaction(),
        ):
            connection.execute("SET LOCAL statement_timeout = 0")  # an import may take minutes
            if connection.execute(WRITER_LOCK).fetchone() is None:
                raise StoreError("store has no data version; was it migrated?")
            yield connection

    def close(self) -> None:
        self._pool.close()
