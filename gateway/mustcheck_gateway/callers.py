"""Who is calling: the caller's identity comes from the connection, never from a request field.

Until token and certificate authentication land, a gateway serves one caller whose
department is configured at start (``StaticAuthenticator``). Everything downstream
sees only :class:`Caller`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import grpc


@dataclass(frozen=True, slots=True)
class Caller:
    caller_id: str
    department: str
    roles: frozenset[str] = field(default_factory=frozenset)


class Authenticator(Protocol):
    def authenticate(self, context: grpc.aio.ServicerContext[object, object]) -> Caller:
        """Identify the caller of this RPC or raise ``errors.Unauthenticated``."""
        ...


class StaticAuthenticator:
    """Every connection is the one caller configured at start."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    def authenticate(self, context: grpc.aio.ServicerContext[object, object]) -> Caller:
        return self.caller
