"""``mustcheck certs init DIR``: a local CA, server and client certificates for development and tests."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..auth.certs import init_certificates
from ..i18n import _
from .common import EXIT_OK, Subparsers


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "certs",
        help=_("create development certificates"),
        description=_("Create development certificates (not for production: use your own PKI there)."),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init",
        help=_("create a CA, a server certificate and client certificates"),
        description=_(
            "Write ca.pem/ca.key, server.pem/server.key (for localhost, 127.0.0.1, ::1 and "
            "--host names) and NAME.pem/NAME.key for each --client (its common name is the caller's "
            "--tls-identity)."
        ),
    )
    init.add_argument("directory", type=Path, metavar="DIR")
    init.add_argument(
        "--client",
        dest="clients",
        action="append",
        metavar="NAME",
        help=_("client certificate common name (repeatable; default: admin, auditor, client)"),
    )
    init.add_argument(
        "--host",
        dest="hosts",
        action="append",
        default=[],
        metavar="NAME",
        help=_("extra server host name or address (repeatable)"),
    )
    init.set_defaults(run=run_init)


def run_init(options: argparse.Namespace) -> int:
    written = init_certificates(
        options.directory, clients=options.clients or ["admin", "auditor", "client"], hosts=options.hosts
    )
    for path in written:
        print(path)
    return EXIT_OK
