"""A worksheet's values as rows a person keeps: a header, rows known by their key.

Sheets answers ragged rows (trailing empty cells left out, §J), a header that may sit
below title rows, blank or repeated header cells, and numbers where a rep typed a
phone. This module turns one values response into `Row`s without losing a cell: a
blank header becomes `column C`, a repeated one `Notes (column G)`, and numbers keep
the digits Google stored (the reading of phones is the source's business).

Rows are identified by the key column, never by position (rows get sorted and
deleted). A row with no key gets one derived from its content and its occurrence
among identical rows, so a key that could not be written back yet is the same key at
the next poll; a key repeated in a second row (a copied row) is replaced there the
same way, so each person keeps their own.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson


def column_name(index: int) -> str:
    """A 0-based column index as its letters: 0 -> A, 26 -> AA. The emulator has its own
    (fake_cells.column_name) on purpose: the client and the fake must not share code,
    or a bug in it would agree with itself."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


@dataclass(slots=True)
class Row:
    """One data row: its 1-based row number now, its cells by header, its key."""

    number: int
    cells: dict[str, str]
    key: str
    numeric: frozenset[str] = frozenset()
    """Headers whose cell Sheets stored as a number (a phone there lost its + or 0)."""
    new_key: bool = False
    """The key was made by leadsync and must be written into the key column."""
    ours: dict[str, str] = field(default_factory=dict)
    """Cells of the columns leadsync writes (not part of the row's data or digest)."""

    def digest(self) -> str:
        """What changes when a person edits the row (its key and every cell)."""
        payload = orjson.dumps(self.cells, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(payload).hexdigest()[:20]


@dataclass(slots=True)
class Table:
    header: list[str]
    rows: list[Row]
    blank: int = 0
    renamed: dict[str, str] = field(default_factory=dict)
    """Header cells renamed to stay apart (`Notes` -> `Notes (column G)`)."""
    added: list[str] = field(default_factory=list)
    """Columns leadsync needs that the header lacks: their header cell is written too."""

    def column_of(self, header: str) -> str | None:
        """The column letter of `header`, or None."""
        return column_name(self.header.index(header)) if header in self.header else None


def cell_text(value: Any) -> tuple[str, bool]:
    """A cell of an UNFORMATTED_VALUE response as text, and whether it was a number."""
    if isinstance(value, bool):
        return ("TRUE" if value else "FALSE"), False
    if isinstance(value, int):
        return str(value), True
    if isinstance(value, float):
        return (str(int(value)) if value.is_integer() else repr(value)), True
    return ("" if value is None else str(value)), False


def read_table(
    values: Sequence[Sequence[Any]],
    header_row: int,
    key_column: str,
    source: str,
    ours: Collection[str] = (),
) -> Table:
    """The rows below `header_row` (1-based) of a values response. `ours` are the
    columns leadsync writes; with the key column they are added after the last column
    when the header lacks them."""
    if len(values) < header_row or not any(str(v).strip() for v in values[header_row - 1]):
        raise LookupError(f"row {header_row} (the header_row) is empty")
    raw_header = [cell_text(v)[0].strip() for v in values[header_row - 1]]
    header, renamed = _distinct(raw_header)
    added = []
    for column in (key_column, *ours):
        if column not in header:
            header.append(column)  # written by leadsync in the first free column
            added.append(column)
    table = Table(header, [], renamed=renamed, added=added)
    seen_keys: set[str] = set()
    contents: Counter[str] = Counter()
    for offset, line in enumerate(values[header_row:]):
        number = header_row + 1 + offset
        cells: dict[str, str] = {}
        numeric = set()
        for index, value in enumerate(line):
            text, is_number = cell_text(value)
            if not text.strip():
                continue
            name = header[index] if index < len(header) else f"column {column_name(index)}"
            cells[name] = text
            if is_number:
                numeric.add(name)
        key = cells.pop(key_column, "").strip()
        mine = {c: cells.pop(c) for c in ours if c in cells}
        if not cells:
            table.blank += 1
            continue
        new = not key or key in seen_keys
        if new:
            content = orjson.dumps(cells, option=orjson.OPT_SORT_KEYS).decode()
            contents[content] += 1
            seed = f"{source}\n{content}\n{contents[content]}"
            key = "ls-" + hashlib.sha256(seed.encode()).hexdigest()[:12]
        seen_keys.add(key)
        table.rows.append(Row(number, cells, key, frozenset(numeric), new, mine))
    return table


def _distinct(header: list[str]) -> tuple[list[str], dict[str, str]]:
    """Header names made distinct: blank -> `column C`, repeated -> `Notes (column G)`."""
    names: list[str] = []
    renamed: dict[str, str] = {}
    counts = Counter(h for h in header if h)
    for index, text in enumerate(header):
        letter = column_name(index)
        if not text:
            name = f"column {letter}"
        elif counts[text] > 1 and text in names:
            name = f"{text} (column {letter})"
            renamed[name] = text
        else:
            name = text
        names.append(name)
    return names, renamed
