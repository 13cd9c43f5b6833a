"""``mustcheck demo-data``: write the deterministic demo data set as list rows (JSON Lines)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from ..demo_data import generate_rows
from ..i18n import _
from ..list_rows import write_jsonl
from ..policy import PolicyError, default_policy_dir, load_policies
from .common import EXIT_FAILURE, EXIT_INVALID, EXIT_OK, Subparsers, add_policies_option, fail
from .dates import day, day_help
from .numbers import whole


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "demo-data",
        help=_("write a deterministic demo data set"),
        description=_(
            "Write synthetic list rows (JSON Lines) with valid identifiers. The same --subjects, --seed and "
            "--today always give the same file."
        ),
    )
    parser.add_argument(
        "--subjects",
        type=whole(0, 100_000_000),
        default=1000,
        metavar="N",
        help=_("number of subjects (default {count})").format(count=1000),
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=2016,
        metavar="S",
        help=_("random seed (default {seed})").format(seed=2016),
    )
    parser.add_argument(
        "--today",
        type=day,
        default=None,
        metavar="YYYY-MM-DD",
        help=day_help(_("the day the periods are laid around (default: today)")),
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help=_("output file ('-' for stdout)")
    )
    add_policies_option(parser)
    parser.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    if options.subjects < 1:
        return fail(_("--subjects must be at least 1"), EXIT_INVALID)
    try:
        policy = load_policies(options.policies or default_policy_dir())
    except PolicyError as error:
        return fail(str(error), EXIT_FAILURE)
    rows = generate_rows(options.subjects, options.seed, options.today or dt.date.today(), policy)
    if str(options.out) == "-":
        count = write_jsonl(rows, sys.stdout)
    else:
        temporary = options.out.with_name(options.out.name + ".partial")
        with temporary.open("w", encoding="utf-8") as out:
            count = write_jsonl(rows, out)
        temporary.replace(options.out)  # never leave a half-written file under the real name
    print(
        _("wrote {count} rows for {subjects} subjects to {path}").format(
            count=count, subjects=options.subjects, path=options.out
        ),
        file=sys.stderr,
    )
    return EXIT_OK
