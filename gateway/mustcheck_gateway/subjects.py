"""The subject-validation step of a check (R1), authoritative at the gateway.

Wraps :mod:`mustcheck.identifiers` (the same module the SDK uses to reject early)
with the policy's legacy allow-list, turning failures into ``InvalidSubject``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from mustcheck.identifiers import IdentifierError, SubjectKind, ValidSubject, validate_subject

from .errors import InvalidSubject

# Rules whose message would quote digits a masked identifier hides (R9: the birth date, positions 7-14):
# the gateway says what is wrong without them.
_WITHOUT_DIGITS = {
    "id.birth_date": "the birth date (positions 7-14) is not a possible birth date",
    "subject.ambiguous": "the subject is valid both as a unified social credit code and as a citizen "
    "identity number; state the subject kind",
}


def validate(
    raw: str, kind: SubjectKind | None, legacy_codes: Collection[str], *, today: dt.date
) -> ValidSubject:
    try:
        return validate_subject(raw, kind=kind, legacy_codes=legacy_codes, today=today)
    except IdentifierError as error:
        message = _WITHOUT_DIGITS.get(error.rule, error.message)
        raise InvalidSubject(f"invalid subject: {message} [{error.rule}]", reason=error.rule) from None
