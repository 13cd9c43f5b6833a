"""Channels and credentials: TLS (optionally mutual), the bearer token sent with every call, and
balancing across gateway replicas.

A target is one ``HOST:PORT``, a DNS name (every address it resolves to is used), or several
``IP:PORT`` addresses (a list, or one string separated by commas). Calls are spread across the
addresses with gRPC's ``round_robin`` policy; an address that stops answering is left out until it
answers again.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

AUTHORIZATION_KEY = "authorization"


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Trust ``ca`` (PEM; ``None`` uses the system's roots); ``cert`` and ``key`` make it mutual TLS."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None

    @classmethod
    def from_files(
        cls,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        *,
        server_name: str | None = None,
    ) -> TLSConfig:
        def read(path: str | Path | None) -> bytes | None:
            return None if path is None else Path(path).read_bytes()

        if (cert is None) != (key is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        return cls(read(ca), read(cert), read(key), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )

    def options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


Target = str | Sequence[str]
# gRPC waits 1 s (growing) before it connects again after a connection failed, and a call meanwhile
# fails at once with UNAVAILABLE: the SDK's retries (RetryPolicy: 0.05, 0.1, 0.2 s) would all fail on
# the failed connection. From 50 ms instead, a retry finds a new connection (a gateway worker that
# ended, a replica restarted): the reset connection costs one attempt, not the call.
_RECONNECT_BACKOFF_MS = 50
_BALANCED: list[tuple[str, Any]] = [
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.initial_reconnect_backoff_ms", _RECONNECT_BACKOFF_MS),
]


def resolve_target(target: Target) -> str:
    """The gRPC target for one address, a DNS name, or several ``IP:PORT`` addresses."""
    addresses = [a.strip() for a in (target.split(",") if isinstance(target, str) else target) if a.strip()]
    if not addresses:
        raise ValueError("no gateway address given")
    if len(addresses) == 1:
        return addresses[0]
    addresses = [
        "127.0.0.1:" + a.rpartition(":")[2] if a.rpartition(":")[0] == "localhost" else a for a in addresses
    ]
    families = {_family(address) for address in addresses}
    if len(families) != 1:
        raise ValueError("several gateway addresses must all be IPv4 or all IPv6")
    return f"{families.pop()}:{','.join(addresses)}"


def _family(address: str) -> str:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        raise ValueError(
            f"{address!r}: several addresses must be IP:PORT; for host names give one DNS name that "
            "resolves to every replica"
        ) from None
    if not port.isdigit():
        raise ValueError(f"{address!r}: no port")
    return "ipv4" if version == 4 else "ipv6"


def sync_channel(target: Target, tls: TLSConfig | None) -> grpc.Channel:
    resolved = resolve_target(target)
    if tls is None:
        return grpc.insecure_channel(resolved, options=_BALANCED)
    return grpc.secure_channel(resolved, tls.credentials(), options=_BALANCED + tls.options())


def async_channel(target: Target, tls: TLSConfig | None) -> grpc.aio.Channel:
    resolved = resolve_target(target)
    if tls is None:
        return grpc.aio.insecure_channel(resolved, options=_BALANCED)
    return grpc.aio.secure_channel(resolved, tls.credentials(), options=_BALANCED + tls.options())


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    token = (token or "").strip()
    return ((AUTHORIZATION_KEY, f"Bearer {token}"),) if token else ()
