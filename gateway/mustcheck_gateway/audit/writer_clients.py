"""The audit writer's other clients: the worker processes of one gateway (``serve --workers``).

One gateway, one audit log, one writer: the process that opened the log talks to its writer over the
pipes it started it with; each worker process of the same gateway connects to the writer's listening
Unix socket (:data:`SOCKET_NAME` in the data directory, passed to every writer the log starts) and
submits over it the same frames (:mod:`.wire`). A worker connects twice: its *main* connection carries
its requests and the answers its threads wait for; its *loop* connection the answers its event loop
reads itself. The writer gives each worker a cell of the shared count of announced requests
(:mod:`.announced`), sent with the welcome as a descriptor (``SCM_RIGHTS``).

Tokens are the worker's own: the writer files each submission under a token of its own (negative,
never one of the pipe's) and answers the worker under the worker's. A worker that disconnects (it
ended, or was killed) is forgotten: its cell is zeroed, a half-sent frame dropped, its answers not
sent; whatever it had sent whole is committed all the same. ``CLOSE`` from a worker asks for its
answers so far and ``CLOSED``; the writer goes on.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from . import wire
from .announced import SLOTS, SharedCounter
from .writer import Flush, Submission

log = structlog.get_logger("mustcheck.audit")

SOCKET_NAME = "audit-writer.sock"
# What a worker's request makes for the writer's inbox: a submission and the indexes of the records to
# sign receipts for, a flush and the writer's token to answer it under (None: a CLOSE's own flush).
Item = tuple[Submission, list[int]] | tuple[Flush, int | None]
HELLO, WELCOME = "hello", "welcome"
MAIN, LOOP = "main", "loop"


@dataclass(eq=False)
class Client:
    """One worker's connections, its cell of the announced count and its key generation."""

    ident: int
    slot: int
    main: socket.socket
    reader: wire.FrameReader
    loop: socket.socket | None = None
    generation: int = 0
    alive: bool = True
    tokens: set[int] = field(default_factory=set)  # the writer's tokens of submissions not yet answered


@dataclass(eq=False)
class _Unknown:
    """A connection that has not said hello yet."""

    connection: socket.socket
    reader: wire.FrameReader


class ClientHub:
    """The writer's side of its workers' connections (used on the writer's thread only, except
    :meth:`route`, which runs where answers are made: the writer's thread too)."""

    def __init__(
        self,
        listener: socket.socket,
        announced: SharedCounter,
        reload_keys: Callable[[], None],
        stats: Callable[[], tuple[int, int, int, float]],
        post: Callable[[list[tuple[int, bytes]]], None],
    ) -> None:
        listener.setblocking(False)
        self._listener = listener
        self._announced = announced
        self._reload_keys = reload_keys
        self._stats = stats
        self._post = post
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self._unknown: dict[int, _Unknown] = {}
        self._clients: dict[int, Client] = {}  # by the main connection's descriptor
        self._by_id: dict[int, Client] = {}
        # the writer's token -> (client, the client's token, whether its loop reads the answer)
        self._routes: dict[int, tuple[Client, int, bool]] = {}
        self._closing: list[socket.socket] = []  # connections of gone clients, closed when nothing is owed
        self.generation = 0  # the key generation the writer's key ring was last reloaded for

    def descriptors(self) -> list[int]:
        return [self._listener.fileno(), *self._unknown, *self._clients]

    def readable(self, descriptor: int) -> list[Item]:
        """Read what ``descriptor`` holds; the inbox items it makes (submissions, flushes)."""
        if descriptor == self._listener.fileno():
            self._accept()
            return []
        unknown = self._unknown.get(descriptor)
        if unknown is not None:
            self._greet(descriptor, unknown)
            return []
        client = self._clients.get(descriptor)
        if client is None:
            return []
        try:
            messages = client.reader.read_ready()
        except OSError:
            messages = None
        if messages is None:
            self._drop(client, "disconnected")
            return []
        return [item for message in messages for item in self._request(client, message)]

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            connection.setblocking(False)
            self._unknown[connection.fileno()] = _Unknown(connection, wire.FrameReader(connection.fileno()))

    def _greet(self, descriptor: int, unknown: _Unknown) -> None:
        try:
            messages = unknown.reader.read_ready()
        except OSError:
            messages = None
        if messages == []:
            return
        del self._unknown[descriptor]
        if not messages or messages[0][0] != HELLO:
            unknown.connection.close()
            return
        _, channel, ident = messages[0]
        if channel == MAIN:
            slot = self._free_slot()
            if slot is None:
                log.error("audit_writer_clients_full", limit=SLOTS - 1)
                unknown.connection.close()
                return
            client = Client(next(self._ids), slot, unknown.connection, unknown.reader)
            self._clients[descriptor] = client
            self._by_id[client.ident] = client
            self._announced.reset(slot)
            self._announced.span = max(self._announced.span, slot + 1)
            frame = wire.encode((WELCOME, client.ident, slot, self._stats()))
            try:
                unknown.connection.setblocking(True)
                socket.send_fds(unknown.connection, [frame], [self._announced.descriptor])
                unknown.connection.setblocking(False)
            except OSError:
                self._drop(client, "gone before its welcome")
            return
        owner = self._by_id.get(int(ident)) if channel == LOOP else None
        if owner is None or owner.loop is not None:
            unknown.connection.close()
            return
        owner.loop = unknown.connection
        # Answers only go this way: what the worker sends here (nothing, or its end) is not read.

    def _free_slot(self) -> int | None:
        used = {client.slot for client in self._clients.values()}
        return next((slot for slot in range(1, SLOTS) if slot not in used), None)

    def _request(self, client: Client, message: tuple[Any, ...]) -> list[Item]:
        if message[0] == wire.RECORDS:
            _, token, key_generation, rows, to_loop, receipts_for = message
            if key_generation != client.generation:  # rotated in that worker: the files are written
                client.generation = key_generation
                self._reload_keys()
            mine = -next(self._tokens)
            self._routes[mine] = (client, token, bool(to_loop) and client.loop is not None)
            client.tokens.add(mine)
            records = [wire.pending_from_row(row) for row in rows]
            return [(Submission(records, mine), list(receipts_for))]
        if message[0] == wire.FLUSH:
            mine = -next(self._tokens)
            self._routes[mine] = (client, message[1], False)
            client.tokens.add(mine)
            return [(Flush(checkpoint=bool(message[2])), mine)]
        if message[0] == wire.CLOSE:  # answered once everything it sent before is: CLOSED, then its end
            flush = Flush()
            flush.future.add_done_callback(lambda _: self._close(client))
            return [(flush, None)]
        return []

    def route(self, token: int) -> tuple[int, int] | None:
        """Where the answer under the writer's ``token`` goes: (descriptor, the client's token), or None
        (the client is gone)."""
        route = self._routes.pop(token, None)
        if route is None:
            return None
        client, theirs, loop = route
        client.tokens.discard(token)
        if not client.alive:
            return None
        connection = client.loop if loop and client.loop is not None else client.main
        return connection.fileno(), theirs

    def _close(self, client: Client) -> None:
        if client.alive:  # after its answers, in order (they may still be on their way)
            self._post([(client.main.fileno(), wire.encode((wire.CLOSED, self._stats())))])
            self._drop(client, "closed")

    def _drop(self, client: Client, why: str) -> None:
        if not client.alive:
            return
        client.alive = False
        self._clients.pop(client.main.fileno(), None)
        self._by_id.pop(client.ident, None)
        self._announced.reset(client.slot)
        for token in client.tokens:
            self._routes.pop(token, None)
        client.tokens.clear()
        self._closing.extend(c for c in (client.main, client.loop) if c is not None)
        log.info("audit_writer_client_gone", client=client.ident, why=why)

    @property
    def closing(self) -> bool:
        """Whether connections of gone clients wait to be closed (:meth:`sweep`)."""
        return bool(self._closing)

    def sweep(self, idle: bool) -> None:
        """Close the connections of gone clients once no answer is being written (``idle``): a
        descriptor closed under a write in progress could be a new connection's by then."""
        if idle and self._closing:
            for connection in self._closing:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self._closing.clear()

    def close(self) -> None:
        for client in list(self._clients.values()):
            self._drop(client, "the writer stops")
        for unknown in self._unknown.values():
            unknown.connection.close()
        self._unknown.clear()
        self.sweep(True)
        self._listener.close()
