"""The page-view writer's CPU for one 5-view request alone in its transaction.

    python benchmarks/webtag_txcost.py

At a low request rate the collector's group commit gives each request a transaction
of its own, so every per-transaction cost is paid by one request (BENCHMARKS.md, web
tag). This times `visitors.record_new` for 3 x 3,000 such requests on a fresh SQLite
file, in process CPU time (what other processes on the box move least).
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.statuses import Catalogue
from connector.store import open_store, visitors


def _request(i: int, events: int = 5) -> list[visitors.PageView]:
    now = datetime.now(UTC)
    return [
        visitors.PageView(
            site="www",
            event_id=f"e{i}-{k}",
            visitor=f"v{i % 5000}",
            occurred_at=now,
            url=f"https://www.example.com/page/{k}?utm_source=bench",
            referrer="https://www.example.com/",
            title="A page",
            utm={"utm_source": "bench"},
            fbc=f"fb.1.1.IwAR{i}",
        )
        for k in range(events)
    ]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/store.db", Catalogue.default(), upgrade=True)
        for round_ in range(3):
            requests = [_request(round_ * 3000 + j) for j in range(3000)]
            start = time.process_time()
            for views in requests:
                with store.engine.begin() as conn:
                    visitors.record_new(conn, views, datetime.now(UTC))
            per = (time.process_time() - start) / len(requests) * 1000
            print(f"{per:.3f} ms CPU per request (one 5-view request a transaction)")
        store.close()


if __name__ == "__main__":
    main()
