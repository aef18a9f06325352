"""A worksheet as a lead source.

Each read is ONE values request for the whole worksheet. Rows are compared with what
the last read saw (a digest per row key, kept in the cursor), and only new or edited
rows become leads; a poll where nothing changed ingests nothing and writes nothing.
Rows that were sorted or moved keep their key, so they are not "new"; deleted rows
lose nothing (their contacts stay).

After the rows are stored, `writes()` gives the cells to write back in one request:
keys leadsync made for rows without one, and the error column (what is wrong with the
row, or blank once it is fine). Columns leadsync writes are never read as a rep's edit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from collections.abc import Mapping as Mapping_
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers
import structlog

from adapters.sheets.client import Cell, SheetsClient
from adapters.sheets.config import SheetConfig
from adapters.sheets.table import Row, Table, read_table
from connector.sdk import (
    Batch,
    Catalogue,
    FieldMap,
    HttpError,
    Lead,
    Mapping,
    Problem,
    SourceError,
    ThrottledError,
    infer,
    load_mapping_cached,
)

log = structlog.get_logger(__name__)

NUMBER_PHONE = (
    "the sheet stored this phone as a number, so a leading + or 0 is lost, and the "
    "digits read as two different numbers; format the column as plain text and type "
    "the phone again"
)


@dataclass
class SheetSource:
    """One worksheet, read through the mapping language of `import csv`."""

    config: SheetConfig
    client: SheetsClient
    catalogue: Catalogue = field(default_factory=Catalogue.default)
    region: str | None = None
    last: Table | None = None
    _pending: list[Cell] = field(default_factory=list)
    throttled: bool = False
    """The last read was refused by Google's quota and read nothing."""
    name: str = field(init=False)
    """The source name stored with the leads (the sheet's `source`)."""

    def __post_init__(self) -> None:
        self.name = self.config.source

    def check(self) -> None:
        self._values()

    def streams(self) -> list[str]:
        return [f"{self.config.spreadsheet_id}/{self.config.worksheet}"]

    def context(self) -> dict[str, Any]:
        mapping = self.config.mapping
        return {
            "kind": "sheets",
            "source": self.name,
            "mapping": str(mapping.resolve()) if mapping else None,
            "region": self.config.region or self.region,
            # What `remap` needs to read a quarantined row again as this sheet does.
            "key_column": self.config.key_column,
            "ours": sorted(self.ours()),
        }

    def _values(self) -> list[list[Any]]:
        try:
            return self.client.values(self.config.spreadsheet_id, self.config.worksheet)
        except HttpError as exc:
            raise SourceError(f"sheet {self.name}: {exc.action or exc}") from exc

    def table(self) -> Table:
        values = self._values()
        try:
            return read_table(
                values, self.config.header_row, self.config.key_column, self.name, self.ours()
            )
        except LookupError as exc:
            raise SourceError(f"sheet {self.name}: {exc}; check header_row") from exc

    def read(self, stream: str, cursor: Any) -> Iterator[Batch]:
        try:
            table = self.table()
        except SourceError as exc:
            if isinstance(exc.__cause__, ThrottledError):
                # Google's quota (429) outlasted the client's retries: this poll reads
                # nothing and moves no cursor; the next one resumes where this stood.
                log.warning("sheets.throttled", sheet=self.name, wait=exc.__cause__.wait)
                self.throttled = True
                return
            raise
        self.last = table
        seen: dict[str, str] = cursor.get("rows", {}) if isinstance(cursor, dict) else {}
        mapping = self.mapping(table)
        digests: dict[str, str] = {}
        leads: list[Lead] = []
        self._pending = []
        letters = {h: table.column_of(h) for h in table.added}
        if table.rows:  # name the columns leadsync adds, on the header row
            for header, letter in letters.items():
                self._pending.append((str(letter), self.config.header_row, header))
        for row in table.rows:
            digest = row.digest()
            digests[row.key] = digest
            if row.new_key:
                self._write(table, self.config.key_column, row, row.key)
            if seen.get(row.key) == digest:
                continue  # unchanged since the last read: nothing to ingest or write
            leads.append(self.lead(row, mapping))
        # `at` orders cursors (a later read is a later cursor); `rows` is what was seen.
        yield Batch(leads, {"rows": digests, "at": time.time()})

    def writes(
        self,
        issues: Mapping_[str, list[str]] | None = None,
        people: Mapping_[str, Any] | None = None,
    ) -> list[Cell]:
        """The cells to write back after the batch is stored: keys and column names
        leadsync added; with the store's open `issues` by row key, each row's error
        cell; with the rows' contacts (`people`: key -> id, score, owner), the
        contact id, score and owner columns. A cell is written only where it differs
        from what the sheet shows, so a quiet poll writes nothing."""
        cells = list(self._pending)
        table = self.last
        if table is None:
            return cells
        back = self.config.write_back
        wanted: list[tuple[str, Any]] = []
        if back.error is not None and issues is not None:
            wanted.append((back.error, lambda key: "; ".join(issues.get(key, []))))
        if people is not None:
            for column, field_name in (
                (back.contact_id, "id"),
                (back.score, "score"),
                (back.owner, "owner"),
            ):
                if column is not None:
                    wanted.append((column, _value_of(people, field_name)))
        for column, value_of in wanted:
            letter = table.column_of(column)
            assert letter is not None  # read_table adds the columns leadsync writes
            for row in table.rows:
                text = value_of(row.key)
                if text != row.ours.get(column, ""):
                    cells.append((letter, row.number, text))
        return cells

    def mapping(self, table: Table) -> Mapping:
        """The configured mapping (or one recognised from the header), keyed by the key
        column, with the status column read through the sheet's status words."""
        path = self.config.mapping
        if path is not None:
            base = load_mapping_cached(Path(path))
        else:
            found = infer([h for h in table.header if h not in self.ours()])
            if not found.identifies:
                raise SourceError(
                    f"sheet {self.name}: no column identifies a person (email or phone); "
                    f"the header is {table.header}: give a mapping"
                )
            base = Mapping(columns={c: FieldMap(field=t) for c, t in found.columns.items()})
        # The status column is not a lead's field: it goes to the status engine
        # (adapters/sheets/sync.py), read apart from the row's data like our columns.
        columns = {k: v for k, v in base.columns.items() if k not in self.ours()}
        return base.model_copy(update={"columns": columns, "id_column": self.config.key_column})

    def ours(self) -> set[str]:
        """Columns read apart from a row's data: those leadsync writes, and the status
        column (synced through the engine; our own writes to it are not edits)."""
        back = self.config.write_back
        status = self.config.status_column
        return {c for c in (back.score, back.owner, back.contact_id, back.error, status) if c}

    def lead(self, row: Row, mapping: Mapping) -> Lead:
        cells: dict[str, Any] = {k: v for k, v in row.cells.items() if k not in self.ours()}
        region = self.config.region or self.region
        problems: list[Problem] = []
        for header, target in mapping.columns.items():
            if target.field == "phone" and header in row.numeric and header in cells:
                text, problem = phone_from_number(cells[header], region, header)
                if problem is not None:
                    problems.append(problem)
                    del cells[header]
                else:
                    cells[header] = text
        cells[self.config.key_column] = row.key
        lead = mapping.apply(
            cells,
            source=self.name,
            ref=f"{self.config.worksheet} row {row.number} (key {row.key})",
            catalogue=self.catalogue,
            region=region,
        )
        lead.problems.extend(problems)
        return lead

    def _write(self, table: Table, header: str, row: Row, text: str) -> None:
        letter = table.column_of(header)
        assert letter is not None  # read_table adds the key column; ours are in `ours()`
        self._pending.append((letter, row.number, text))


def _value_of(people: Mapping_[str, Any], name: str) -> Any:
    """The text a sheet shows for a contact's `name` (id, score, owner): "" when none;
    whole scores without ".0"."""

    def text(key: str) -> str:
        person = people.get(key)
        value = getattr(person, name, None) if person is not None else None
        if value is None:
            return ""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return text


def phone_from_number(digits: str, region: str | None, header: str) -> tuple[str, Problem | None]:
    """A phone Sheets stored as a number: `60123456789` was `+60123456789`, `612345678`
    was `0612345678`. The reading that is a valid number is taken; when both are valid
    and differ, the value is left out with a field issue rather than guessed."""
    readings: dict[str, str] = {}
    for text in (f"+{digits}", digits, f"0{digits}"):
        try:
            parsed = phonenumbers.parse(text, None if text.startswith("+") else region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            readings.setdefault(e164, text)
    if len(readings) > 1:
        return digits, Problem(header, NUMBER_PHONE, digits, "field")
    if readings:
        return next(iter(readings)), None
    return digits, None  # no valid reading: the normaliser reports it as usual
