"""A gateway's configuration as the supervisor hands it to a worker process (JSON on its command line),
and what a worker is told about its place in the gateway (:class:`WorkerRole`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..auth.peers import FailedAuthLimit
from ..server import GatewayConfig, TLSFiles, WorkerRole

_PATHS = ("data_dir", "policy_dir")


def config_to_json(config: GatewayConfig) -> str:
    """``config`` as JSON (its clock stays behind: a worker uses the wall clock)."""
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        if field.name == "clock":
            continue
        value = getattr(config, field.name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, TLSFiles):
            value = [
                str(value.cert),
                str(value.key),
                None if value.client_ca is None else str(value.client_ca),
            ]
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        fields[field.name] = value
    return json.dumps(fields)


def config_from_json(text: str) -> GatewayConfig:
    fields: dict[str, Any] = json.loads(text)
    for name in _PATHS:
        fields[name] = Path(fields[name])
    if fields.get("tls") is not None:
        cert, key, client_ca = fields["tls"]
        fields["tls"] = TLSFiles(Path(cert), Path(key), None if client_ca is None else Path(client_ca))
    fields["failed_auth_limit"] = FailedAuthLimit(**fields["failed_auth_limit"])
    if fields.get("worker") is not None:
        fields["worker"] = WorkerRole(**fields["worker"])
    return GatewayConfig(**fields)
