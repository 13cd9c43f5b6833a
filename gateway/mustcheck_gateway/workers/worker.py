"""One worker process of a multi-process gateway: ``python -m mustcheck_gateway.workers.worker``.

Started by the supervisor (:mod:`.supervisor`) with the gateway's configuration (JSON, with its
:class:`~..server.WorkerRole`), the write end of a status pipe and the read end of a lifeline pipe.
It serves the whole gateway on the shared port, then writes one JSON line to the status pipe: its
ports (and the first admin's token file, if it made one), or why it could not start. It stops
gracefully on SIGTERM or SIGINT, and when the lifeline ends (the supervisor is gone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal

import structlog

from ..audit import AuditIntegrityError, KeyRingError
from ..logs import configure_logging
from ..policy import PolicyError
from ..server import ConfigError, start_gateway
from ..store import StoreError
from .config import config_from_json

EXIT_FAILED = 1
EXIT_INVALID = 2


def _report(descriptor: int, **fields: object) -> None:
    data = (json.dumps(fields) + "\n").encode()
    while data:
        data = data[os.write(descriptor, data) :]


async def _serve(options: argparse.Namespace) -> int:
    config = config_from_json(options.config)
    if config.worker is not None:  # every log line says which worker wrote it
        structlog.contextvars.bind_contextvars(worker=config.worker.index)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)

    def supervisor_gone() -> None:
        # Readable only at its end, and then on every turn of the loop: stop watching, or the drain that
        # follows spins a core.
        loop.remove_reader(options.lifeline)
        stopping.set()

    loop.add_reader(options.lifeline, supervisor_gone)
    try:
        gateway = await start_gateway(config)
    except ConfigError as error:
        _report(options.status, error=str(error), code=EXIT_INVALID)
        return EXIT_INVALID
    except (PolicyError, StoreError, AuditIntegrityError, KeyRingError) as error:
        _report(options.status, error=str(error), code=EXIT_FAILED)
        return EXIT_FAILED
    _report(
        options.status,
        port=gateway.port,
        http_port=gateway.http_port,
        metrics_port=gateway.metrics_port,
        admin_token_file=None if gateway.admin_token_file is None else str(gateway.admin_token_file),
        pid=os.getpid(),
    )
    await stopping.wait()
    await gateway.stop()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="the gateway's configuration, as JSON")
    parser.add_argument("--status", type=int, required=True, help="descriptor to report the start on")
    parser.add_argument(
        "--lifeline", type=int, required=True, help="descriptor that ends with the supervisor"
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="json", choices=["json", "console"])
    options = parser.parse_args(argv)
    configure_logging(level=options.log_level, json=options.log_format == "json")
    raise SystemExit(asyncio.run(_serve(options)))


if __name__ == "__main__":
    main()
