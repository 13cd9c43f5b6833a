"""R1: identifiers are validated before anything else, each failure naming its rule."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.cn import ric
from stdnum.cn import uscc as stdnum_uscc

from mustcheck.identifiers import (
    REGISTRATION_AUTHORITIES,
    USCC_CHARSET,
    IdentifierError,
    SubjectKind,
    citizen_id_check_character,
    convert_first_generation,
    normalise,
    validate_citizen_id,
    validate_subject,
    validate_uscc,
)

PUBLISHED_CODES = ["914403001922038216", "91110108551385082Q", "91440300192317458F", "91100000100003962T"]
STANDARD_IDS = ["11010519491231002X", "440524188001010014"]
PILOT_CODE = "91350203M0001QAY9B"
TODAY = dt.date(2026, 11, 22)


@pytest.mark.parametrize("code", PUBLISHED_CODES)
def test_published_credit_codes_are_organisations(code: str) -> None:
    assert validate_subject(code, today=TODAY).kind is SubjectKind.ORGANIZATION


@pytest.mark.parametrize("number", STANDARD_IDS)
def test_standard_examples_are_persons(number: str) -> None:
    assert validate_subject(number, today=TODAY).kind is SubjectKind.PERSON


def test_lower_case_and_spaces_are_normalised() -> None:
    assert validate_subject("  91110108551385082q\t", today=TODAY).code == "91110108551385082Q"
    assert validate_subject(" 11010519491231002x ", today=TODAY).code == "11010519491231002X"


@pytest.mark.parametrize(
    ("raw", "rule", "words"),
    [
        ("914403001922038217", "uscc.check_character", "check character"),
        ("91440300192203821", "uscc.length", "18 characters"),
        ("9144030019220382I6", "uscc.forbidden_letter", "'I'"),
        ("91440300192O038216", "uscc.forbidden_letter", "'O'"),
        ("94440300192203821Z", "uscc.forbidden_letter", "'Z'"),
        ("914403001922038-16", "uscc.charset", "'-'"),
        ("B14403001922038216", "uscc.registration_authority", "'B'"),
        ("97440300192203821X", "uscc.organization_type", "'7'"),
        ("9144A3001922038216", "uscc.division_code", "division"),
        ("914403001922038306", "uscc.organization_code_check", "GB 11714"),
    ],
)
def test_bad_credit_codes_name_the_rule(raw: str, rule: str, words: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        validate_subject(raw, kind=SubjectKind.ORGANIZATION, today=TODAY)
    assert caught.value.rule == rule
    assert words in caught.value.message


def test_inferred_kind_reports_the_credit_code_error_for_a_corrupted_code() -> None:
    with pytest.raises(IdentifierError) as caught:
        validate_subject("914403001922038217", today=TODAY)
    assert caught.value.rule == "uscc.check_character"


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("11010519491231002", "id.length"),
        ("110105194912310021", "id.check_character"),
        ("99010519491231002X", "id.region_code"),
        ("110105194902300020", "id.birth_date"),  # 30 February
        ("110105209901010010", "id.birth_date"),  # the future
        ("11010517000101001X", "id.birth_date"),  # impossibly early
        ("1101051949123100A2", "id.charset"),
    ],
)
def test_bad_citizen_ids_name_the_rule(raw: str, rule: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        validate_subject(raw, kind=SubjectKind.PERSON, today=TODAY)
    assert caught.value.rule == rule


def test_fifteen_digit_ids_get_a_conversion_hint() -> None:
    with pytest.raises(IdentifierError, match="15-digit"):
        validate_citizen_id("110105491231002", today=TODAY)


def test_legacy_pilot_code_needs_the_allow_list() -> None:
    with pytest.raises(IdentifierError) as caught:
        validate_subject(PILOT_CODE, today=TODAY)
    assert caught.value.checksum_only
    admitted = validate_subject(PILOT_CODE, legacy_codes={PILOT_CODE}, today=TODAY)
    assert admitted.legacy and admitted.kind is SubjectKind.ORGANIZATION


def test_allow_list_does_not_admit_structural_errors() -> None:
    broken = "9I350203M0001QAY9B"
    with pytest.raises(IdentifierError) as caught:
        validate_subject(broken, legacy_codes={broken}, today=TODAY)
    assert caught.value.rule == "uscc.forbidden_letter"


def test_a_string_valid_as_both_kinds_must_name_its_kind() -> None:
    # Search a valid citizen ID whose digits also make a valid credit code (authority 1, type 1).
    for sequence in range(1000):
        for day in range(1, 29):
            first17 = f"110101199001{day:02d}{sequence:03d}"
            number = first17 + citizen_id_check_character(first17)
            try:
                validate_uscc(number)
            except IdentifierError:
                continue
            with pytest.raises(IdentifierError) as caught:
                validate_subject(number, today=TODAY)
            assert caught.value.rule == "subject.ambiguous"
            assert validate_subject(number, kind=SubjectKind.PERSON, today=TODAY).kind is SubjectKind.PERSON
            return
    pytest.fail("no ambiguous identifier found")


# -- property tests -------------------------------------------------------------------

BODY = st.text(alphabet=USCC_CHARSET, min_size=8, max_size=8)
PAIRS = st.sampled_from([(a, t) for a, (_, types) in REGISTRATION_AUTHORITIES.items() for t in sorted(types)])
DIVISION = st.text(alphabet="0123456789", min_size=6, max_size=6)


# The generators complete codes with check characters computed independently of the module under test
# (python-stdnum for GB 32100 and GB 11643; GB 11714 written out here), so that a wrong weight in the
# module fails them instead of agreeing with itself.
def gb11714_check(body8: str) -> str:
    value = 11 - sum(int(c, 36) * w for c, w in zip(body8, (3, 7, 9, 10, 5, 8, 4, 2), strict=True)) % 11
    return {10: "X", 11: "0"}.get(value, str(value))


@st.composite
def valid_uscc(draw: st.DrawFn) -> str:
    authority, org_type = draw(PAIRS)
    body = draw(BODY)
    first17 = authority + org_type + draw(DIVISION) + body + gb11714_check(body)
    return first17 + stdnum_uscc.calc_check_digit(first17)


@st.composite
def valid_citizen_id(draw: st.DrawFn) -> str:
    born = draw(st.dates(min_value=dt.date(1900, 1, 1), max_value=TODAY))
    region = draw(st.sampled_from(["110105", "310115", "440305", "650102", "820000"]))
    first17 = f"{region}{born:%Y%m%d}{draw(st.integers(0, 999)):03d}"
    return first17 + ric.calc_check_digit(first17 + "0")  # stdnum drops the last character


@given(valid_uscc())
def test_generated_credit_codes_validate(code: str) -> None:
    assert validate_uscc(code.lower()) == code


@given(valid_citizen_id())
def test_generated_citizen_ids_validate(number: str) -> None:
    assert validate_citizen_id(f" {number} ", today=TODAY) == number


@given(valid_uscc(), st.integers(0, 17), st.sampled_from(USCC_CHARSET + "IOSVZa-"))
def test_any_single_substitution_in_a_credit_code_is_rejected(code: str, position: int, char: str) -> None:
    corrupted = code[:position] + char + code[position + 1 :]
    if corrupted.upper() == code:
        return
    with pytest.raises(IdentifierError):
        validate_uscc(corrupted)


@given(valid_uscc(), st.integers(0, 15))
def test_adjacent_transpositions_in_a_credit_code_are_rejected(code: str, position: int) -> None:
    if code[position] == code[position + 1]:
        return
    swapped = code[:position] + code[position + 1] + code[position] + code[position + 2 :]
    with pytest.raises(IdentifierError):
        validate_uscc(swapped)


@given(valid_citizen_id(), st.integers(0, 17), st.sampled_from("0123456789X"))
def test_any_single_substitution_in_a_citizen_id_is_rejected(number: str, position: int, char: str) -> None:
    corrupted = number[:position] + char + number[position + 1 :]
    if corrupted == number:
        return
    with pytest.raises(IdentifierError):
        validate_citizen_id(corrupted, today=TODAY)


# -- one canonical form (R1) ------------------------------------------------------------


def test_full_width_and_ideographic_spaces_fold_to_the_ascii_form() -> None:
    wide = "\u3000１１０１０５１９４９１２３１００２ｘ\u3000"
    assert normalise(wide) == "11010519491231002X"
    assert validate_subject(wide, today=TODAY).code == "11010519491231002X"
    assert validate_subject("９１１１０１０８５５１３８５０８２ｑ", today=TODAY).code == "91110108551385082Q"


@pytest.mark.parametrize("digits", ["٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "⁰¹²³⁴⁵⁶⁷⁸⁹", "⓪①②③④⑤⑥⑦⑧⑨", "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗"])
@pytest.mark.parametrize("number", STANDARD_IDS)
def test_other_scripts_digits_are_refused_by_the_charset_rule(digits: str, number: str) -> None:
    for position in range(17):
        corrupted = number[:position] + digits[int(number[position])] + number[position + 1 :]
        with pytest.raises(IdentifierError) as caught:
            validate_subject(corrupted, today=TODAY)
        assert caught.value.rule == "id.charset", (position, corrupted)
        with pytest.raises(IdentifierError) as caught:
            validate_subject(corrupted, kind=SubjectKind.ORGANIZATION, today=TODAY)
        assert caught.value.rule == "uscc.charset"


@pytest.mark.parametrize("raw", ["ß", "ﬁ", "ı", "\u212a"])  # str.upper() gives ASCII letters (or looks so)
def test_letters_that_upper_case_to_ascii_are_not_ascii(raw: str) -> None:
    code = PUBLISHED_CODES[1][:10] + raw + PUBLISHED_CODES[1][11:]
    assert raw in normalise(code)  # only ASCII is upper-cased
    with pytest.raises(IdentifierError) as caught:
        validate_subject(code, today=TODAY)
    assert caught.value.rule.endswith(".charset")


@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=40))
def test_nothing_but_an_identifier_error_escapes_validation(text: str) -> None:
    for kind in (None, SubjectKind.ORGANIZATION, SubjectKind.PERSON):
        try:
            subject = validate_subject(text, kind=kind, today=TODAY)
        except IdentifierError as error:
            assert error.rule and error.message
        else:
            assert subject.code == normalise(text) and subject.code.isascii() and subject.code.isalnum()


@given(st.text(max_size=30))
def test_canonical_form_is_idempotent(text: str) -> None:
    assert normalise(normalise(text)) == normalise(text)


# -- rules named right --------------------------------------------------------------------


def test_a_checksummed_id_with_an_impossible_birth_date_is_a_birth_date_error() -> None:
    # Region 110105, 1990-02-30, with its correct ISO 7064 check character: a citizen ID whose date is wrong,
    # also a well-formed credit code shape (authority 1, type 1) failing only its checksums.
    for sequence in range(1000):
        first17 = f"11010519900230{sequence:03d}"
        number = first17 + citizen_id_check_character(first17)
        try:
            validate_uscc(number)
        except IdentifierError as error:
            if error.stage < 4:
                continue
        with pytest.raises(IdentifierError) as caught:
            validate_subject(number, today=TODAY)
        assert caught.value.rule == "id.birth_date", number
        return
    pytest.fail("no such number found")


def test_first_generation_ids_are_refused_by_name_and_converted_on_request() -> None:
    with pytest.raises(IdentifierError) as caught:
        validate_subject("110105491231002", today=TODAY)
    assert caught.value.rule == "id.first_generation"
    assert convert_first_generation("110105491231002") == "11010519491231002X"
    assert (
        validate_subject(convert_first_generation("110105491231002"), today=TODAY).kind is SubjectKind.PERSON
    )
    with pytest.raises(IdentifierError):
        convert_first_generation("11010549123100²")
