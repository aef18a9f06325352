"""Cells of the Sheets emulator: A1 ranges, how Google reads what is typed, and how it
renders a cell back (shared/reference/external-apis.md §F and §J).

A cell holds what Google keeps: a typed value (text, number, boolean) and, for dates and
percentages, a number format. What the API returns depends on `valueRenderOption`:
FORMATTED_VALUE is the text a person sees, UNFORMATTED_VALUE the JSON number, FORMULA the
formula text. `valueInputOption` decides how written text is read: RAW keeps it as text;
USER_ENTERED parses it as if typed into the UI, which is where phones lose their `+` and
their leading `0` (`+60123456789` is read as a formula giving 60123456789, `0612345678`
as the number 612345678).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

Render = Literal["FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA"]
DateRender = Literal["SERIAL_NUMBER", "FORMATTED_STRING"]
RENDERS = ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA")
DATE_RENDERS = ("SERIAL_NUMBER", "FORMATTED_STRING")
INPUTS = ("RAW", "USER_ENTERED")

# Sheets counts days from 1899-12-30 (the Lotus 1-2-3 epoch, as Excel does).
EPOCH = date(1899, 12, 30)


class SheetsError(Exception):
    """An error Google answers, with its HTTP code, status and message."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


def invalid(message: str) -> SheetsError:
    return SheetsError(400, "INVALID_ARGUMENT", message)


@dataclass(frozen=True, slots=True)
class Cell:
    """One non-empty cell. `value` is text, a number or a boolean; `kind` is the number
    format Google applied on input (`date`, `percent`) or `None`."""

    value: str | float | bool
    kind: str | None = None
    formula: str | None = None

    def render(self, option: str, dates: str) -> Any:
        if option == "FORMULA" and self.formula is not None:
            return self.formula
        if isinstance(self.value, bool):
            return (
                ("TRUE" if self.value else "FALSE") if option == "FORMATTED_VALUE" else self.value
            )
        if isinstance(self.value, str):
            return self.value
        if option == "FORMATTED_VALUE" or (self.kind == "date" and dates == "FORMATTED_STRING"):
            return formatted(self.value, self.kind)
        return json_number(self.value)


def json_number(value: float) -> int | float:
    """Google writes integral numbers without a fraction (60123456789, not 60123456789.0)."""
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


def formatted(value: float, kind: str | None) -> str:
    """The text a person sees for a number in Sheets' default ("Automatic") format."""
    if kind == "date":
        return date.fromordinal(EPOCH.toordinal() + int(value)).isoformat()
    if kind == "percent":
        return f"{json_number(round(value * 100, 10))}%"
    if abs(value) >= 1e15:  # Automatic turns very large numbers scientific: 6.01235E+15
        mantissa, exponent = f"{value:.5E}".split("E")
        return f"{mantissa.rstrip('0').rstrip('.')}E+{int(exponent):02d}"
    return str(json_number(round(value, 10)))


_NUMBER = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?([eE][+-]?\d+)?$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


def user_entered(text: str) -> Cell | None:
    """How the Sheets UI (and USER_ENTERED) reads typed text, in an en_US spreadsheet."""
    if text == "":
        return None
    if text.startswith("'"):  # a leading apostrophe forces text and is not shown
        return Cell(text[1:]) if len(text) > 1 else None
    if text.startswith("="):
        raise SheetsError(500, "INTERNAL", f"fake bug: formulas are not emulated ({text!r})")
    stripped = text.strip()
    if stripped.upper() in ("TRUE", "FALSE"):
        return Cell(stripped.upper() == "TRUE")
    if stripped.endswith("%") and _NUMBER.match(stripped[:-1]):
        return Cell(float(stripped[:-1].replace(",", "")) / 100, "percent")
    if _NUMBER.match(stripped):
        # `+60123456789` is typed as a formula (`=+60123456789`) and shows the number;
        # `0612345678` is a number, so its leading zero is gone.
        number = float(stripped.replace(",", "").lstrip("+"))
        return Cell(-number if stripped.startswith("-") and number > 0 else number)
    day = _parse_date(stripped)
    if day is not None:
        return Cell(float(day.toordinal() - EPOCH.toordinal()), "date")
    return Cell(text)


def _parse_date(text: str) -> date | None:
    found = _ISO_DATE.match(text)
    parts: tuple[int, int, int] | None = None
    if found:
        parts = (int(found[1]), int(found[2]), int(found[3]))
    elif found := _US_DATE.match(text):  # en_US: month first
        parts = (int(found[3]), int(found[1]), int(found[2]))
    if parts is None:
        return None
    try:
        return date(*parts)
    except ValueError:
        return None


def raw(value: Any) -> Cell | None:
    """RAW input: text stays text exactly as sent; JSON numbers and booleans stay typed."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return Cell(value)
    if isinstance(value, int | float):
        return Cell(float(value))
    if isinstance(value, str):
        return Cell(value)
    raise invalid(f"Invalid values[0][0]: {type(value).__name__} is not a cell value")


def entered(value: Any, option: str) -> Cell | None:
    """A written value read with `valueInputOption`."""
    if option == "RAW" or not isinstance(value, str):
        return raw(value)
    return user_entered(value)


# -- A1 notation ------------------------------------------------------------------------

_CELL = re.compile(r"^([A-Za-z]*)(\d*)$")


def column_index(letters: str) -> int:
    """0-based index of a column name: A -> 0, Z -> 25, AA -> 26."""
    index = 0
    for char in letters.upper():
        index = index * 26 + (ord(char) - 64)
    return index - 1


def column_name(index: int) -> str:
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


@dataclass(frozen=True, slots=True)
class Area:
    """A parsed range: the sheet's title and 0-based bounds, end exclusive (None: open)."""

    sheet: str | None
    row0: int
    col0: int
    row1: int | None
    col1: int | None
    anchor: bool = False
    """A single cell (`A1`): a write from it may spread right and down, as in Google."""

    def a1(self, sheet: str, rows: int, cols: int) -> str:
        """The range as Google echoes it: quoted title, bounds clipped to the grid."""
        row1 = min(self.row1 if self.row1 is not None else rows, rows)
        col1 = min(self.col1 if self.col1 is not None else cols, cols)
        start = f"{column_name(self.col0)}{self.row0 + 1}"
        end = f"{column_name(max(col1 - 1, self.col0))}{max(row1, self.row0 + 1)}"
        return f"{quote_title(sheet)}!{start}" + ("" if start == end else f":{end}")


def quote_title(title: str) -> str:
    """A title as Google writes it in a range: bare when it is a plain word that cannot be
    read as a cell (`Sheet1`), else in single quotes with quotes doubled."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", title) and not re.fullmatch(
        r"[A-Za-z]{1,3}\d+", title
    ):
        return title
    return "'" + title.replace("'", "''") + "'"


def parse_range(text: str) -> Area:
    """`'My Sheet'!A2:C`, `Sheet1!A:A`, `Sheet1!2:5`, `Sheet1`, `A1:B2` (first sheet)."""
    sheet: str | None
    if text.startswith("'"):
        end = 1
        title = []
        while True:
            quote = text.find("'", end)
            if quote < 0:
                raise invalid(f"Unable to parse range: {text}")
            title.append(text[end:quote])
            if text[quote + 1 : quote + 2] == "'":
                title.append("'")
                end = quote + 2
                continue
            break
        sheet, rest = "".join(title), text[quote + 1 :]
        if rest and not rest.startswith("!"):
            raise invalid(f"Unable to parse range: {text}")
        cells = rest[1:]
    elif "!" in text:
        sheet, cells = text.split("!", 1)
    else:
        # A bare word is a sheet title unless it reads as cells (`A1`, `A1:B2`, `A:C`).
        if _is_cells(text):
            sheet, cells = None, text
        else:
            sheet, cells = text, ""
    if not cells:
        return Area(sheet, 0, 0, None, None)
    first, _, second = cells.partition(":")
    start = _CELL.match(first)
    stop = _CELL.match(second or first)
    if not start or not stop or not (first.strip() and (second or first).strip()):
        raise invalid(f"Unable to parse range: {text}")
    col0 = column_index(start[1]) if start[1] else 0
    row0 = int(start[2]) - 1 if start[2] else 0
    col1 = column_index(stop[1]) + 1 if stop[1] else None
    row1 = int(stop[2]) if stop[2] else None
    if not second and start[1] and start[2]:  # a single cell
        return Area(sheet, row0, col0, row0 + 1, col0 + 1, anchor=True)
    if row0 < 0 or (row1 is not None and row1 <= row0) or (col1 is not None and col1 <= col0):
        raise invalid(f"Unable to parse range: {text}")
    return Area(sheet, row0, col0, row1, col1)


def _is_cells(text: str) -> bool:
    parts = text.split(":")
    return len(parts) <= 2 and all(
        (m := _CELL.match(p)) is not None and (m[1] or m[2]) and len(m[1]) <= 3 for p in parts
    )
