"""Typed values: numbers, dates and yes/no answers read the way the source wrote them.

Numbers go through Babel's strict parser with the column's locale, so `12,000` (en),
`1.234,56` (de, pl) and `12 500,00` are each read one way, the locale's. Without a locale
only readings that cannot be anything else are taken (`12,5`, `1,500.00`, `3 200`);
a value that reads two ways (`1.234`: 1234 in Germany, 1.234 in the US) is an error
naming the ambiguity, never a guess. Errors are `NormalizationError`s whose reason is a
category (`not a number`), never the value: the value stays in the field issue only.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from babel import Locale, UnknownLocaleError
from babel.numbers import NumberFormatError, get_decimal_symbol, get_group_symbol, parse_decimal

from connector.normalize import NormalizationError

# Longer than any number a person types; a 5,000-digit "number" is not read at all.
_MAX_LENGTH = 64
# A float (what a JSON number is to every reader) holds 15 significant digits exactly;
# more would be silently rounded, so they are refused instead.
_MAX_DIGITS = 15

_SPACES = re.compile(r"[\s\u00a0\u202f\u2009'’_]")
_PLAIN = re.compile(r"[+-]?\d+")
# One separator (`.` or `,`) followed by exactly three digits, no other separator: a
# group in one convention, a decimal point in the other.
_TWO_WAYS = re.compile(r"[+-]?\d{1,3}[.,]\d{3}")

_TRUE = {"1", "true", "yes", "y", "tak", "ya", "có", "co", "x", "✓"}
_FALSE = {"0", "false", "no", "n", "nie", "tidak", "không", "khong", ""}


@dataclass(frozen=True, slots=True)
class Reading:
    """How to read one column's values: a locale (`pl_PL`), or just its decimal sign,
    and whether dates put the day first. None means "not said"."""

    locale: str | None = None
    decimal: str | None = None
    dayfirst: bool | None = None


def check_locale(name: str) -> str:
    """`name` if Babel knows the locale (`pl_PL`, `en-US`), else ValueError."""
    try:
        Locale.parse(name.replace("-", "_"))
    except (UnknownLocaleError, ValueError) as exc:
        raise ValueError(f"unknown locale {name!r} (use e.g. pl_PL or en_US)") from exc
    return name


@functools.lru_cache(maxsize=256)
def _symbols(locale: str) -> tuple[str, str]:
    loc = Locale.parse(locale.replace("-", "_"))
    return get_decimal_symbol(loc), get_group_symbol(loc)


@functools.lru_cache(maxsize=256)
def locale_for_region(region: str) -> str | None:
    """The locale most used in a country (`PL` -> `pl_PL`), for sources that name their
    region but not their locale; None when Babel does not know one."""
    try:
        loc = Locale.parse(f"und_{region.upper()}")
    except (UnknownLocaleError, ValueError):
        return None
    return str(loc)


def number(text: str, reading: Reading = Reading(), integer: bool = False) -> float | int:
    """A number as the column's locale writes it (see the module docstring)."""
    value = text.strip()
    if len(value) > _MAX_LENGTH:
        raise NormalizationError("too long to be a number")
    decimal = _decimal(value, reading)
    if not decimal.is_finite() or abs(decimal) >= 10**_MAX_DIGITS:
        raise NormalizationError(f"out of range (more than {_MAX_DIGITS} digits)")
    if len(decimal.normalize().as_tuple().digits) > _MAX_DIGITS:
        raise NormalizationError(f"more than {_MAX_DIGITS} digits (map it as a string)")
    if integer:
        if decimal != decimal.to_integral_value():
            raise NormalizationError("not a whole number")
        return int(decimal)
    return float(decimal)


def _decimal(value: str, reading: Reading) -> Decimal:
    compact = _SPACES.sub("", value)
    if _PLAIN.fullmatch(compact):
        return Decimal(compact)
    if not compact or not re.fullmatch(r"[+-]?[\d.,]+(?:[eE][+-]?\d+)?", compact):
        raise NormalizationError("not a number")
    locale, sign = reading.locale, reading.decimal
    if locale is None and sign is None:
        sign = _only_reading(compact)
    if locale is None:
        # A decimal sign alone stands for a locale that writes it so.
        locale = "de_DE" if sign == "," else "en_US"
    point, group = _symbols(locale)
    if sign is not None and sign != point:
        locale = "de_DE" if sign == "," else "en_US"
        point, group = _symbols(locale)
    # Spaces, apostrophes and the other of `.`/`,` are group separators wherever a
    # locale's own group sign is a (non-breaking) space: `1.234,56` in pl_PL.
    other = "," if point == "." else "."
    text = _SPACES.sub(group, value.strip())
    if group != other:
        text = text.replace(other, group)
    try:
        return parse_decimal(text, locale=locale, strict=True)
    except (NumberFormatError, InvalidOperation):
        raise NormalizationError("not a number in the column's locale") from None


def _only_reading(compact: str) -> str | None:
    """The decimal sign of a number written without a locale, when only one reading
    exists; NormalizationError when it reads two ways."""
    if _TWO_WAYS.fullmatch(compact):
        raise NormalizationError("reads two ways (set the mapping's locale or decimal)")
    dots, commas = compact.count("."), compact.count(",")
    if dots and commas:
        return "." if compact.rfind(".") > compact.rfind(",") else ","
    if dots > 1:
        return ","  # `1.500.000`: dots group, so a comma would be the decimal
    if commas > 1:
        return "."
    if commas:
        return ","  # `12,5`: not three digits after it, so not a group
    return "."


def boolean(text: str) -> bool:
    """A yes/no answer in the languages our users write (`ya`, `tak`, `có`)."""
    low = text.strip().casefold()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise NormalizationError("not yes/no")


_ISO = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")
_PARTS = re.compile(r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})")


@functools.lru_cache(maxsize=256)
def _locale_dayfirst(locale: str) -> bool:
    pattern = Locale.parse(locale.replace("-", "_")).date_formats["short"].pattern
    return bool(pattern.lower().find("d") < pattern.find("M"))


def day(text: str, reading: Reading = Reading()) -> str:
    """An ISO date (`YYYY-MM-DD`) from ISO, or day/month/year and month/day/year in the
    order the column's `dayfirst` or locale says. Without either, a date that reads two
    ways (`03/04/2024`) is an error; `25/12/2024` reads one way only."""
    value = text.strip().split("T")[0]
    iso = _ISO.fullmatch(value)
    if iso:
        return _date(int(iso[1]), int(iso[2]), int(iso[3]))
    parts = _PARTS.fullmatch(value)
    if not parts:
        raise NormalizationError("not a date (write it as YYYY-MM-DD)")
    a, b, year = int(parts[1]), int(parts[2]), int(parts[3])
    dayfirst = reading.dayfirst
    if dayfirst is None and reading.locale:
        dayfirst = _locale_dayfirst(reading.locale)
    if dayfirst is None:
        if a > 12 >= b:
            dayfirst = True
        elif b > 12 >= a:
            dayfirst = False
        elif a != b:
            raise NormalizationError("reads two ways (set the mapping's dayfirst or locale)")
        else:
            dayfirst = True
    d, m = (a, b) if dayfirst else (b, a)
    return _date(year, m, d)


def _date(year: int, month: int, d: int) -> str:
    try:
        return date(year, month, d).isoformat()
    except ValueError:
        raise NormalizationError("not a date (no such day)") from None
