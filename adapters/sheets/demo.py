"""The Sheets part of `leadsync demo`: the Sheets emulator in-process with the sample
sales sheet (title row, header on row 2, phones typed as numbers, statuses in Malay,
Polish and Vietnamese), and a rep editing Status cells while the daemon runs."""

from __future__ import annotations

from typing import Any

from adapters.sheets.fake import SAMPLE_ID, TOKEN, FakeSheets, sample

# The words the sample sheet's reps use, as the admin maps them.
WORDS = {
    "Baru": "New",
    "Nowy": "New",
    "Đang liên hệ": "Reach",
    "Zakwalifikowany": "Qualified",
    "Layak": "Qualified",
    "Tidak layak": "Disqualified",
    "Won": "Won",
    "Lost": "Lost",
}

# (seconds into the demo, cell, word): Siti is qualified, Nguyễn is lost.
EDITS = [(3.0, "D3", "Layak"), (8.0, "D4", "Lost")]


class SheetsDemo:
    """Owns the emulator for the demo's lifetime."""

    title = "Google Sheets (local Sheets API emulator)"

    def __init__(self) -> None:
        self.fake = FakeSheets()
        self.fake.start()
        sample(self.fake)
        self.done = 0

    def section(self) -> tuple[str, dict[str, Any]]:
        return "sheets", {
            "token": TOKEN,
            "api_url": self.fake.base_url,
            "sheets": [
                {
                    "source": "sales-sheet",
                    "spreadsheet_id": SAMPLE_ID,
                    "worksheet": "Leads",
                    "header_row": 2,
                    "status_column": "Status",
                    "statuses": WORDS,
                    "region": "MY",
                    "write_back": {"error": "leadsync errors"},
                    "poll_every": 5,
                }
            ],
        }

    def start(self, server_url: str) -> None:
        """Nothing to subscribe: Sheets has no webhooks for cell edits; we poll."""

    def tick(self, elapsed: float) -> None:
        while self.done < len(EDITS) and elapsed >= EDITS[self.done][0]:
            _, where, word = EDITS[self.done]
            self.fake.edit(SAMPLE_ID, "Leads", where, word)
            self.done += 1

    def summary(self) -> list[str]:
        grid = self.fake.values(SAMPLE_ID, "Leads")
        header = grid[1] if len(grid) > 1 else []
        keyed = sum(
            1 for r in grid[2:] if "leadsync id" in header and len(r) > header.index("leadsync id")
        )
        flagged = 0
        if "leadsync errors" in header:
            at = header.index("leadsync errors")
            flagged = sum(1 for r in grid[2:] if len(r) > at and r[at])
        return [
            f"Sheets API requests answered by the emulator: {self.fake.calls['read']} reads, "
            f"{self.fake.calls['write']} writes",
            f"sheet rows given a leadsync id: {keyed}; rows whose error column tells the rep "
            f"what is wrong: {flagged}; Status cells a rep edited during the demo: {self.done}",
        ]

    def stop(self) -> None:
        self.fake.stop()
