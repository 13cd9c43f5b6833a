"""The subject-validation step of a check (R1), authoritative at the gateway.

Wraps :mod:`mustcheck.identifiers` (the same module the SDK uses to reject early)
with the policy's legacy allow-list, turning failures into ``InvalidSubject``.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Collection

from mustcheck.identifiers import IdentifierError, SubjectKind, ValidSubject, validate_subject

from .errors import InvalidSubject

# Rules whose message would quote digits a masked identifier hides (R9: positions 7-14 and more):
# the gateway says what is wrong without them.
_WITHOUT_DIGITS = {
    "id.birth_date": "the birth date (positions 7-14) is not a possible birth date",
    "subject.ambiguous": "the subject is valid both as a unified social credit code and as a citizen "
    "identity number; state the subject kind",
    # Read as a credit code, an ID number's positions 3-8 and 9-17 (birth date and sequence) would be
    # quoted as the division code and the embedded organisation code.
    "uscc.division_code": "positions 3-8 are not a 6-digit administrative division code",
    "uscc.organization_code_check": "the embedded organisation code (positions 9-17) fails its GB 11714 "
    "check character",
}


def validate(
    raw: str, kind: SubjectKind | None, legacy_codes: Collection[str], *, today: dt.date
) -> ValidSubject:
    try:
        if isinstance(legacy_codes, frozenset):  # hashable: a subject checked again is not validated again
            return _validated(raw, kind, legacy_codes, today)
        return validate_subject(raw, kind=kind, legacy_codes=legacy_codes, today=today)
    except IdentifierError as error:
        message = _WITHOUT_DIGITS.get(error.rule, error.message)
        raise InvalidSubject(f"invalid subject: {message} [{error.rule}]", reason=error.rule) from None


@functools.lru_cache(maxsize=16384)
def _validated(
    raw: str, kind: SubjectKind | None, legacy_codes: frozenset[str], today: dt.date
) -> ValidSubject:
    """:func:`validate_subject`, remembered for valid subjects (an invalid one raises and is not kept).

    The answer is a pure function of the arguments: the text, the kind stated, the allow-list (a new set
    whenever it changes, so a withdrawn legacy code is not admitted from memory) and the day (a birth date
    in the future). An unstated kind is validated as both kinds once, not at every check of the subject.
    """
    return validate_subject(raw, kind=kind, legacy_codes=legacy_codes, today=today)
