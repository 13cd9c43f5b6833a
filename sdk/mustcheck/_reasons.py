"""The gateway's refusal reasons: dotted codes and the names of their ``Reason`` values (reasons.proto).

The ``mustcheck-reason`` trailer carries a dotted code (``grant.purpose``); ``mustcheck-reason-name``
its enum value's name (``REASON_GRANT_PURPOSE``). The table is read from the generated descriptor, so
the proto file is the one source. Two families map many codes to one value: ``<field>.too_long`` and
``<field>.too_many`` (the code names the request field over its bound).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ._generated.v1 import reasons_pb2

__all__ = ["REASON_CODES", "UNSPECIFIED", "reason_name"]

UNSPECIFIED = "REASON_UNSPECIFIED"
# A family's code in the proto: this placeholder, then the suffix every code of the family ends with.
FIELD_PLACEHOLDER = "<field>"


def _codes() -> dict[str, str]:
    codes: dict[str, str] = {}
    for value in reasons_pb2.Reason.DESCRIPTOR.values:
        code = value.GetOptions().Extensions[reasons_pb2.reason_code]
        if code:
            codes[code] = value.name
    return codes


# Dotted code (or family pattern "<field>.too_long") -> Reason value name.
REASON_CODES: Mapping[str, str] = MappingProxyType(_codes())
_FAMILIES = tuple(
    (code.removeprefix(FIELD_PLACEHOLDER), name)
    for code, name in REASON_CODES.items()
    if code.startswith(FIELD_PLACEHOLDER + ".")
)


def reason_name(code: str) -> str:
    """The ``Reason`` value name of a dotted code; ``REASON_UNSPECIFIED`` for one this contract lacks."""
    name = REASON_CODES.get(code)
    if name is not None:
        return name
    for suffix, family in _FAMILIES:
        field = code.removesuffix(suffix)
        if field != code and field and "." not in field:
            return family
    return UNSPECIFIED
