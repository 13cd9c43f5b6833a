"""Privacy masking of personal data (R9): one step every response passes through.

Names keep their first character (张*), citizen identity numbers their first six and
last four characters. Organisations' names and codes stay visible: they are published
by law. A caller's grant may widen visibility field by field (``visible``).
"""

from __future__ import annotations

from collections.abc import Collection

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
