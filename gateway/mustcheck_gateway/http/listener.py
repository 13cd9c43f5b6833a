"""The HTTP/JSON listener (``serve --http HOST:PORT``): aiohttp in the gateway's own event loop.

The gateway runs on ``grpc.aio``, an asyncio server; aiohttp is an asyncio HTTP server too, so both
bindings run in one loop and one process and call the same servicer objects, with no thread hand-off
and no second copy of any state (rate limits, the failed-authentication throttle, the audit writer).
TLS takes the gRPC listener's certificate options: ``--tls-cert``/``--tls-key``, and ``--client-ca``
for mutual TLS, where a client certificate is required and its common name maps to a caller.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from .binding import make_app
from .pipeline import CallPipeline


@dataclass(frozen=True)
class HttpTLS:
    cert: Path
    key: Path
    client_ca: Path | None = None


def server_ssl_context(tls: HttpTLS) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert, tls.key)
    if tls.client_ca is not None:
        context.load_verify_locations(cafile=str(tls.client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["http/1.1"])
    return context


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{listen!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


class HttpListener:
    """The running HTTP listener; :meth:`stop` closes it (calls in flight are given ``grace`` seconds)."""

    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self.runner = runner
        self.port = port

    @classmethod
    async def start(
        cls,
        listen: str,
        pipeline: CallPipeline,
        *,
        tls: HttpTLS | None = None,
        health: Any = None,
        grace_s: float = 2.0,
        reuse_port: bool = False,
    ) -> HttpListener:
        """``reuse_port``: share the port with the other workers of the gateway (``serve --workers``)."""
        host, port = split_listen(listen)
        await pipeline.prepare()
        runner = web.AppRunner(
            make_app(pipeline, health),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=grace_s,
            # A body refused unread (too large, too slow) is read and discarded for at most 2 s after the
            # answer (so that a client still sending reads it), then the connection closes.
            lingering_time=2.0,
        )
        await runner.setup()
        site = web.TCPSite(
            runner,
            host,
            port,
            ssl_context=server_ssl_context(tls) if tls is not None else None,
            reuse_address=True,
            reuse_port=reuse_port,
        )
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        bound = runner.addresses[0]
        return cls(runner, int(bound[1]))

    async def stop(self) -> None:
        await self.runner.cleanup()
