"""The Status column, both ways, through the core's status engine.

Each worksheet with a `status_column` is a two-way system named by its `source`. A
poll reads the column with the rest of the row; every key whose status word differs
from what the last poll saw becomes a `StatusObservation` by a person (reps edit the
sheet) at the time of the poll (Sheets keeps no time per cell), decided by
`connector.sync.status.observe` in one transaction with the column's own cursor, so a
crash between the rows' ingest and the decision makes the next poll observe again
(the engine drops what it already has).

Statuses decided elsewhere reach the sheet as outbox rows (kind "status"):
`SheetDestination.deliver` reads the worksheet once to find each key's row (rows move:
positions are never remembered), writes every word in one batchUpdate (RAW), and
records what it wrote so the next poll's read of it is dropped as our echo.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from adapters.sheets.client import Cell, SheetsClient
from adapters.sheets.config import SheetConfig
from adapters.sheets.table import Table, read_table
from connector.sdk import (
    Delivered,
    DeliveryResult,
    OutboxRow,
    Retry,
    StatusObservation,
    Store,
    Vocabulary,
    links,
    load_cursor,
    observe,
    save_cursor,
)

log = structlog.get_logger(__name__)


def vocabulary(sheet: SheetConfig) -> Vocabulary:
    return Vocabulary(statuses=dict(sheet.statuses), write=dict(sheet.write))


def status_stream(sheet: SheetConfig) -> str:
    """The cursor of the status column: apart from the rows', committed with the
    engine's decisions."""
    return f"{sheet.spreadsheet_id}/{sheet.worksheet}#status"


def observe_statuses(store: Store, sheet: SheetConfig, table: Table) -> dict[str, int]:
    """Hand the engine every status word that changed since the last poll."""
    column = sheet.status_column
    if column is None:
        return {}
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        stored = load_cursor(conn, sheet.source, status_stream(sheet))
        seen: dict[str, str] = stored.get("statuses", {}) if isinstance(stored, dict) else {}
        current = {row.key: row.ours.get(column, "") for row in table.rows}
        changed = [
            StatusObservation(
                system=sheet.source,
                external_id=key,
                value=word or None,
                changed_at=now,
                by_person=True,
            )
            for key, word in current.items()
            if seen.get(key, "") != word
        ]
        links.link_from_leads(conn, sheet.source, [k for k in current if k not in seen], now)
        decisions = observe(conn, changed, vocabulary(sheet), now) if changed else []
        if changed:
            save_cursor(conn, sheet.source, status_stream(sheet), {"statuses": current}, now)
    accepted = sum(1 for d in decisions if d.changed)
    return {"statuses_seen": len(changed), "statuses_changed": accepted}


class SheetDestination:
    """Where a sheet's outbox rows go: its Status column (kind "status"); new contacts
    from other sources (kind "contact") are not added as rows."""

    def __init__(self, sheet: SheetConfig, client: SheetsClient, store: Store) -> None:
        self.sheet, self.client, self.store = sheet, client, store
        self.name = sheet.source
        self.vocabulary = vocabulary(sheet)

    def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
        wanted = [r for r in rows if r.kind == "status" and self._keys(r)]
        if not wanted:
            return [Delivered() for _ in rows]
        try:
            table = self._table()
        except Exception as exc:  # the whole batch waits for the next try
            return [Retry(f"sheet {self.name}: {exc}") for _ in rows]
        column = self.sheet.status_column
        assert column is not None  # only sheets with a status column are systems
        letter = table.column_of(column)
        assert letter is not None
        where = {row.key: row.number for row in table.rows}
        cells: list[Cell] = []
        written: list[tuple[int, str, str]] = []
        for r in wanted:
            word = self.vocabulary.to_external(str(r.payload["status"]))
            if word is None or r.contact_id is None:
                continue  # the sheet has no word for this status: nothing to write
            for key in self._keys(r):
                number = where.get(key)
                if number is None:
                    continue  # the row was deleted: the contact stays in the store
                cells.append((letter, number, word))
                written.append((r.contact_id, key, word))
        if cells:
            self.client.write(self.sheet.spreadsheet_id, self.sheet.worksheet, cells)
            now = datetime.now(UTC)
            with self.store.engine.begin() as conn:
                for contact_id, key, word in written:
                    links.record_written(conn, self.name, contact_id, key, word, now)
        log.info("sheets.statuses_written", sheet=self.name, cells=len(cells), rows=len(rows))
        return [Delivered() for _ in rows]

    def _keys(self, row: OutboxRow) -> list[str]:
        payload: Any = row.payload if isinstance(row.payload, dict) else {}
        return [str(k) for k in payload.get("external_ids") or []]

    def _table(self) -> Table:
        values = self.client.values(self.sheet.spreadsheet_id, self.sheet.worksheet)
        ours = [c for c in (self.sheet.status_column,) if c]
        return read_table(
            values, self.sheet.header_row, self.sheet.key_column, self.sheet.source, ours
        )
