"""Status engine benchmark: changes/s through `observe` and its fan-out (issue 12).

    python benchmarks/engine.py --store sqlite --changes 10000
    python benchmarks/engine.py --store postgres --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/lt_engine

A fresh store with `--contacts` contacts (imported through the pipeline) linked to
records of a two-way system "crm", then `--changes` status changes seen in crm, each by
a person and each a real change (so every one is decided, recorded in the history with
its rule, and fans out: one outbox row for the other connected system, "sheet"),
observed `--batch` at a time, one transaction per batch as a webhook drain commits
them. The figure is changes / wall time of the observe transactions. Then the sheet's
rows are delivered to a no-op destination (the outbox's own cost, as in
benchmarks/outbox.py), and everything is checked: one accepted history row and one
delivered outbox row per change. The PostgreSQL schema at --pg-url is dropped and
recreated: point it at a database of your own.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from sqlalchemy import func, select, text

from benchmarks.pgdb import empty_schema
from connector.config import SyncConfig
from connector.model import Lead
from connector.pipeline import Pipeline
from connector.ports import Delivered, DeliveryResult, OutboxRow, StatusObservation
from connector.store import open_store
from connector.store.tables import outbox, status_history
from connector.sync import fanout, links, status
from connector.sync.outbox import deliver_batch
from connector.sync.vocabulary import Vocabulary

CRM = Vocabulary(
    statuses={
        "NEW": "New",
        "IN_PROGRESS": "Reach",
        "CONNECTED": "Qualified",
        "UNQUALIFIED": "Disqualified",
        "OPEN_DEAL": "Negotiating",
        "CUSTOMER": "Won",
        "LOST": "Lost",
    }
)


class NoOp:
    name = "sheet"

    def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
        return [Delivered() for _ in rows]


def run(url: str, people: int, changes: int, batch: int) -> dict[str, float]:
    if url.startswith("postgresql"):
        empty_schema(url)
    store = open_store(url, upgrade=True)
    leads = [
        Lead(
            source="forms",
            ref=str(i),
            fields={"email": f"p{i}@example.com", "first_name": f"P{i}"},
            raw={"i": i},
            source_id=str(i),
        )
        for i in range(people)
    ]
    Pipeline(store, workers=0).ingest("forms", leads)
    with store.engine.begin() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM contacts ORDER BY id"))]
        for i, contact in enumerate(ids):
            links.link(conn, "crm", f"c{i}", contact)
    fanout.install(("crm", "sheet"), SyncConfig(), store.engine)
    # Each change moves its record to another value than its last one: all decided.
    rng = random.Random(5)
    values = sorted(CRM.statuses)
    last: dict[int, str] = {}
    base = datetime.now(UTC) + timedelta(days=1)
    observations = []
    for j in range(changes):
        who = rng.randrange(people)
        value = rng.choice([v for v in values if v != last.get(who, "NEW")])
        last[who] = value
        observations.append(
            StatusObservation("crm", f"c{who}", value, base + timedelta(milliseconds=j), True)
        )
    start = time.perf_counter()
    for i in range(0, changes, batch):
        with store.engine.begin() as conn:
            status.observe(conn, observations[i : i + batch], CRM, datetime.now(UTC))
    decided = time.perf_counter() - start
    start = time.perf_counter()
    target = NoOp()
    while deliver_batch(store, target)[0]:
        pass
    drained = time.perf_counter() - start
    with store.engine.connect() as conn:
        accepted = conn.execute(
            select(func.count())
            .select_from(status_history)
            .where(status_history.c.origin == "crm", status_history.c.accepted)
        ).scalar_one()
        delivered = conn.execute(
            select(func.count())
            .select_from(outbox)
            .where(
                outbox.c.destination == "sheet",
                outbox.c.kind == "status",
                outbox.c.delivered_at.is_not(None),
            )
        ).scalar_one()
    fanout.uninstall(store.engine)
    store.close()
    assert accepted == changes, (accepted, changes)
    assert delivered == changes, (delivered, changes)
    return {"observe_per_s": changes / decided, "deliver_per_s": changes / drained}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--contacts", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    if args.store == "postgres":
        if not args.pg_url:
            parser.error("--pg-url is required for --store postgres")
        url = args.pg_url
    else:
        url = f"sqlite:///{tempfile.mkdtemp()}/engine.db"
    found = run(url, args.contacts, args.changes, args.batch)
    print(
        f"{args.store}: {args.changes} changes over {args.contacts} contacts, batches of "
        f"{args.batch}: observe+fan-out {found['observe_per_s']:,.0f} changes/s; "
        f"delivery to a no-op {found['deliver_per_s']:,.0f} rows/s"
    )


if __name__ == "__main__":
    main()
