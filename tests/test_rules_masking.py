"""R9 masking at its boundaries, with expected strings written out by hand (no call into the module
to compute them): name and number lengths, the run lengths 13/14/15/16/18, the birth-date fields'
limits, full width, and each field of a grant on its own."""

from __future__ import annotations

import pytest

from mustcheck_gateway.masking import MASKABLE_FIELDS, Masker, mask_id, mask_id_shapes, mask_name


@pytest.mark.parametrize(
    ("name", "masked"), [("", ""), ("张", "*"), ("张三", "张*"), ("欧阳娜娜", "欧***"), ("Li Lei", "L*****")]
)
def test_a_name_keeps_only_its_first_character(name: str, masked: str) -> None:
    assert mask_name(name) == masked


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("", ""),
        ("1234", "****"),
        ("1234567890", "**********"),  # ten or fewer: nothing is kept
        ("12345678901", "123456*8901"),
        ("110105850312001", "110105*****2001"),
        ("11010519491231002X", "110105********002X"),
        ("110105194912310021234", "110105***********1234"),  # longer than any ID: still the middle hidden
    ],
)
def test_an_id_number_keeps_its_first_six_and_last_four(number: str, masked: str) -> None:
    assert mask_id(number) == masked


def test_each_grant_field_unmasks_only_its_own_field() -> None:
    assert {"person_name", "person_id"} == MASKABLE_FIELDS
    number = "11010519491231002X"
    masked, names_only, ids_only, both = (
        Masker(),
        Masker(["person_name"]),
        Masker({"person_id"}),
        Masker(("person_id", "person_name")),
    )
    assert (masked.person_name("张三"), masked.person_id(number)) == ("张*", "110105********002X")
    assert (names_only.person_name("张三"), names_only.person_id(number)) == ("张三", "110105********002X")
    assert (ids_only.person_name("张三"), ids_only.person_id(number)) == ("张*", number)
    assert (both.person_name("张三"), both.person_id(number)) == ("张三", number)
    text = f"张三，身份证{number}，另有120105198001010011"
    assert masked.text(text, names=["张三"], ids=[number]) == (
        "张*，身份证110105********002X，另有120105********0011"
    )
    assert names_only.text(text, names=["张三"], ids=[number]) == (
        "张三，身份证110105********002X，另有120105********0011"
    )
    assert ids_only.text(text, names=["张三"], ids=[number]) == text.replace("张三", "张*")
    assert both.text(text, names=["张三"], ids=[number]) == text


def test_free_text_masks_the_named_ids_even_when_not_id_shaped() -> None:
    # A number the entry names is masked wherever it appears, even one too short to look like an ID.
    assert Masker().text("证号AB12345678901CD", ids=["AB12345678901CD", ""]) == "证号AB1234*****01CD"
    assert Masker().text("编号9876543210123", ids=["9876543210123"]) == "编号987654***0123"
    assert Masker().text("", names=["张三"], ids=["1"]) == ""
    assert Masker().text("甲乙", names=["", "乙"]) == "甲*"


def test_longer_ids_are_replaced_before_the_ones_they_contain() -> None:
    long, short = "AB1234567890123", "1234567890123"
    assert Masker().text(f"{long}/{short}", ids=[short, long]) == "AB1234*****0123/123456***0123"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1101051985031", "1101051985031"),  # 13 digits: too short to be any ID number
        ("11010519850312", "110105********"),  # 14: an 18-digit number cut after its birth date
        ("11010517850312", "11010517850312"),  # 14 without a birth date (century 17): left alone
        ("11010519851312", "11010519851312"),  # month 13
        ("11010519850012", "11010519850012"),  # month 00
        ("11010519851200", "11010519851200"),  # day 00
        ("11010519851232", "11010519851232"),  # day 32
        ("11010518851231", "110105********"),  # century 18, December 31st
        ("11010520250101", "110105********"),  # century 20, January 1st
        ("110105198503120", "110105*********"),  # 15 cut from an 18-digit number: region only
        ("110105850312001", "110105*****2001"),  # first generation: YYMMDD at 6..12
        ("110105851312001", "110105851312001"),  # first-generation shape, month 13: not an ID
        ("110105850332001", "110105850332001"),  # day 32
        ("110105850300001", "110105850300001"),  # day 00
        # 16 digits holding a birth date whose day the usual last four would show: nothing is kept.
        ("1101051985031200", "****************"),
        ("11010599999999999", "110105*******9999"),  # 17
        ("110105999999999999", "110105999999999999"),  # 18 without a birth date: a credit-code shape
        ("110105990101019999", "110105990101019999"),  # 18: a first-generation MMDD is no birth date here
        ("11010519491231002x", "110105********002x"),
        ("１１０１０５１９８５０３１２", "１１０１０５********"),  # full width, cut short
        ("a11010519850312b", "a110105********b"),
        ("1101051985031200149999", "110105************9999"),  # 22 digits
        ("号1101051985031200，1101051985031201。", "号****************，****************。"),
    ],
)
def test_id_shaped_runs_at_their_boundaries(text: str, expected: str) -> None:
    assert mask_id_shapes(text) == expected
    assert Masker().text(text) == expected
    assert Masker({"person_id"}).text(text) == text


def test_empty_text_passes_through() -> None:
    assert mask_id_shapes("") == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A birth date inside a long run where the usual mask hides it (positions 8–15): first six and last
        # four kept.
        ("12345678199003071234", "123456**********1234"),
        # One whose last digit the usual mask would leave showing (it ends at position 17 of 20): all hidden.
        ("12345678919900307123", "********************"),
        # One at positions 12–19 of 22: its last two digits would show; all hidden.
        ("0000000000001990030712", "**********************"),
        # One at the start of a 20-digit run: the kept first six would show it; all hidden.
        ("19900307123456789012", "********************"),
        # One at position 5: the kept first six would show its first digit; all hidden.
        ("12345199003071234567", "********************"),
    ],
)
def test_a_birth_date_anywhere_in_a_long_run_is_never_left_showing(text: str, expected: str) -> None:
    assert mask_id_shapes(text) == expected


def test_a_grouped_number_without_a_birth_date_is_left_as_written() -> None:
    assert mask_id_shapes("电话 110108 12345678 1234") == "电话 110108 12345678 1234"
    assert mask_id_shapes("证件 110108 19900307 123X") == "证件 110108********123X"


def test_a_named_id_is_masked_however_free_text_spells_it() -> None:
    # Full width (U+FF10–U+FF19, U+FF21–U+FF3A), lower case, separators between its characters.
    number = "AB12345678901CD"
    masked = "AB1234*****01CD"
    for spelt in (
        "ＡＢ１２３４５６７８９０１ＣＤ",
        "ab12345678901cd",
        "AB 1234-5678 901CD",
        "Ａb12345678901cＤ",
    ):
        assert Masker().text(f"证号{spelt}。", ids=[number]) == f"证号{masked}。", spelt


def test_a_birth_date_at_the_very_end_of_a_long_run_is_hidden() -> None:
    assert mask_id_shapes("12345678901219900307") == "*" * 20


def test_a_first_generation_month_and_day_count_only_in_a_15_digit_run() -> None:
    # 14 digits with a month (03) and a day (07) at positions 8–12 and no YYYYMMDD anywhere: not an ID shape.
    assert mask_id_shapes("12345678030712") == "12345678030712"
    assert mask_id_shapes("123456780307123") == "123456*****7123"
