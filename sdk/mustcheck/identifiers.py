"""Subject identifiers (R1): unified social credit codes and citizen identity numbers.

One module, used by the SDK to reject bad input before it leaves the process and by
the gateway, which is authoritative. Every failure names the rule it breaks:

* canonical form — :func:`normalise` is the one function that turns what a caller typed
  into what is looked up, hashed, audited and returned: surrounding white space removed
  (the ideographic space U+3000 too), full-width forms U+FF01–U+FF5E (what Chinese input
  methods type) folded to ASCII, ASCII letters upper-cased. Any character that is still
  not an ASCII letter or digit is refused (``uscc.charset`` / ``id.charset``): other digit
  scripts (Arabic-Indic, Devanagari, superscript, circled, …) are never read as digits.
* ``USCC`` — GB 32100-2015: 18 characters from ``0-9A-Z`` without I, O, S, V, Z; a
  known registration-authority / organisation-type pair in positions 1–2; a 6-digit
  administrative division code in positions 3–8; an organisation code in positions
  9–17 with its own GB 11714 check character; the mod-31 check character last.
* ``citizen ID`` — GB 11643-1999: a 6-digit region code with a known province
  prefix, a valid birth date not in the future, a 3-digit sequence, and the
  ISO 7064 MOD 11-2 check character (``X`` for 10). A 15-digit first-generation
  number is refused by name (``id.first_generation``); :func:`convert_first_generation`
  converts one explicitly.

Pilot-era codes that are legal yet fail a checksum are admitted only through an
allow-list (``legacy_codes``); such an identifier comes back marked ``legacy``.

Nothing but :class:`IdentifierError` leaves :func:`validate_subject`, whatever the string.
"""

from __future__ import annotations

import datetime as _dt
import enum
import operator
from collections.abc import Collection
from dataclasses import dataclass

__all__ = [
    "IdentifierError",
    "SubjectKind",
    "ValidSubject",
    "convert_first_generation",
    "normalise",
    "validate_citizen_id",
    "validate_subject",
    "validate_uscc",
]

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUES = {char: value for value, char in enumerate(USCC_CHARSET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_FORBIDDEN_LETTERS = frozenset("IOSVZ")
_ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ASCII_DIGITS = frozenset("0123456789")
_ASCII_ALNUM = _ASCII_DIGITS | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Full-width forms U+FF01–U+FF5E are ASCII U+0021–U+007E shifted by 0xFEE0; ASCII a-z upper-cased.
# Only ASCII is upper-cased: str.upper() would turn 'ß' into 'SS' or 'ﬁ' into 'FI', letting
# non-ASCII input through as ASCII letters.
_FOLD = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_UPPER = {code: code - 32 for code in range(ord("a"), ord("z") + 1)}

# GB 32100-2015 appendix: registration authority -> organisation types it issues.
REGISTRATION_AUTHORITIES: dict[str, tuple[str, frozenset[str]]] = {
    "1": ("机构编制", frozenset("1239")),
    "2": ("外交", frozenset("19")),
    "3": ("司法行政", frozenset("123459")),
    "4": ("文化", frozenset("19")),
    "5": ("民政", frozenset("1239")),
    "6": ("旅游", frozenset("129")),
    "7": ("宗教", frozenset("129")),
    "8": ("工会", frozenset("19")),
    "9": ("工商", frozenset("123")),
    "A": ("中央军委改革和编制办公室", frozenset("19")),
    "N": ("农业", frozenset("1239")),
    "Y": ("其他", frozenset("1")),
}

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_ZERO_TOTAL = ord("0") * sum(_ID_WEIGHTS)
# GB/T 2260 province-level prefixes (first two digits of a region code).
PROVINCE_PREFIXES = frozenset(
    {
        *("11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37"),
        *("41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64"),
        *("65", "71", "81", "82", "83"),
    }
)
_EARLIEST_BIRTH_YEAR = 1800
# Stages order the rules as they are applied (see IdentifierError). A citizen ID whose own check
# character holds is a citizen ID beyond doubt: its errors outrank every credit-code error.
_STAGE_CHECKSUMMED_ID = 7


class SubjectKind(enum.Enum):
    ORGANIZATION = "organization"
    PERSON = "person"


class IdentifierError(ValueError):
    """An identifier broke a rule; ``rule`` names it (e.g. ``uscc.check_character``).

    ``stage`` orders the rules in the sequence they are applied, so that when a
    string fails as both kinds the error of the kind it resembles more is reported.
    ``checksum_only`` is true when everything but a check character holds: only the
    gateway, which holds the legacy allow-list, may decide such a case.
    """

    def __init__(self, rule: str, message: str, *, stage: int = 0, checksum_only: bool = False) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.stage = stage
        self.checksum_only = checksum_only


@dataclass(frozen=True, slots=True)
class ValidSubject:
    """A canonical identifier and its kind; ``legacy`` marks an allow-listed code."""

    code: str
    kind: SubjectKind
    legacy: bool = False


def normalise(raw: str) -> str:
    """The canonical form (R1): full-width folded to ASCII, surrounding white space removed, upper case.

    The one normalisation of every path: lookup, audit hash, ``Watch`` hashes, imports and the CLI.
    It does not validate: a character outside ASCII letters and digits survives it and is refused by
    the validators.
    """
    if raw.isascii():  # the usual case: ASCII's upper() is ASCII-only
        return raw.strip().upper()
    return raw.translate(_FOLD).strip().translate(_UPPER)


def _digits_value(text: str) -> int:
    """The number written by ASCII digits ``text`` (checked by the caller; never ``int()`` on input)."""
    value = 0
    for char in text:
        value = value * 10 + ord(char) - 48
    return value


def _is_ascii_digits(text: str) -> bool:
    return bool(text) and _ASCII_DIGITS.issuperset(text)


def uscc_check_character(first17: str) -> str:
    total = sum(map(operator.mul, map(_USCC_VALUES.__getitem__, first17), _USCC_WEIGHTS))
    return USCC_CHARSET[(31 - total % 31) % 31]


# GB 11714: digits are their value, letters A–Z are 10–35.
_ORG_CODE_VALUES = {
    **{char: ord(char) - 48 for char in "0123456789"},
    **{char: ord(char) - ord("A") + 10 for char in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
}


def organization_code_check_character(body8: str) -> str:
    total = sum(map(operator.mul, map(_ORG_CODE_VALUES.__getitem__, body8), _ORG_CODE_WEIGHTS))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def citizen_id_check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of 17 ASCII digits."""
    if len(first17) != 17 or not _is_ascii_digits(first17):
        raise IdentifierError("id.charset", "a citizen ID check character needs 17 ASCII digits", stage=1)
    # The digits' code points less the '0's: ASCII digits checked above, so bytes are the code points.
    total = sum(map(operator.mul, first17.encode(), _ID_WEIGHTS)) - _ID_ZERO_TOTAL
    return _ID_CHECK[total % 11]


def _non_ascii_error(prefix: str, what: str, code: str, *, stage: int) -> IdentifierError | None:
    """The charset error for the first character that is no ASCII letter or digit, if there is one."""
    if _ASCII_ALNUM.issuperset(code):
        return None
    for position, char in enumerate(code, start=1):
        if char not in _ASCII_ALNUM:
            shown = repr(char) if char.isascii() and char.isprintable() else f"U+{ord(char):04X}"
            return IdentifierError(
                f"{prefix}.charset",
                f"{what} has {shown} at position {position}; only ASCII digits and letters are allowed "
                "(full-width forms are folded to ASCII, other scripts' digits are refused)",
                stage=stage,
            )
    return None


def validate_uscc(raw: str) -> str:
    """Return the canonical code, or raise :class:`IdentifierError` naming the rule."""
    code = normalise(raw)
    charset = _non_ascii_error("uscc", "unified social credit code", code, stage=1)
    if charset is not None:
        raise charset
    if len(code) != 18:
        raise IdentifierError(
            "uscc.length", f"unified social credit code must have 18 characters, got {len(code)}", stage=0
        )
    if not _USCC_VALUES.keys() >= set(code):
        raise _forbidden_letter_error(code)
    authority = REGISTRATION_AUTHORITIES.get(code[0])
    if authority is None:
        raise IdentifierError(
            "uscc.registration_authority",
            f"unified social credit code starts with unknown registration authority {code[0]!r}",
            stage=2,
        )
    authority_name, types = authority
    if code[1] not in types:
        raise IdentifierError(
            "uscc.organization_type",
            f"organisation type {code[1]!r} (position 2) is not issued by registration authority "
            f"{code[0]!r} ({authority_name}); allowed: {', '.join(sorted(types))}",
            stage=2,
        )
    if not _is_ascii_digits(code[2:8]):
        raise IdentifierError(
            "uscc.division_code",
            f"positions 3-8 must be a 6-digit administrative division code, got {code[2:8]!r}",
            stage=3,
        )
    org_code = code[8:17]
    expected_inner = organization_code_check_character(org_code[:8])
    if org_code[8] != expected_inner:
        raise IdentifierError(
            "uscc.organization_code_check",
            f"embedded organisation code {org_code} fails its GB 11714 check: "
            f"position 17 should be {expected_inner!r}, got {org_code[8]!r}",
            stage=4,
            checksum_only=True,
        )
    expected = uscc_check_character(code[:17])
    if code[17] != expected:
        raise IdentifierError(
            "uscc.check_character",
            f"check character (position 18) should be {expected!r}, got {code[17]!r}",
            stage=5,
            checksum_only=True,
        )
    return code


def _forbidden_letter_error(code: str) -> IdentifierError:
    """The first ASCII letter a credit code may not contain, named with its position."""
    for position, char in enumerate(code, start=1):
        if char not in _USCC_VALUES:
            return IdentifierError(
                "uscc.forbidden_letter",
                f"unified social credit code has the letter {char!r} at position {position}; "
                "GB 32100-2015 never uses I, O, S, V or Z",
                stage=1,
            )
    raise AssertionError("called for a code without a forbidden letter")


def convert_first_generation(raw: str) -> str:
    """A 15-digit first-generation citizen ID converted to 18 digits per GB 11643-1999.

    The century ``19`` is inserted before the two-digit birth year and the check character
    appended. The gateway never does this by itself (see ``id.first_generation``): a caller that
    converts states so by sending the converted number.
    """
    number = normalise(raw)
    if len(number) != 15 or not _is_ascii_digits(number):
        raise IdentifierError("id.first_generation", "a first-generation citizen ID has 15 ASCII digits")
    first17 = number[:6] + "19" + number[6:]
    return first17 + citizen_id_check_character(first17)


def validate_citizen_id(raw: str, *, today: _dt.date | None = None) -> str:
    """Return the canonical number, or raise :class:`IdentifierError` naming the rule."""
    number = normalise(raw)
    charset = _non_ascii_error("id", "citizen identity number", number, stage=1)
    if charset is not None:
        # A string of digits with a foreign character in it looks like an ID number, not a credit code.
        body = number[:-1] if number.endswith("X") else number
        charset.stage = 2 if _ASCII_DIGITS.issuperset(c for c in body if c.isascii()) else 1
        raise charset
    if len(number) == 15 and _is_ascii_digits(number):
        raise IdentifierError(
            "id.first_generation",
            "15-digit first-generation citizen identity numbers are not checked: convert it to the "
            "18-digit number (GB 11643-1999) and check that",
            stage=3,
        )
    if len(number) != 18:
        raise IdentifierError(
            "id.length", f"citizen identity number must have 18 characters, got {len(number)}", stage=0
        )
    if not _is_ascii_digits(number[:17]) or not (number[17] in _ASCII_DIGITS or number[17] == "X"):
        raise IdentifierError(
            "id.charset",
            "citizen identity number must be 17 digits followed by a digit or X",
            stage=1,
        )
    expected = citizen_id_check_character(number[:17])
    checksummed = number[17] == expected
    if number[:2] not in PROVINCE_PREFIXES:
        raise IdentifierError(
            "id.region_code",
            f"region code {number[:6]} does not start with a known province code ({number[:2]})",
            stage=2,
        )
    birth = number[6:14]
    try:
        born = _dt.date(_digits_value(birth[:4]), _digits_value(birth[4:6]), _digits_value(birth[6:8]))
    except ValueError:
        raise IdentifierError(
            "id.birth_date",
            f"birth date {birth} is not a calendar date",
            stage=_STAGE_CHECKSUMMED_ID if checksummed else 3,
        ) from None
    # A known region and a calendar date make the string look more like a citizen ID than a
    # credit code: from here on, its errors outrank a credit code's checksum errors.
    if born > (today or _dt.date.today()):
        raise IdentifierError("id.birth_date", f"birth date {born.isoformat()} is in the future", stage=6)
    if born.year < _EARLIEST_BIRTH_YEAR:
        raise IdentifierError("id.birth_date", f"birth date {born.isoformat()} is impossibly early", stage=6)
    if not checksummed:
        raise IdentifierError(
            "id.check_character",
            f"check character (position 18) should be {expected!r}, got {number[17]!r}",
            stage=6,
            checksum_only=True,
        )
    return number


def validate_subject(
    raw: str,
    *,
    kind: SubjectKind | None = None,
    legacy_codes: Collection[str] = (),
    today: _dt.date | None = None,
) -> ValidSubject:
    """Validate ``raw`` as ``kind`` (or infer the kind), admitting allow-listed legacy codes.

    A string valid as both kinds is ambiguous and must name its kind.
    """
    if not isinstance(raw, str):
        raise IdentifierError("subject.type", f"subject must be a string, got {type(raw).__name__}")
    if not normalise(raw):
        raise IdentifierError("subject.empty", "subject is empty")
    if kind is SubjectKind.ORGANIZATION:
        return _as_organization(raw, legacy_codes)
    if kind is SubjectKind.PERSON:
        return ValidSubject(validate_citizen_id(raw, today=today), SubjectKind.PERSON)
    as_org: ValidSubject | IdentifierError
    as_person: ValidSubject | IdentifierError
    try:
        as_org = _as_organization(raw, legacy_codes)
    except IdentifierError as error:
        as_org = error
    try:
        as_person = ValidSubject(validate_citizen_id(raw, today=today), SubjectKind.PERSON)
    except IdentifierError as error:
        as_person = error
    if isinstance(as_org, ValidSubject) and isinstance(as_person, ValidSubject):
        raise IdentifierError(
            "subject.ambiguous",
            f"{as_org.code} is valid both as a unified social credit code and as a citizen identity "
            "number; state the subject kind",
        )
    if isinstance(as_org, ValidSubject):
        return as_org
    if isinstance(as_person, ValidSubject):
        return as_person
    # Report the kind the string got further with; ties go to the credit code.
    raise as_person if as_person.stage > as_org.stage else as_org


def _as_organization(raw: str, legacy_codes: Collection[str]) -> ValidSubject:
    try:
        return ValidSubject(validate_uscc(raw), SubjectKind.ORGANIZATION)
    except IdentifierError as error:
        code = normalise(raw)
        if error.checksum_only and code in legacy_codes:
            return ValidSubject(code, SubjectKind.ORGANIZATION, legacy=True)
        raise
