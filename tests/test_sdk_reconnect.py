"""The SDK's retry of UNAVAILABLE reaches a new connection when the one it had was reset.

A connection reset before the answer (a gateway worker killed with connections queued on its socket, a
replica restarted) fails the call's attempt with UNAVAILABLE. gRPC then waits before it connects again
(1 s by default) and fails every call meanwhile at once: the SDK's retries (0.05, 0.1, 0.2 s) all failed
on the reset connection. The SDK's channels reconnect from 50 ms, so the default retry policy gets the
answer through a new connection. A check retried after it reached the gateway is audited twice: two
checks, both true.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from mustcheck import Client, Outcome

from factories import new_uscc


class ResetFirst:
    """A TCP relay to ``target`` that resets the first connection it takes (after reading what the
    client sent: the request reached nobody) and relays the others."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.target = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.connections == 1:
                client.recv(1 << 16)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()  # RST
                continue
            upstream = socket.create_connection(self._upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self._listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(1 << 16):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def reset_first(target: str) -> Iterator[ResetFirst]:
    relay = ResetFirst(target)
    try:
        yield relay
    finally:
        relay.close()


def test_a_check_whose_connection_is_reset_is_answered_through_a_new_one(
    reset_first: ResetFirst, token: str
) -> None:
    with Client(reset_first.target, token=token, timeout=10) as client:  # the default retry policy
        result = client.check(new_uscc(), "MOHURD-0001")
    assert result.outcome is Outcome.NO_RECORD
    assert reset_first.connections >= 2  # the reset one, then the one that answered
