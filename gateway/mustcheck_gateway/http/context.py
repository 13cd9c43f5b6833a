"""An HTTP request as the gRPC pipeline sees a call: its metadata, its peer, its client certificate.

The gateway's authentication (:mod:`..auth.authenticate`) reads the ``authorization`` metadata, the
verified client certificate's common name and the peer's address from a gRPC servicer context; this
class answers the same questions for an HTTP request, so that both bindings share one authenticator,
one failed-authentication throttle and one error mapping. ``abort`` ends the call with
:class:`HttpAbort`, which the binding turns into an HTTP status and a JSON body.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import grpc

from ..auth.authenticate import AUTHORIZATION_KEY

# Request headers that travel as call metadata: the credentials, and the caller's W3C trace context (for
# an interceptor that continues the caller's trace).
METADATA_HEADERS = (AUTHORIZATION_KEY, "traceparent", "tracestate")


class HttpAbort(grpc.aio.AbortError):
    """The pipeline refused the call: its gRPC status, message and trailing metadata."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: Sequence[tuple[str, str]]) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailers = dict(trailers)


def grpc_peer(host: str | None, port: int | None) -> str:
    """A socket address in gRPC's peer spelling (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``)."""
    if not host:
        return ""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return f"unix:{host}"
    if address.version == 6:
        mapped = address.ipv4_mapped
        if mapped is not None:
            return f"ipv4:{mapped}:{port or 0}"
        return f"ipv6:[{host}]:{port or 0}"
    return f"ipv4:{host}:{port or 0}"


def certificate_common_name(certificate: Mapping[str, Any] | None) -> str | None:
    """The common name of a verified peer certificate as :meth:`ssl.SSLSocket.getpeercert` gives it."""
    if not certificate:
        return None
    for relative_name in certificate.get("subject", ()):
        for key, value in relative_name:
            if key == "commonName":
                return str(value)
    return None


class HttpCallContext:
    """What the pipeline asks of a call, answered from an HTTP request."""

    def __init__(
        self, *, metadata: Sequence[tuple[str, str]] = (), peer: str, common_name: str | None
    ) -> None:
        self._metadata = tuple(metadata)
        self._peer = peer
        self._auth: dict[str, list[bytes]] = (
            {"x509_common_name": [common_name.encode()]} if common_name is not None else {}
        )
        self.trailers: tuple[tuple[str, str], ...] = ()
        self._code: grpc.StatusCode | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    def peer(self) -> str:
        return self._peer

    def set_trailing_metadata(self, trailing_metadata: Sequence[tuple[str, str]]) -> None:
        self.trailers = tuple(trailing_metadata)

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.trailers

    def code(self) -> grpc.StatusCode | None:
        """The status the call was aborted with (None while it has not been)."""
        return self._code

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> NoReturn:
        self._code = code
        self.trailers = (*self.trailers, *trailing_metadata)
        raise HttpAbort(code, details, self.trailers)
