"""A process that decides scripted observations and delivers their effects, for the
kill -9 test: `python -m tests.sync.engine_worker STORE_URL LOG BASE N SEED`.

It observes a deterministic script of N status changes seen in "crm" (see `script`),
five at a time, committing its position (a cursor) in the transaction of the
decisions, and delivers the outbox rows for "sheet" to a receiver that appends
"key contact status" to LOG. With ENGINE_KILL_P it kills itself (SIGKILL) with that
probability right after a decision commits and before anything is delivered. Exits 0
when the script is done and nothing is pending."""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from connector.config import OutboxConfig, SyncConfig
from connector.ports import Delivered, DeliveryResult, OutboxRow, StatusObservation
from connector.store import open_store
from connector.store.ingest import load_cursor, save_cursor
from connector.sync import fanout, outbox, status
from tests.sync.helpers import CRM

SYSTEMS = ("crm", "sheet")
PEOPLE = 8


def script(base: datetime, n: int, seed: int) -> list[StatusObservation]:
    """N changes in crm to PEOPLE records c0..c7, one second apart, people and
    automation mixed (so some are refused), reproducible from `seed`."""
    rng = random.Random(seed)
    values = sorted(CRM.statuses)
    return [
        StatusObservation(
            "crm",
            f"c{rng.randrange(PEOPLE)}",
            rng.choice(values),
            base + timedelta(seconds=j),
            rng.random() < 0.6,
            "u-1",
        )
        for j in range(n)
    ]


class Receiver:
    """The sheet: appends each delivered status write (at least once)."""

    name = "sheet"

    def __init__(self, log: str) -> None:
        self.log = log

    def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            for row in rows:
                os.write(fd, f"{row.key} {row.contact_id} {row.payload['status']}\n".encode())
        finally:
            os.close(fd)
        return [Delivered() for _ in rows]


def main(url: str, log: str, base: str, n: int, seed: int) -> int:
    fanout.install(SYSTEMS, SyncConfig())
    store = open_store(url)
    steps = script(datetime.fromisoformat(base), n, seed)
    settings = OutboxConfig(lease_seconds=0.5, batch=10)
    receiver = Receiver(log)
    kill_p = float(os.environ.get("ENGINE_KILL_P", "0"))
    rng = random.Random()
    while True:
        # The script's times lie ahead of the clock: every change is newer than the
        # contacts' import, and the rows are due at once.
        now = datetime.now(UTC)
        with store.engine.begin() as conn:
            done = int(load_cursor(conn, "crm", "script") or 0)
            batch = steps[done : done + 5]
            if batch:
                status.observe(conn, batch, CRM, now)
                save_cursor(conn, "crm", "script", done + len(batch), now)
        if batch and rng.random() < kill_p:
            os.kill(os.getpid(), signal.SIGKILL)  # decided and committed; not delivered
        claimed, _ = outbox.deliver_batch(store, receiver, settings, f"w:{os.getpid()}")
        if not batch and not claimed:
            if not outbox.depth(store).get("sheet", {}).get("pending"):
                return 0
            time.sleep(0.05)  # a killed worker's lease runs out


if __name__ == "__main__":
    url, log, base, n, seed = sys.argv[1:6]
    sys.exit(main(url, log, base, int(n), int(seed)))
