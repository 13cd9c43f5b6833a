"""Number options: argparse types that refuse what no careful operator means, naming the range.

``float("inf")`` and ``float("nan")`` parse as floats, and a negative count parses as an int: an
unbounded drain (``--drain-seconds inf`` never lets a SIGTERM stop the gateway), a watermark that
compares false with everything, a timeout that never ends. Each option states its range, and a value
outside it is an argparse error (exit status 2) that says which range.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from ..i18n import _

MOST_SEQ = 2**63 - 1  # an audit record's sequence number is a signed 64-bit integer in both backends


def whole(least: int, most: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``least`` to ``most``."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        if value is None or not least <= value <= most:
            raise argparse.ArgumentTypeError(
                _("{text!r} is not a whole number from {least:,} to {most:,}").format(
                    text=text, least=least, most=most
                )
            )
        return value

    return parse


def finite(least: float, most: float, *, above_least: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number from ``least`` (excluded where ``above_least``) to ``most``."""

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            value = math.nan
        low_ok = value > least if above_least else value >= least
        if not (math.isfinite(value) and low_ok and value <= most):
            template = (
                _("{text!r} is not a number above {least:g} and at most {most:g}")
                if above_least
                else _("{text!r} is not a number from {least:g} to {most:g}")
            )
            raise argparse.ArgumentTypeError(template.format(text=text, least=least, most=most))
        return value

    return parse
