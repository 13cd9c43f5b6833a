"""``mustcheck demo-data``: write the deterministic demo data set as list rows (JSON Lines)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from ..demo_data import generate_rows
from ..list_rows import write_jsonl
from ..policy import PolicyError, default_policy_dir, load_policies
from .common import EXIT_FAILURE, EXIT_OK, Subparsers, add_policies_option
from .dates import day, day_help


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "demo-data",
        help="write a deterministic demo data set",
        description="Write synthetic list rows (JSON Lines) with valid identifiers. The same --subjects, "
        "--seed and --today always give the same file.",
    )
    parser.add_argument(
        "--subjects", type=int, default=1000, metavar="N", help="number of subjects (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=2016, metavar="S", help="random seed (default 2016)")
    parser.add_argument(
        "--today",
        type=day,
        default=None,
        metavar="YYYY-MM-DD",
        help=day_help("the day the periods are laid around (default: today)"),
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="output file ('-' for stdout)"
    )
    add_policies_option(parser)
    parser.set_defaults(run=run)


def run(options: argparse.Namespace) -> int:
    if options.subjects < 1:
        print("mustcheck: --subjects must be at least 1", file=sys.stderr)
        return 2
    try:
        policy = load_policies(options.policies or default_policy_dir())
    except PolicyError as error:
        print(f"mustcheck: {error}", file=sys.stderr)
        return EXIT_FAILURE
    rows = generate_rows(options.subjects, options.seed, options.today or dt.date.today(), policy)
    if str(options.out) == "-":
        count = write_jsonl(rows, sys.stdout)
    else:
        temporary = options.out.with_name(options.out.name + ".partial")
        with temporary.open("w", encoding="utf-8") as out:
            count = write_jsonl(rows, out)
        temporary.replace(options.out)  # never leave a half-written file under the real name
    print(f"wrote {count} rows for {options.subjects} subjects to {options.out}", file=sys.stderr)
    return EXIT_OK
