"""The Sheets adapter's case for the contract suite (tests/contract/): the Sheets
emulator with a worksheet of six leads, a wrong token as the broken source, and
Google's per-minute quota answered with 429s as the throttle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from adapters.sheets.client import SheetsClient
from adapters.sheets.config import SheetsConfig
from adapters.sheets.fake import TOKEN, FakeSheets
from adapters.sheets.source import SheetSource
from connector.sdk import LeadSource, Store

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
