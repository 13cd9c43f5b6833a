"""PostgreSQL plumbing for the list store: a connection pool, snapshot reads and serialised writes.

Connections are in autocommit mode: a plain read is one statement on whatever connection the pool
lends. A read of several statements that must agree runs in a ``REPEATABLE READ READ ONLY``
transaction (one snapshot). Every write transaction first locks the data-version row of ``meta``, so
writers take turns — across threads and across gateways on the same database — as SQLite's single
writer does: versions are handed out and committed in order, and a writer sees every earlier write.
"""

from __future__ import annotations

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
DEFAULT_WAIT_S = 5.0
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
    ) -> None:
        self.url = url
        try:  # one connection first: its error says why (a pool's timeout would not)
            psycopg.connect(url, connect_timeout=max(1, round(connect_timeout))).close()
        except psycopg.Error as error:
            raise StoreError(f"cannot connect to PostgreSQL at {redacted(url)}: {error}") from None
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True},
            timeout=wait,
            name="mustcheck-store",
            open=False,
        )
        self._pool.open(wait=True, timeout=connect_timeout)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection for single-statement reads (each statement sees the latest commit)."""
        with _unavailable_when_unreachable(), self._pool.connection() as connection:
            yield connection

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """Several reads that see one snapshot of the database."""
        with _unavailable_when_unreachable(), self._pool.connection() as connection:
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
            _unavailable_when_unreachable(),
            self._pool.connection() as connection,
            connection.transaction(),
        ):
            if connection.execute(WRITER_LOCK).fetchone() is None:
                raise StoreError("store has no data version; was it migrated?")
            yield connection

    def close(self) -> None:
        self._pool.close()


@contextmanager
def _unavailable_when_unreachable() -> Iterator[None]:
    """A lost connection or an empty pool is an outage (retry later), not a fault of the request."""
    try:
        yield
    except (psycopg.OperationalError, PoolTimeout) as error:
        raise StoreUnavailable(f"the PostgreSQL store cannot be reached: {error}") from None
