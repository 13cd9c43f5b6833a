"""Channels and credentials: TLS (optionally mutual) and the bearer token sent with every call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def sync_channel(target: str, tls: TLSConfig | None) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, tls.credentials(), options=tls.options())


def async_channel(target: str, tls: TLSConfig | None) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(target)
    return grpc.aio.secure_channel(target, tls.credentials(), options=tls.options())


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    token = (token or "").strip()
    return ((AUTHORIZATION_KEY, f"Bearer {token}"),) if token else ()
