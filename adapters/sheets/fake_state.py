"""The Sheets emulator's spreadsheets: worksheets of cells, the values API's reads and
writes, and the per-minute quotas (shared/reference/external-apis.md §F, §J).

What Google does and this copies: responses leave out trailing empty cells of a row and
trailing empty rows (a blank sheet has no `values` key); writing outside the grid is a
400 ("exceeds grid limits"), except by append, which grows the sheet; a batchUpdate is
atomic (every range is checked before any is written); quotas are per minute, per user
and per project, reads and writes apart, answered 429 RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.sheets.fake_cells import (
    Area,
    Cell,
    SheetsError,
    column_name,
    entered,
    invalid,
    parse_range,
    quote_title,
    user_entered,
)

NOT_FOUND = SheetsError(404, "NOT_FOUND", "Requested entity was not found.")
DENIED = SheetsError(403, "PERMISSION_DENIED", "The caller does not have permission")


@dataclass
class Worksheet:
    """One tab: a grid of `rows` x `cols` cells, of which `cells` holds the non-empty."""

    sheet_id: int
    title: str
    index: int
    rows: int = 1000
    cols: int = 26
    cells: dict[tuple[int, int], Cell] = field(default_factory=dict)

    def used(self) -> tuple[int, int]:
        """(rows, cols) up to the last non-empty cell."""
        if not self.cells:
            return 0, 0
        return max(r for r, _ in self.cells) + 1, max(c for _, c in self.cells) + 1

    def grid(self, area: Area, option: str, dates: str, major: str = "ROWS") -> dict[str, Any]:
        """A ValueRange for `area`, trimmed as Google trims it."""
        row1 = min(area.row1 if area.row1 is not None else self.rows, self.rows)
        col1 = min(area.col1 if area.col1 is not None else self.cols, self.cols)
        out: dict[str, Any] = {
            "range": area.a1(self.title, self.rows, self.cols),
            "majorDimension": major,
        }
        outer, inner = (
            (range(area.row0, row1), range(area.col0, col1))
            if major == "ROWS"
            else (range(area.col0, col1), range(area.row0, row1))
        )
        lines: list[list[Any]] = []
        for a in outer:
            line: list[Any] = []
            for b in inner:
                cell = self.cells.get((a, b) if major == "ROWS" else (b, a))
                line.append("" if cell is None else cell.render(option, dates))
            while line and line[-1] == "":
                line.pop()
            lines.append(line)
        while lines and not lines[-1]:
            lines.pop()
        if lines:
            out["values"] = lines
        return out

    def check_fits(self, area: Area, values: Sequence[Sequence[Any]], text: str) -> None:
        rows = area.row0 + len(values)
        cols = area.col0 + max((len(v) for v in values), default=0)
        if rows > self.rows or cols > self.cols:
            raise invalid(
                f"Range ({text}) exceeds grid limits. Max rows: {self.rows}, "
                f"max columns: {self.cols}"
            )
        if area.anchor:
            return
        if area.row1 is not None and rows > area.row1:
            raise invalid(
                f"Requested writing within range [{text}], but tried writing to row [{rows}]"
            )
        if area.col1 is not None and cols > area.col1:
            raise invalid(
                f"Requested writing within range [{text}], but tried writing to column "
                f"[{column_name(cols - 1)}]"
            )

    def write(self, area: Area, values: Sequence[Sequence[Any]], option: str) -> dict[str, Any]:
        """Cells written from `area`'s corner; an empty string or null clears a cell."""
        parsed = [[entered(v, option) for v in row] for row in values]  # may raise first
        touched_rows = touched_cols = cells = 0
        for r, row in enumerate(parsed):
            for c, cell in enumerate(row):
                key = (area.row0 + r, area.col0 + c)
                if cell is None:
                    self.cells.pop(key, None)
                else:
                    self.cells[key] = cell
                cells += 1
            touched_rows += 1 if row else 0
            touched_cols = max(touched_cols, len(row))
        end = Area(
            self.title,
            area.row0,
            area.col0,
            area.row0 + max(touched_rows, 1),
            area.col0 + max(touched_cols, 1),
        )
        return {
            "updatedRange": end.a1(self.title, self.rows, self.cols),
            "updatedRows": touched_rows,
            "updatedColumns": touched_cols,
            "updatedCells": cells,
        }

    def table_end(self, area: Area) -> int:
        """Where append writes: after the last row holding data in `area`'s columns
        (Google's "table" detection, simplified to the columns of the range)."""
        col1 = area.col1 if area.col1 is not None else self.cols
        last = area.row0 - 1
        for r, c in self.cells:
            if area.col0 <= c < col1 and r >= area.row0:
                last = max(last, r)
        return last + 1


@dataclass
class Spreadsheet:
    """A spreadsheet file: its tabs and who it is shared with (service-account emails)."""

    spreadsheet_id: str
    title: str
    sheets: list[Worksheet]
    shared_with: set[str]
    locale: str = "en_US"
    time_zone: str = "Etc/GMT"

    def tab(self, title: str | None) -> Worksheet:
        if title is None:
            return self.sheets[0]
        for sheet in self.sheets:
            if sheet.title == title:
                return sheet
        raise invalid(f"Unable to parse range: {quote_title(title)}")

    def metadata(self) -> dict[str, Any]:
        return {
            "spreadsheetId": self.spreadsheet_id,
            "properties": {
                "title": self.title,
                "locale": self.locale,
                "autoRecalc": "ON_CHANGE",
                "timeZone": self.time_zone,
            },
            "sheets": [
                {
                    "properties": {
                        "sheetId": s.sheet_id,
                        "title": s.title,
                        "index": s.index,
                        "sheetType": "GRID",
                        "gridProperties": {"rowCount": s.rows, "columnCount": s.cols},
                    }
                }
                for s in self.sheets
            ],
            "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{self.spreadsheet_id}/edit",
        }


@dataclass
class Quota:
    """Requests per minute, per user and per project, for reads and writes apart; the
    window refills each minute (§F: 60 per user, 300 per project)."""

    clock: Callable[[], float]
    per_user: int = 60
    per_project: int = 300
    _window: int = -1
    _used: dict[tuple[str, str], int] = field(default_factory=dict)

    def take(self, kind: str, user: str) -> None:
        minute = int(self.clock() // 60)
        if minute != self._window:
            self._window, self._used = minute, {}
        per_user = self._used.get((kind, user), 0)
        per_project = self._used.get((kind, "*"), 0)
        if per_user >= self.per_user or per_project >= self.per_project:
            scope = "per user" if per_user >= self.per_user else ""
            metric = "Read requests" if kind == "read" else "Write requests"
            raise SheetsError(
                429,
                "RESOURCE_EXHAUSTED",
                f"Quota exceeded for quota metric '{metric}' and limit '{metric} per minute"
                f"{' ' + scope if scope else ''}' of service 'sheets.googleapis.com' for "
                "consumer 'project_number:000000000000'.",
            )
        self._used[(kind, user)] = per_user + 1
        self._used[(kind, "*")] = per_project + 1


class Drive:
    """Every spreadsheet of the emulator, behind one lock (requests run on threads)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.lock = threading.RLock()
        self.files: dict[str, Spreadsheet] = {}
        self.quota = Quota(clock)
        self._next_sheet = 0

    def create(
        self, spreadsheet_id: str, title: str, tabs: Sequence[str], shared_with: set[str]
    ) -> Spreadsheet:
        with self.lock:
            sheets = []
            for index, tab in enumerate(tabs):
                sheets.append(Worksheet(self._next_sheet, tab, index))
                self._next_sheet += 1 if self._next_sheet else 1_234_567  # like real gids
            book = Spreadsheet(spreadsheet_id, title, sheets, set(shared_with))
            self.files[spreadsheet_id] = book
            return book

    def open(self, spreadsheet_id: str, user: str) -> Spreadsheet:
        book = self.files.get(spreadsheet_id)
        if book is None:
            raise NOT_FOUND
        if user not in book.shared_with:
            raise DENIED
        return book

    # -- the values API ------------------------------------------------------------------
    def get(self, book: Spreadsheet, text: str, option: str, dates: str, major: str) -> Any:
        area = parse_range(text)
        return book.tab(area.sheet).grid(area, option, dates, major)

    def update(self, book: Spreadsheet, text: str, values: Any, option: str) -> dict[str, Any]:
        area = parse_range(text)
        sheet = book.tab(area.sheet)
        rows = _rows(values)
        sheet.check_fits(area, rows, text)
        return {"spreadsheetId": book.spreadsheet_id, **sheet.write(area, rows, option)}

    def batch_update(self, book: Spreadsheet, data: Any, option: str) -> dict[str, Any]:
        if not isinstance(data, list):
            raise invalid("Invalid JSON payload received. 'data' must be a list")
        checked = []
        for item in data:  # atomic: every range checked before anything is written
            if not isinstance(item, dict) or "range" not in item:
                raise invalid("Invalid data[0]: a ValueRange needs a range")
            area = parse_range(str(item["range"]))
            sheet = book.tab(area.sheet)
            rows = _rows(item.get("values", []))
            sheet.check_fits(area, rows, str(item["range"]))
            for row in rows:
                for value in row:
                    if option == "USER_ENTERED" and isinstance(value, str):
                        user_entered(value)  # a value that cannot be read fails the batch
            checked.append((sheet, area, rows))
        responses = [
            {"spreadsheetId": book.spreadsheet_id, **sheet.write(area, rows, option)}
            for sheet, area, rows in checked
        ]
        return {
            "spreadsheetId": book.spreadsheet_id,
            "totalUpdatedRows": sum(r["updatedRows"] for r in responses),
            "totalUpdatedColumns": sum(r["updatedColumns"] for r in responses),
            "totalUpdatedCells": sum(r["updatedCells"] for r in responses),
            "totalUpdatedSheets": len({id(s) for s, _, _ in checked}),
            "responses": responses,
        }

    def append(
        self, book: Spreadsheet, text: str, values: Any, option: str, insert: str
    ) -> dict[str, Any]:
        area = parse_range(text)
        sheet = book.tab(area.sheet)
        rows = _rows(values)
        start = sheet.table_end(area)
        table = Area(sheet.title, area.row0, area.col0, max(start, area.row0 + 1), area.col1)
        if insert == "INSERT_ROWS":
            moved = {
                (r + len(rows) if r >= start else r, c): v for (r, c), v in sheet.cells.items()
            }
            sheet.cells = moved
            sheet.rows += len(rows)
        else:  # OVERWRITE: writes over whatever follows, growing the grid if it must
            sheet.rows = max(sheet.rows, start + len(rows))
        sheet.cols = max(sheet.cols, area.col0 + max((len(r) for r in rows), default=0))
        target = Area(sheet.title, start, area.col0, None, None)
        updates = sheet.write(target, rows, option)
        return {
            "spreadsheetId": book.spreadsheet_id,
            "tableRange": table.a1(sheet.title, sheet.rows, sheet.cols),
            "updates": {"spreadsheetId": book.spreadsheet_id, **updates},
        }

    def clear(self, book: Spreadsheet, text: str) -> dict[str, Any]:
        area = parse_range(text)
        sheet = book.tab(area.sheet)
        row1 = area.row1 if area.row1 is not None else sheet.rows
        col1 = area.col1 if area.col1 is not None else sheet.cols
        for key in [
            k for k in sheet.cells if area.row0 <= k[0] < row1 and area.col0 <= k[1] < col1
        ]:
            del sheet.cells[key]
        return {
            "spreadsheetId": book.spreadsheet_id,
            "clearedRange": area.a1(sheet.title, sheet.rows, sheet.cols),
        }


def _rows(values: Any) -> list[list[Any]]:
    if not isinstance(values, list) or not all(isinstance(r, list) for r in values):
        raise invalid("Invalid JSON payload received. 'values' must be a list of lists")
    return values
