"""Typed values: numbers and dates read in the column's locale, never guessed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from babel.numbers import format_decimal
from hypothesis import given
from hypothesis import strategies as st

from connector.normalize import NormalizationError
from connector.typed import Reading, boolean, day, locale_for_region, number

EN, PL, DE = Reading(locale="en_US"), Reading(locale="pl_PL"), Reading(locale="de_DE")


@pytest.mark.parametrize(
    ("text", "reading", "value"),
    [
        ("12,000", EN, 12000),
        ("1,500.00", EN, 1500),
        ("1,500,000", EN, 1500000),
        ("1.234,56", PL, 1234.56),
        ("1 234,56", PL, 1234.56),
        ("1\u00a0234,56", PL, 1234.56),
        ("1.234,56", DE, 1234.56),
        ("12,000", PL, 12.0),  # in Polish that comma is the decimal sign
        ("-5", EN, -5),
        # Without a locale, what reads one way only.
        ("1,500.00", Reading(), 1500),
        ("1.234,56", Reading(), 1234.56),
        ("1.500.000", Reading(), 1500000),
        ("12 500,00", Reading(), 12500),
        ("3 200", Reading(), 3200),
        ("12,5", Reading(), 12.5),
        ("0.25", Reading(), 0.25),
        ("1.234", Reading(decimal=","), 1234),
        ("1.234", Reading(decimal="."), 1.234),
    ],
)
def test_numbers_in_their_locale(text: str, reading: Reading, value: float) -> None:
    assert number(text, reading) == value


@pytest.mark.parametrize(
    ("text", "reading", "reason"),
    [
        ("1.234", Reading(), "reads two ways"),
        ("12,000", Reading(), "reads two ways"),
        ("nan", EN, "not a number"),
        ("inf", EN, "not a number"),
        ("-Infinity", Reading(), "not a number"),
        ("1e999", EN, "out of range"),
        ("9" * 5000, EN, "too long"),
        ("1,5", EN, "not a number in the column's locale"),
        ("1.5", PL, "not a number in the column's locale"),
        ("a lot", Reading(), "not a number"),
        ("0.1234567890123456789", EN, "more than 15 digits"),
    ],
)
def test_numbers_that_cannot_be_read_one_way_are_errors(
    text: str, reading: Reading, reason: str
) -> None:
    with pytest.raises(NormalizationError, match=reason) as err:
        number(text, reading)
    assert text not in err.value.reason  # a category, never the value


def test_integers() -> None:
    assert number("12,000", EN, integer=True) == 12000
    with pytest.raises(NormalizationError, match="whole number"):
        number("12,5", PL, integer=True)


@given(
    st.decimals(min_value=-(10**12), max_value=10**12, places=2, allow_nan=False),
    st.sampled_from(["en_US", "pl_PL", "de_DE", "vi_VN", "ms_MY", "fr_FR"]),
)
def test_what_a_locale_writes_it_reads_back(value: Decimal, locale: str) -> None:
    written = format_decimal(value, format="#,##0.00", locale=locale)
    assert number(written, Reading(locale=locale)) == float(value)


def test_a_region_gives_its_locale() -> None:
    assert locale_for_region("PL") == "pl_PL"
    assert locale_for_region("DE") == "de_DE"


def test_dates_in_their_order() -> None:
    assert day("2024-03-04") == "2024-03-04"
    assert day("03/04/2024", Reading(locale="en_US")) == "2024-03-04"
    assert day("03/04/2024", Reading(locale="pl_PL")) == "2024-04-03"
    assert day("03/04/2024", Reading(dayfirst=True)) == "2024-04-03"
    assert day("03.04.2024", Reading(dayfirst=False)) == "2024-03-04"
    assert day("25/12/2024") == "2024-12-25"  # one reading only
    with pytest.raises(NormalizationError, match="reads two ways"):
        day("03/04/2024")
    with pytest.raises(NormalizationError, match="no such day"):
        day("31/02/2024", Reading(dayfirst=True))


def test_booleans() -> None:
    assert boolean("Tak") is True and boolean("không") is False
    with pytest.raises(NormalizationError, match="yes/no"):
        boolean("maybe")
