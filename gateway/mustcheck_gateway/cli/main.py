"""``mustcheck``: serve the gateway, run the demo, check subjects, inspect policies, make demo data."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from .. import __version__
from ..logs import configure_logging
from . import admin, audit, certs, check, demo, demo_data, lists, policies, receipts, serve, store
from .common import EXIT_INVALID

# As a shell reports a command ended by SIGPIPE.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

COMMANDS = (serve, demo, check, receipts, admin, lists, audit, policies, certs, demo_data, store)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mustcheck",
        description="Must-check credit lookups for approval workflows (国发〔2016〕33号 §18).",
    )
    parser.add_argument("--version", action="version", version=f"mustcheck {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        options = parser.parse_args(argv)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else EXIT_INVALID
    # Every command logs JSON lines on stderr (warnings and worse) unless it configures its own logging.
    configure_logging(level="warning")
    try:
        result: int = options.run(options)
        sys.stdout.flush()
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``mustcheck … | head``): nothing more to say, and no traceback. Standard
        # output is pointed at /dev/null so that the interpreter's own flush at exit stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return result


if __name__ == "__main__":
    sys.exit(main())
