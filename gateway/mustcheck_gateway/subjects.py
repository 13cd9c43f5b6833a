"""The subject-validation step of a check (R1), authoritative at the gateway.

Wraps :mod:`mustcheck.identifiers` (the same module the SDK uses to reject early)
with the policy's legacy allow-list, turning failures into ``InvalidSubject``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from mustcheck.identifiers import IdentifierError, SubjectKind, ValidSubject, validate_subject

from .errors import InvalidSubject


def validate(
    raw: str, kind: SubjectKind | None, legacy_codes: Collection[str], *, today: dt.date
) -> ValidSubject:
    try:
        return validate_subject(raw, kind=kind, legacy_codes=legacy_codes, today=today)
    except IdentifierError as error:
        raise InvalidSubject(f"invalid subject: {error.message} [{error.rule}]", reason=error.rule) from None
