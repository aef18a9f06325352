"""Sheets benchmark: a 50,000-row sales sheet, read through gspread over loopback HTTP
from the Sheets emulator into a store.

    python benchmarks/sheets.py --rows 50000 --stores sqlite,postgres \\
        --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/lt_sheets_bench

For each store: the first poll (every row ingested, every row's key written back, every
status word handed to the engine), then a poll with nothing changed, then one after a
rep edited 1% of the rows (half of them their Status, half another cell). Per poll:
seconds, requests (reads, writes), bytes the API answered. Targets (issue 15): one read
when nothing changed, at most one read and one write with 1% edited, poll < 3 s. The
emulator runs in this process, on a thread: its JSON work is counted in the poll time,
as a real API's latency would be. The PostgreSQL schema at --pg-url is dropped and
recreated: point it at a database of your own.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))


from adapters.sheets import poll
from adapters.sheets.client import SheetsClient
from adapters.sheets.config import SheetsConfig
from adapters.sheets.fake import TOKEN, FakeSheets
from adapters.sheets.source import SheetSource
from benchmarks.pgdb import empty_schema
from connector.pipeline import Pipeline
from connector.statuses import Catalogue
from connector.store import open_store

SHEET = "1BenchSheet"
WORDS = ["Baru", "Dihubungi", "Layak", "Tidak layak", "Menang", "Kalah"]
STATUSES = {
    "Baru": "New",
    "Dihubungi": "Reach",
    "Layak": "Qualified",
    "Tidak layak": "Disqualified",
    "Menang": "Won",
    "Kalah": "Lost",
}


def world(rows: int, seed: int = 7) -> tuple[FakeSheets, list[list[str]]]:
    rng = random.Random(seed)
    fake = FakeSheets(per_user=10_000, per_project=10_000)
    fake.add_spreadsheet(SHEET, "Bench", ("Leads",))
    grid = [["Name", "Phone", "Email", "Company", "Status", "Notes"]]
    for i in range(rows):
        grid.append(
            [
                f"Person {i}",
                f"+6012{i:07d}",  # typed by a rep: stored as a number, + lost
                f"person{i}@example.my",
                f"Syarikat {i % 997}",
                rng.choice(WORDS),
                "follow up" if i % 3 == 0 else "",
            ]
        )
    fake.type_rows(SHEET, "Leads", grid)
    return fake, grid


def measure(fake: FakeSheets, run: Any) -> dict[str, Any]:
    reads, writes, sent = fake.calls["read"], fake.calls["write"], fake.bytes_sent
    started = time.perf_counter()
    counts = run()
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "reads": fake.calls["read"] - reads,
        "writes": fake.calls["write"] - writes,
        "bytes": fake.bytes_sent - sent,
        **{k: counts.get(k) for k in ("rows", "created", "statuses_changed", "cells_written")},
    }


def bench(url: str, rows: int) -> list[dict[str, Any]]:
    if url.startswith("postgresql"):
        empty_schema(url)
    store = open_store(url, Catalogue.default(), upgrade=True)
    fake, _ = world(rows)
    fake.start()
    try:
        config = SheetsConfig.model_validate(
            {
                "token": TOKEN,
                "api_url": fake.base_url,
                "sheets": [
                    {
                        "source": "bench-sheet",
                        "spreadsheet_id": SHEET,
                        "worksheet": "Leads",
                        "status_column": "Status",
                        "statuses": STATUSES,
                        "region": "MY",
                    }
                ],
            }
        )
        client = SheetsClient(config)

        def once() -> dict[str, int]:
            source = SheetSource(config.sheets[0], client, store.catalogue)
            return poll(source, Pipeline(store, default_region="MY"))

        results = [{"poll": "first", **measure(fake, once)}]
        results.append({"poll": "no change", **measure(fake, once)})
        rng = random.Random(3)
        for row in rng.sample(range(2, rows + 2), rows // 100):
            if row % 2:
                fake.edit(SHEET, "Leads", f"E{row}", rng.choice(WORDS))
            else:
                fake.edit(SHEET, "Leads", f"F{row}", f"called {row}")
        results.append({"poll": "1% edited", **measure(fake, once)})
        return results
    finally:
        fake.stop()
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--stores", default="sqlite")
    parser.add_argument(
        "--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/lt_sheets_bench"
    )
    args = parser.parse_args()
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    for name in args.stores.split(","):
        url = args.pg_url if name == "postgres" else f"sqlite:///{tempfile.mkdtemp()}/bench.db"
        for line in bench(url, args.rows):
            print(name, line, flush=True)


if __name__ == "__main__":
    main()
