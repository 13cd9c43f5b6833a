"""CSV cells that a spreadsheet shows as text, never runs as a formula (CSV injection).

Auditors open exports in spreadsheets; a cell from caller-controlled text that begins with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return would be taken for a formula (``=HYPERLINK(…)``). Such
a text cell is written with a leading apostrophe, which spreadsheets show as text and do not run.
Numbers are written as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(value: Any) -> Any:
    """``value`` as a CSV cell: a text that a spreadsheet would run gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def inert_row(values: Iterable[Any]) -> list[Any]:
    return [inert(value) for value in values]


def inert_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: inert(value) for key, value in row.items()}
