"""The port of a multi-process gateway: held by its supervisor, shared only by its own workers.

A single-process gateway binds without ``SO_REUSEPORT``, so a second gateway's bind on its port fails
(server.py). The workers of one gateway must share their port, so they bind with ``SO_REUSEPORT``,
which would let any other process of the same user bind it too and take a share of the callers.
The supervisor keeps the port the gateway's, in two ways:

* it binds the port first (with ``SO_REUSEPORT``, not listening: the kernel gives connections only to
  listening sockets) and holds that socket for the gateway's life, so a port 0 is picked once for all
  workers, a gateway without ``SO_REUSEPORT`` cannot take the port meanwhile, and one already on it
  makes this bind fail;
* it holds a lock named after the port (``flock`` on ``mustcheck-<uid>-port-<N>.lock`` in the user's
  runtime directory), so that a second multi-process gateway, whose binds the kernel would allow, is
  refused by name. The kernel releases both when the supervisor ends, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
from pathlib import Path


class PortInUse(Exception):
    """Another gateway holds the port (the message says which address)."""


def _runtime_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime)
    return Path(tempfile.gettempdir())


class HeldPort:
    """A port reserved (bound, not listening, ``SO_REUSEPORT``) and locked for one gateway."""

    def __init__(self, listen: str, what: str = "gRPC") -> None:
        host, _, port_text = listen.rpartition(":")
        if not host or not port_text.isdigit():
            raise PortInUse(f"{listen!r} is not HOST:PORT")
        host = host.strip("[]")
        self.host = host
        self._socket: socket.socket | None = None
        self._lock = -1
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                host, int(port_text), type=socket.SOCK_STREAM
            )[0]
        except socket.gaierror as error:
            raise PortInUse(f"cannot listen on {listen}: {error}") from None
        reserved = socket.socket(family, kind, proto)
        try:
            reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            reserved.bind(address)
        except OSError:
            reserved.close()
            raise PortInUse(
                f"cannot listen on {listen}: the address is in use (another gateway?) or not available"
            ) from None
        self._socket = reserved
        self.port = int(reserved.getsockname()[1])
        self.path = _runtime_dir() / f"mustcheck-{os.getuid()}-port-{self.port}.lock"
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            self.release()
            raise PortInUse(f"cannot lock the port {self.port} ({self.path}): {error}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            holder = _holder(self.path)
            self.release()
            raise PortInUse(
                f"cannot listen on {listen}: the {what} port {self.port} is in use by another gateway{holder}"
            ) from None
        self._lock = descriptor
        os.ftruncate(self._lock, 0)
        os.pwrite(self._lock, f"{os.getpid()}\n".encode(), 0)

    @property
    def listen(self) -> str:
        """HOST:PORT with the port picked (for a listen address that gave port 0)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def release(self) -> None:
        if self._lock >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock, 0)
            os.close(self._lock)
            self._lock = -1
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(path.read_text().strip() or "0")
        if pid:
            return f" (process {pid})"
    return ""
