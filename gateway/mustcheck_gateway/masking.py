"""Privacy masking of personal data (R9): one step every response passes through.

Names keep their first character (张*), citizen identity numbers their first six and
last four characters. Organisations' names and codes stay visible: they are published
by law. A caller's grant may widen visibility field by field (``visible``).

Free text (a membership's reason, a decision document number, an exported row) is masked too
(:meth:`Masker.text`): the names and ID numbers of the persons the entry names, and any ID-number-shaped
string (:func:`mask_id_shapes`) — a run of 15 or 18 digits (the last may be X) whose birth-date part
is a date, or any other run of 15 or more digits, half- or full-width, also written in groups with
spaces or hyphens. What free text cannot be searched for is said in docs/bounds-and-refusals.md.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable

PERSON_NAME = "person_name"
PERSON_ID = "person_id"
MASKABLE_FIELDS = frozenset({PERSON_NAME, PERSON_ID})


def mask_name(name: str) -> str:
    if len(name) <= 1:
        return name and "*"
    return name[0] + "*" * (len(name) - 1)


def mask_id(number: str) -> str:
    if len(number) <= 10:
        return "*" * len(number)
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


class Masker:
    """Masks personal fields unless the caller may see them (``visible`` field names)."""

    def __init__(self, visible: Collection[str] = ()) -> None:
        self.visible = frozenset(visible)

    def person_name(self, name: str) -> str:
        return name if PERSON_NAME in self.visible else mask_name(name)

    def person_id(self, number: str) -> str:
        return number if PERSON_ID in self.visible else mask_id(number)

    def text(self, text: str, *, names: Iterable[str] = (), ids: Iterable[str] = ()) -> str:
        """Free text with the persons' ``names`` and ``ids`` masked, and any ID-number-shaped string,
        unless the caller may see that field."""
        if not text:
            return text
        hide_names, hide_ids = PERSON_NAME not in self.visible, PERSON_ID not in self.visible
        if not (hide_names or hide_ids):
            return text
        # The same entry's text is masked for every answer that shows it: remembered (a pure function of
        # its arguments), not searched again each time.
        return _masked_text(text, tuple(names), tuple(ids), hide_names, hide_ids)


@functools.lru_cache(maxsize=8192)
def _masked_text(
    text: str, names: tuple[str, ...], ids: tuple[str, ...], hide_names: bool, hide_ids: bool
) -> str:
    if hide_names:
        for name in sorted({name for name in names if name}, key=len, reverse=True):
            text = text.replace(name, mask_name(name))
    if hide_ids:
        folded: str | None = None
        for number in sorted({number for number in ids if number}, key=len, reverse=True):
            key = _folded_id(number)
            if key is not None:
                # Most free text names none of the ids: look for the id in one folded copy of the text
                # before building (and caching) the pattern of its every spelling.
                folded = folded if folded is not None else text.translate(_FOLD)
                if key not in folded:
                    continue
                folded = None  # the text changes below
            text = _spelled(number).sub(mask_id(number), text)
        text = mask_id_shapes(text)
    return text


# What people put between the groups of an ID number they write out: spaces (the ideographic one too)
# and hyphens, e.g. "110108 19900307 123X" or "110108-19900307-123X".
_SEPARATOR = "[ \u3000\\-‐－]?"


# Free text folded so that every spelling ``_spelled`` matches of an id of digits and X becomes one string:
# separators dropped, full-width digits and X made half-width, X lower case. Char by char, so a spelling's
# folded form stands in the folded text wherever the spelling stands in the text.
_FOLD: dict[int, int | str | None] = {ord(separator): None for separator in " \u3000-‐－"}
_FOLD.update({0xFF10 + digit: ord("0") + digit for digit in range(10)})
_FOLD.update({ord("X"): "x", ord("Ｘ"): "x", ord("ｘ"): "x"})
_ID_CHARACTERS = frozenset("0123456789Xx")


def _folded_id(number: str) -> str | None:
    """``number`` as it stands in folded text; None for an id of other characters (no quick search)."""
    if not _ID_CHARACTERS.issuperset(number):
        return None
    return number.translate(_FOLD)


@functools.lru_cache(maxsize=4096)
def _spelled(number: str) -> re.Pattern[str]:
    """``number`` as free text may spell it: with separators between its characters, a lower-case x, or
    full-width digits."""
    alternatives = []
    for char in number:
        forms = {char, char.lower(), chr(ord(char) + 0xFEE0)} if char.isascii() and char.isalnum() else {char}
        alternatives.append("[" + "".join(re.escape(form) for form in sorted(forms)) + "]")
    return re.compile(_SEPARATOR.join(alternatives))


# A run of 14 or more digits (half- or full-width), the last one possibly X: the shapes of citizen
# identity numbers (18 characters, or 15 for the first generation), of longer numbers they hide in, and
# of an 18-digit number cut short after its birth date (14 characters: region and YYYYMMDD).
_DIGIT_RUN = re.compile(r"(?<![0-9\uff10-\uff19])[0-9\uff10-\uff19]{13,}[0-9\uff10-\uff19XxＸｘ]")
_FULL_WIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")


def _date_shaped(digits: str) -> bool:
    """Whether a run of 14, 15 or 18 characters carries a birth date where an ID number has one: an
    18-digit number's YYYYMMDD (also in the first 14 or 15 digits of one cut short: the birth date is what
    masking hides), or a first-generation number's YYMMDD."""
    if _full_birth_date(digits[6:14]):
        return True
    return len(digits) == 15 and _month_day(digits[8:10], digits[10:12])


def _full_birth_date(date: str) -> bool:
    return len(date) == 8 and date[:2] in ("18", "19", "20") and _month_day(date[4:6], date[6:8])


def _month_day(month: str, day: str) -> bool:
    return month.isdigit() and day.isdigit() and 1 <= int(month) <= 12 and 1 <= int(day) <= 31


def _mask_run(match: re.Match[str]) -> str:
    run = match.group(0)
    digits = run.translate(_FULL_WIDTH_DIGITS)
    # Where a birth date (YYYYMMDD) stands in the run: an ID number glued to other digits or cut short
    # moves it from the position it has in an 18-digit number.
    dates = [at for at in range(len(digits) - 7) if _full_birth_date(digits[at : at + 8])]
    if len(run) in (14, 15, 18) and not dates and not _date_shaped(digits):
        return run  # e.g. an all-digit credit code: an organisation's, published by law
    if len(run) in (14, 15) and _full_birth_date(digits[6:14]):
        # An 18-digit number cut short: its last four digits are part of the birth date; keep the region only.
        return run[:6] + "*" * (len(run) - 6)
    masked = mask_id(run)
    if all(at >= 6 and at + 8 <= len(run) - 4 for at in dates):
        return masked  # every birth date in it falls where the mask hides
    return "*" * len(run)  # a date the usual mask would leave showing: nothing of the run is kept


# An 18-character ID number written in its usual groups with separators: region, birth date, the rest.
_GROUPED = re.compile(
    r"(?<![0-9\uff10-\uff19])([0-9\uff10-\uff19]{6})[ \u3000\-‐－]([0-9\uff10-\uff19]{8})[ \u3000\-‐－]?"
    r"([0-9\uff10-\uff19]{3}[0-9\uff10-\uff19XxＸｘ])(?![0-9\uff10-\uff19])"
)


def _mask_grouped(match: re.Match[str]) -> str:
    digits = "".join(match.groups())
    if not _full_birth_date(digits[6:14].translate(_FULL_WIDTH_DIGITS)):
        return match.group(0)
    return mask_id(digits)


def mask_id_shapes(text: str) -> str:
    """``text`` with every ID-number-shaped run of digits masked (first six and last four kept), also
    where it is written in groups with spaces or hyphens."""
    if not text:
        return text
    return _DIGIT_RUN.sub(_mask_run, _GROUPED.sub(_mask_grouped, text))
