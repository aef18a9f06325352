"""The Sheets adapter's cases for the contract suite (tests/contract/): the Sheets
emulator with a worksheet of six leads, a wrong token as the broken source, and
Google's per-minute quota answered with 429s as the throttle (`SheetsCase`); a
worksheet with a Status column as a two-way system (`SheetsStatusCase`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from adapters.sheets.client import SheetsClient
from adapters.sheets.config import SheetsConfig
from adapters.sheets.fake import TOKEN, FakeSheets
from adapters.sheets.source import SheetSource
from adapters.sheets.sync import SheetDestination, vocabulary
from connector.sdk import LeadSource, Pipeline, StatusSystem, Store

SHEET = "1ContractSheet"


class SheetsCase:
    """Six rows, each with its email (see `connector.sdk.SourceCase`)."""

    config_model: type[BaseModel] = SheetsConfig
    lag_records = 0  # only rows changed since the cursor are read again: none

    def __init__(self) -> None:
        self.fake = FakeSheets()
        self.fake.start()
        self.fake.add_spreadsheet(SHEET, "Contract", ("Leads",))
        self.fake.type_rows(SHEET, "Leads", [["Name", "Email", "leadsync id"]])
        self.rows = 0
        self.add(6)

    def add(self, n: int) -> None:
        rows = [[f"Person {self.rows + i}", f"p{self.rows + i}@example.com", f"k{self.rows + i}"]
                for i in range(n)]  # fmt: skip
        self.fake.type_rows(SHEET, "Leads", rows, start=self.rows + 2)
        self.rows += n

    def _source(self, store: Store, token: str) -> SheetSource:
        config = SheetsConfig.model_validate(
            {
                "token": token,
                "api_url": self.fake.base_url,
                "sheets": [
                    {"source": "contract-sheet", "spreadsheet_id": SHEET, "worksheet": "Leads"}
                ],
            }
        )
        client = SheetsClient(config, quota_wait=0.05)
        return SheetSource(config.sheets[0], client, store.catalogue)

    def source(self, store: Store) -> LeadSource:
        return self._source(store, TOKEN)

    def broken(self, store: Store) -> tuple[LeadSource, str]:
        return self._source(store, "not-a-token"), "check the key file or token"

    def order(self, cursor: Any) -> Any:
        return cursor["at"]

    def throttle(self) -> Callable[[], int] | None:
        before = self.fake.calls["error 429"]
        self.fake.fail_next("read", 429, times=1000)
        return lambda: self.fake.calls["error 429"] - before

    def lift(self) -> None:
        self.fake.clear_faults()

    def close(self) -> None:
        self.fake.stop()


STATUS_SHEET = "1ContractStatusSheet"
STATUS_WORDS = {"Baru": "New", "Dihubungi": "Reach", "Layak": "Qualified", "Runding": "Negotiating"}


class SheetsStatusCase:
    """Two rows whose Status column says "Baru" (New), keys k0 and k1 (see
    `connector.sdk.StatusCase`): the poll reads them, the push writes the column."""

    name = "contract-status-sheet"

    def __init__(self) -> None:
        self.fake = FakeSheets()
        self.fake.start()
        self.fake.add_spreadsheet(STATUS_SHEET, "Contract", ("Leads",))
        rows = [["Name", "Email", "leadsync id", "Status"]]
        rows += [[f"Person {i}", f"s{i}@example.com", f"k{i}", "Baru"] for i in range(2)]
        self.fake.type_rows(STATUS_SHEET, "Leads", rows)
        self.config = SheetsConfig.model_validate(
            {
                "token": TOKEN,
                "api_url": self.fake.base_url,
                "sheets": [
                    {
                        "source": self.name,
                        "spreadsheet_id": STATUS_SHEET,
                        "worksheet": "Leads",
                        "status_column": "Status",
                        "statuses": STATUS_WORDS,
                    }
                ],
            }
        )
        self.sheet = self.config.sheets[0]
        self.client = SheetsClient(self.config, quota_wait=0.05)

    def pull(self, store: Store) -> None:
        from adapters.sheets import poll

        poll(SheetSource(self.sheet, self.client, store.catalogue), Pipeline(store, workers=0))

    def system(self, store: Store) -> StatusSystem:
        return SheetDestination(self.sheet, self.client, store)

    def word(self, status: str) -> str | None:
        return vocabulary(self.sheet).to_external(status)

    def _row(self, key: str) -> tuple[int, list[str]]:
        rows = self.fake.values(STATUS_SHEET, "Leads")
        for number, row in enumerate(rows, start=1):
            if len(row) > 2 and row[2] == key:
                return number, row
        raise KeyError(f"no row with key {key}")

    def set_there(self, external_id: str, status: str) -> None:
        word = self.word(status)
        assert word is not None, f"the sheet has no word for {status}"
        number, _ = self._row(external_id)
        self.fake.edit(STATUS_SHEET, "Leads", f"D{number}", word)

    def shown(self, external_id: str) -> str | None:
        _, row = self._row(external_id)
        return row[3] if len(row) > 3 and row[3] else None

    def throttle(self) -> Callable[[], int] | None:
        before = self.fake.calls["error 429"]
        self.fake.fail_next("any", 429, times=1000)
        return lambda: self.fake.calls["error 429"] - before

    def lift(self) -> None:
        self.fake.clear_faults()

    def close(self) -> None:
        self.fake.stop()
