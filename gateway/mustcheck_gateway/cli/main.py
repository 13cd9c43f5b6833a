"""``mustcheck``: serve the gateway, run the demo, check subjects, inspect policies, make demo data."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import cast

from mustcheck.suites import SuiteUnavailable

from .. import __version__
from ..i18n import LANGUAGES, Language, activate
from ..i18n import _ as _t
from ..logs import configure_logging
from . import admin, audit, certs, check, demo, demo_data, lists, policies, receipts, serve, store
from .common import EXIT_FAILURE, EXIT_INVALID, fail

# As a shell reports a command ended by SIGPIPE.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

COMMANDS = (serve, demo, check, receipts, admin, lists, audit, policies, certs, demo_data, store)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mustcheck",
        description=_t("Must-check credit lookups for approval workflows (国发〔2016〕33号 §18)."),
    )
    parser.add_argument("--version", action="version", version=f"mustcheck {__version__}")
    parser.add_argument(
        "--lang",
        choices=LANGUAGES,
        help=_t("language of messages and reports: zh (Chinese) or en (default: from the locale)"),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(commands)
    return parser


def language_option(argv: Sequence[str]) -> Language | None:
    """``--lang`` before the command, read ahead of parsing so that help and errors use it too."""
    for index, word in enumerate(argv):
        if word == "--lang" and index + 1 < len(argv) and argv[index + 1] in LANGUAGES:
            return cast(Language, argv[index + 1])
        if word.startswith("--lang=") and word[7:] in LANGUAGES:
            return cast(Language, word[7:])
        if not word.startswith("-"):
            return None  # the command: global options end here
    return None


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    activate(language_option(arguments))
    parser = build_parser()
    argv = arguments
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
    except SuiteUnavailable as error:  # an SM2 signature met without the SM2 library: name the extra
        return fail(str(error), EXIT_FAILURE)
    except BrokenPipeError:
        # The reader went away (``mustcheck … | head``): nothing more to say, and no traceback. Standard
        # output is pointed at /dev/null so that the interpreter's own flush at exit stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return result


if __name__ == "__main__":
    sys.exit(main())
