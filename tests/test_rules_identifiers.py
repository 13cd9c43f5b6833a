"""R1 against oracles written from the standards, not from the module under test.

Every expected check character here is computed by the test-side functions below, derived from the
text of the standards (the weights are computed from their defining formula, not copied from the
module), and cross-checked against python-stdnum where it implements the same standard. Candidates
come from a fixed seed, so the tests are deterministic and fast enough to run once per mutant.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest
from stdnum.cn import ric, uscc

from mustcheck.identifiers import (
    IdentifierError,
    SubjectKind,
    citizen_id_check_character,
    convert_first_generation,
    normalise,
    organization_code_check_character,
    uscc_check_character,
    validate_citizen_id,
    validate_subject,
    validate_uscc,
)

TODAY = dt.date(2026, 11, 22)
SEED = 20261204

# -- the oracles ----------------------------------------------------------------------------

# GB 11643-1999 §8.2: W_i = 2^(i-1) mod 11 for positions i = 18 (leftmost) .. 2; check = (12 - S mod 11)
# mod 11, written X for 10.
GB11643_WEIGHTS = [pow(2, 17 - position, 11) for position in range(17)]


def gb11643_check(first17: str) -> str:
    total = sum(int(digit) * weight for digit, weight in zip(first17, GB11643_WEIGHTS, strict=True))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


# GB 32100-2015 §4.3: the 31 code characters (no I, O, S, V, Z) are worth 0..30; W_i = 3^(i-1) mod 31;
# check = 31 - S mod 31, 31 written as 0.
GB32100_CHARS = [c for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in "IOSVZ"]
GB32100_WEIGHTS = [pow(3, position, 31) for position in range(17)]


def gb32100_check(first17: str) -> str:
    total = sum(GB32100_CHARS.index(c) * w for c, w in zip(first17, GB32100_WEIGHTS, strict=True))
    return GB32100_CHARS[(31 - total % 31) % 31]


# GB 11714-1997: digits are worth themselves, A-Z 10-35; weights 3 7 9 10 5 8 4 2; C9 = 11 - S mod 11,
# written X for 10 and 0 for 11.
GB11714_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def gb11714_check(body8: str) -> str:
    total = sum(int(c, 36) * w for c, w in zip(body8, GB11714_WEIGHTS, strict=True))
    value = 11 - total % 11
    return {10: "X", 11: "0"}.get(value, str(value))


def test_the_oracles_agree_with_the_standards_published_examples_and_with_stdnum() -> None:
    # GB 11643-1999 appendix example; GB 32100 examples printed on real licences.
    assert GB11643_WEIGHTS == [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    assert gb11643_check("11010519491231002") == "X"
    assert gb32100_check("91110108551385082") == "Q"
    assert gb11714_check("D2143569") == "X"  # GB 11714's own worked example
    rng = random.Random(SEED)
    for _ in range(300):
        first17 = "".join(rng.choice("0123456789") for _ in range(17))
        assert gb11643_check(first17) == ric.calc_check_digit(first17 + "0")  # it drops the last
        code17 = "".join(rng.choice(GB32100_CHARS) for _ in range(17))
        assert gb32100_check(code17) == uscc.calc_check_digit(code17)


# -- candidates -----------------------------------------------------------------------------

REGIONS = ["110105", "310115", "440305", "650102", "820000", "130102", "540102", "710000"]


def citizen_ids(count: int) -> list[str]:
    """Valid citizen IDs with every digit at every position, completed by the oracle."""
    rng = random.Random(SEED)
    numbers = []
    for index in range(count):
        born = dt.date(1900, 1, 1) + dt.timedelta(days=rng.randrange((TODAY - dt.date(1900, 1, 1)).days))
        first17 = f"{REGIONS[index % len(REGIONS)]}{born:%Y%m%d}{rng.randrange(1000):03d}"
        numbers.append(first17 + gb11643_check(first17))
    return numbers


PAIRS = [("9", "1"), ("9", "2"), ("9", "3"), ("1", "1"), ("5", "3"), ("Y", "1"), ("N", "9"), ("A", "1")]


def credit_codes(count: int) -> list[str]:
    rng = random.Random(SEED + 1)
    codes = []
    for index in range(count):
        authority, org_type = PAIRS[index % len(PAIRS)]
        body = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
        first17 = authority + org_type + f"{rng.randrange(10**6):06d}" + body + gb11714_check(body)
        codes.append(first17 + gb32100_check(first17))
    return codes


IDS = citizen_ids(400)
CODES = credit_codes(400)


# -- check characters -----------------------------------------------------------------------


def test_citizen_id_check_character_matches_the_gb11643_oracle() -> None:
    """Kills a wrong weight at any position: every position carries every digit among 400 IDs."""
    checks = {number[17] for number in IDS}
    assert checks == set("0123456789X")  # every check value is exercised, X included
    for number in IDS:
        assert citizen_id_check_character(number[:17]) == number[17]
        assert validate_citizen_id(number, today=TODAY) == number


def test_each_weight_of_the_citizen_id_check_is_the_standards() -> None:
    """A one-digit change at each position moves the check by that position's weight (GB 11643)."""
    base = "11010519491231002"
    for position in range(17):
        bumped = base[:position] + str((int(base[position]) + 1) % 10) + base[position + 1 :]
        assert citizen_id_check_character(bumped) == gb11643_check(bumped), position


def test_every_wrong_citizen_id_check_character_is_refused_by_rule() -> None:
    for number in IDS[:60]:
        for wrong in set("0123456789X") - {number[17]}:
            with pytest.raises(IdentifierError) as caught:
                validate_citizen_id(number[:17] + wrong, today=TODAY)
            assert caught.value.rule == "id.check_character"
            assert caught.value.checksum_only
            assert caught.value.message == (
                f"check character (position 18) should be {number[17]!r}, got {wrong!r}"
            )


def test_credit_code_check_characters_match_the_oracles() -> None:
    checks = {code[17] for code in CODES}
    inner = {code[16] for code in CODES}
    assert len(checks) == 31  # every value of the mod-31 check, 0 included
    assert {"X", "0"} <= inner  # GB 11714's two special cases
    for code in CODES:
        assert uscc_check_character(code[:17]) == code[17]
        assert organization_code_check_character(code[8:16]) == code[16]
        assert validate_uscc(code) == code


def test_the_embedded_organisation_code_check_is_enforced_on_every_code() -> None:
    """Replaces the single-example test: each code's GB 11714 check character is broken, the outer
    GB 32100 check recomputed by the oracle, and only the embedded check is left to catch it."""
    for code in CODES[:120]:
        for wrong in ["X", "0", "5"]:
            if wrong == code[16]:
                continue
            first17 = code[:16] + wrong
            forged = first17 + gb32100_check(first17)
            with pytest.raises(IdentifierError) as caught:
                validate_uscc(forged)
            assert caught.value.rule == "uscc.organization_code_check"
            assert caught.value.checksum_only
            assert caught.value.stage == 4


def test_every_wrong_credit_code_check_character_is_refused_by_rule() -> None:
    for code in CODES[:40]:
        for wrong in set(GB32100_CHARS) - {code[17]}:
            with pytest.raises(IdentifierError) as caught:
                validate_uscc(code[:17] + wrong)
            assert caught.value.rule == "uscc.check_character"
            assert caught.value.checksum_only


def test_first_generation_conversion_completes_with_the_oracles_check() -> None:
    for number in IDS[:50]:
        if number[6:8] != "19":
            continue
        old = number[:6] + number[8:17]
        assert convert_first_generation(old) == number[:17] + gb11643_check(number[:17])


# -- birth dates: the boundaries, many of them ------------------------------------------------


@pytest.mark.parametrize(
    "born", [dt.date(1990, 2, 28), dt.date(2000, 2, 29), dt.date(2026, 1, 1), dt.date(2026, 11, 22)]
)
def test_a_birth_date_is_refused_from_the_day_after_today(born: dt.date) -> None:
    """Replaces the single future-birth example: today is allowed, tomorrow is not, for several days."""
    first17 = f"110105{born:%Y%m%d}123"
    number = first17 + gb11643_check(first17)
    assert validate_citizen_id(number, today=born) == number
    assert validate_citizen_id(number, today=born + dt.timedelta(days=365)) == number
    for today in (born - dt.timedelta(days=1), born - dt.timedelta(days=400)):
        with pytest.raises(IdentifierError) as caught:
            validate_citizen_id(number, today=today)
        assert caught.value.rule == "id.birth_date"
        assert "future" in caught.value.message
        assert caught.value.stage == 6


def test_the_default_today_is_the_real_date() -> None:
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    first17 = f"110105{tomorrow:%Y%m%d}123"
    with pytest.raises(IdentifierError, match="future"):
        validate_citizen_id(first17 + gb11643_check(first17))
    yesterday = dt.date.today() - dt.timedelta(days=1)
    first17 = f"110105{yesterday:%Y%m%d}123"
    assert validate_citizen_id(first17 + gb11643_check(first17)).startswith(first17)


def test_the_earliest_birth_year_is_1800() -> None:
    first17 = "110105" + "18000101" + "123"
    assert validate_citizen_id(first17 + gb11643_check(first17), today=TODAY)
    first17 = "110105" + "17991231" + "123"
    with pytest.raises(IdentifierError, match="impossibly early") as caught:
        validate_citizen_id(first17 + gb11643_check(first17), today=TODAY)
    assert caught.value.stage == 6


@pytest.mark.parametrize("birth", ["19490230", "19491301", "19490001", "19490100", "20230229"])
def test_a_birth_date_that_is_no_calendar_date_is_refused(birth: str) -> None:
    first17 = "110105" + birth + "123"
    with pytest.raises(IdentifierError, match="not a calendar date") as caught:
        validate_citizen_id(first17 + gb11643_check(first17), today=TODAY)
    assert caught.value.stage == 7  # its own check character holds: a citizen ID beyond doubt
    with pytest.raises(IdentifierError) as wrong_check:
        validate_citizen_id(first17 + ("1" if gb11643_check(first17) != "1" else "2"), today=TODAY)
    assert wrong_check.value.stage == 3


# -- canonical form and kinds ---------------------------------------------------------------


def test_normalise_folds_strips_and_upper_cases_only_ascii() -> None:
    assert normalise(" 11010519491231002x\t") == "11010519491231002X"
    assert normalise("\u3000９１ａｂ\u3000") == "91AB"
    assert normalise("ß１") == "ß1"  # no 'SS': only ASCII letters are upper-cased
    assert normalise("ａｚ") == "AZ" and normalise("az") == "AZ"
    assert normalise("\uff01\uff5e") == "!~"  # both ends of the full-width block


def test_a_valid_credit_code_and_a_valid_id_are_told_apart_by_kind() -> None:
    code, number = CODES[0], IDS[0]
    assert validate_subject(code, today=TODAY).kind is SubjectKind.ORGANIZATION
    assert validate_subject(number, today=TODAY).kind is SubjectKind.PERSON
    assert not validate_subject(code, today=TODAY).legacy
    with pytest.raises(IdentifierError):
        validate_subject(code, kind=SubjectKind.PERSON, today=TODAY)
    with pytest.raises(IdentifierError):
        validate_subject(number, kind=SubjectKind.ORGANIZATION, today=TODAY)


def test_a_legacy_code_is_admitted_only_for_a_checksum_failure_and_only_when_listed() -> None:
    code = CODES[3]
    wrong = code[:17] + ("0" if code[17] != "0" else "1")
    assert validate_subject(wrong, legacy_codes={wrong}, today=TODAY).legacy
    assert validate_subject(wrong.lower(), legacy_codes={wrong}, today=TODAY).code == wrong
    with pytest.raises(IdentifierError, match="check character"):
        validate_subject(wrong, legacy_codes={code}, today=TODAY)
    bad_type = "97" + code[2:]  # a structural error, not a checksum one: never admitted
    with pytest.raises(IdentifierError) as caught:
        validate_subject(bad_type, legacy_codes={bad_type}, today=TODAY)
    assert caught.value.rule == "uscc.organization_type"


# -- which rule is reported: each rule's own input, and the stage order between the two kinds ----------


def test_lengths_other_than_18_are_refused_by_length() -> None:
    code, number = CODES[5], IDS[5]
    for wrong in (code + "1", code[:17]):
        with pytest.raises(IdentifierError) as caught:
            validate_uscc(wrong)
        assert caught.value.rule == "uscc.length"
        assert f"got {len(wrong)}" in caught.value.message
    for wrong in (number + "1", number[:17]):
        with pytest.raises(IdentifierError) as caught:
            validate_citizen_id(wrong, today=TODAY)
        assert caught.value.rule == "id.length"


def test_a_digit_string_of_neither_length_is_reported_as_a_credit_code() -> None:
    """Both kinds fail at their first rule (stage 0): the tie goes to the credit code."""
    with pytest.raises(IdentifierError) as caught:
        validate_subject("1234567890123456", today=TODAY)
    assert caught.value.rule == "uscc.length"


def test_a_citizen_id_that_got_further_outranks_a_credit_code_error() -> None:
    """Authority '2' does not issue type '3' (credit-code stage 2); as a citizen ID the same string has a
    known province and no calendar date (stage 3): the citizen-ID error is reported."""
    first17 = "230102" + "19491301" + "123"
    wrong = "1" if gb11643_check(first17) != "1" else "2"
    with pytest.raises(IdentifierError) as caught:
        validate_subject(first17 + wrong, today=TODAY)
    assert caught.value.rule == "id.birth_date"
    assert caught.value.message == "birth date 19491301 is not a calendar date"


def test_an_unknown_province_loses_to_an_equal_credit_code_error() -> None:
    first17 = "990102" + "19491231" + "123"  # 99: no province; as a credit code, authority '9' type '9'
    with pytest.raises(IdentifierError) as caught:
        validate_subject(first17 + gb11643_check(first17), today=TODAY)
    assert caught.value.rule == "uscc.organization_type"


def test_the_division_code_is_six_digits_at_positions_3_to_8() -> None:
    for position in (2, 7):
        body = "0123ABCD"
        head = "91" + "440300"
        head = head[:position] + "A" + head[position + 1 :]
        first17 = head + body + gb11714_check(body)
        with pytest.raises(IdentifierError) as caught:
            validate_uscc(first17 + gb32100_check(first17))
        assert caught.value.rule == "uscc.division_code", position


def test_check_character_messages_name_what_was_found() -> None:
    code = CODES[7]
    wrong_outer = "W" if code[17] != "W" else "Y"
    with pytest.raises(IdentifierError) as caught:
        validate_uscc(code[:17] + wrong_outer)
    assert (
        caught.value.message == f"check character (position 18) should be {code[17]!r}, got {wrong_outer!r}"
    )
    wrong_inner = "X" if code[16] != "X" else "0"
    first17 = code[:16] + wrong_inner
    with pytest.raises(IdentifierError) as caught:
        validate_uscc(first17 + gb32100_check(first17))
    assert f"position 17 should be {code[16]!r}, got {wrong_inner!r}" in caught.value.message


def test_a_charset_error_names_the_character_and_its_position() -> None:
    with pytest.raises(IdentifierError) as caught:
        validate_uscc("91440300192203821$")
    assert caught.value.rule == "uscc.charset" and "has '$' at position 18;" in caught.value.message
    with pytest.raises(IdentifierError) as caught:
        validate_uscc("9中440300192203821")
    assert "has U+4E2D at position 2;" in caught.value.message
    with pytest.raises(IdentifierError) as caught:
        validate_citizen_id("\x0111010519491231002", today=TODAY)
    assert "has U+0001 at position 1;" in caught.value.message


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("11010519491231002中", "id.charset"),  # digits and one foreign character: looks like an ID
        ("1101051949123100中X", "id.charset"),
        ("1ABCDEFGHJKLMNPQ中X", "uscc.charset"),  # letters inside: looks like a credit code
        ("ABCDEFGHJKLMNPQR中X", "uscc.charset"),
        ("110105194912310中AX", "uscc.charset"),  # a letter before the final X is no ID digit
    ],
)
def test_a_foreign_character_is_reported_for_the_kind_the_string_resembles(raw: str, rule: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        validate_subject(raw, today=TODAY)
    assert caught.value.rule == rule


def test_a_citizen_id_ends_in_a_digit_or_x_only() -> None:
    number = IDS[9]
    for last in ("A", "W", "Y"):
        with pytest.raises(IdentifierError) as caught:
            validate_citizen_id(number[:17] + last, today=TODAY)
        assert caught.value.rule == "id.charset"
        assert caught.value.message == "citizen identity number must be 17 digits followed by a digit or X"
    with pytest.raises(IdentifierError) as caught:
        validate_citizen_id("A" + number[1:], today=TODAY)
    assert caught.value.message == "citizen identity number must be 17 digits followed by a digit or X"


def test_the_check_character_function_needs_17_ascii_digits() -> None:
    for bad in (
        "1101051949123100",
        "110105194912310021",
        "1101051949123100A",
        "１１０１０５１９４９１２３１００２",
    ):
        with pytest.raises(IdentifierError) as caught:
            citizen_id_check_character(bad)
        assert caught.value.rule == "id.charset"


def test_full_width_folding_covers_exactly_ff01_to_ff5e() -> None:
    assert normalise("\uff01") == "!" and normalise("\uff5e") == "~"
    assert normalise("\uff00") == "\uff00" and normalise("\uff5f") == "\uff5f"
    assert normalise("\uff21\uff3a\uff41\uff5a") == "AZAZ"


def test_an_unknown_province_is_named_with_its_region_code() -> None:
    first17 = "990102" + "19491231" + "123"
    with pytest.raises(IdentifierError) as caught:
        validate_citizen_id(first17 + gb11643_check(first17), today=TODAY)
    assert caught.value.rule == "id.region_code" and caught.value.stage == 2
    assert caught.value.message == "region code 990102 does not start with a known province code (99)"


def test_a_wrong_id_check_character_outranks_a_wrong_credit_code_check_character() -> None:
    """A string that as a citizen ID fails only its check character (stage 6) and as a credit code
    only its own (stage 5) is reported as the citizen ID's error."""
    found = 0
    for number in IDS:
        for wrong in "0123456789":
            candidate = number[:17] + wrong
            if wrong == number[17] or candidate[1] not in "123":
                continue
            try:
                validate_uscc(candidate)
            except IdentifierError as error:
                if error.rule != "uscc.check_character":
                    continue
            else:
                continue
            with pytest.raises(IdentifierError) as caught:
                validate_subject(candidate, today=TODAY)
            assert caught.value.rule == "id.check_character"
            found += 1
    assert found >= 3


def test_structural_credit_code_errors_say_exactly_what_was_found() -> None:
    with pytest.raises(IdentifierError) as caught:
        validate_uscc("23" + CODES[0][2:])
    assert caught.value.message == (
        "organisation type '3' (position 2) is not issued by registration authority '2' (外交); allowed: 1, 9"
    )
    with pytest.raises(IdentifierError) as caught:
        validate_uscc("914403A0" + CODES[0][8:])
    assert (
        caught.value.message == "positions 3-8 must be a 6-digit administrative division code, got '4403A0'"
    )
    with pytest.raises(IdentifierError) as caught:
        validate_uscc("9I" + CODES[0][2:])
    assert caught.value.rule == "uscc.forbidden_letter"
    assert "has the letter 'I' at position 2;" in caught.value.message
    code = CODES[11]
    first17 = code[:16] + ("X" if code[16] != "X" else "0")
    with pytest.raises(IdentifierError) as caught:
        validate_uscc(first17 + gb32100_check(first17))
    assert caught.value.message.startswith(
        f"embedded organisation code {first17[8:17]} fails its GB 11714 check"
    )


def test_only_15_ascii_digits_are_a_first_generation_number() -> None:
    for bad in ("11010549123100X", "1101054912310021", "11010549123100"):
        with pytest.raises(IdentifierError) as caught:
            convert_first_generation(bad)
        assert caught.value.rule == "id.first_generation"


def test_a_valid_subject_is_immutable_and_hashable() -> None:
    subject = validate_subject(CODES[0], today=TODAY)
    with pytest.raises(AttributeError):
        subject.code = "x"  # type: ignore[misc]
    assert {subject: 1}[validate_subject(CODES[0], today=TODAY)] == 1


def test_normalise_upper_cases_a_to_z_and_nothing_next_to_them() -> None:
    assert normalise("`az{") == "`AZ{"
    assert normalise("\uff40\uff5b") == "`{"


def test_an_unknown_authority_ties_with_an_unknown_province_and_the_credit_code_error_wins() -> None:
    with pytest.raises(IdentifierError) as caught:
        validate_subject("010105194912310021", today=TODAY)
    assert caught.value.rule == "uscc.registration_authority"


def test_short_digit_strings_are_a_length_error_unless_they_have_15_digits() -> None:
    for short in ("11010549123100", "1101054912310"):
        with pytest.raises(IdentifierError) as caught:
            validate_citizen_id(short, today=TODAY)
        assert caught.value.rule == "id.length"


def test_a_letter_at_position_17_is_a_charset_error() -> None:
    number = IDS[13]
    with pytest.raises(IdentifierError) as caught:
        validate_citizen_id(number[:16] + "A" + number[17], today=TODAY)
    assert caught.value.message == "citizen identity number must be 17 digits followed by a digit or X"
