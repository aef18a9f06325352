"""Conversion Leads benchmark: N stage events written and sent in the minimum requests.

    python benchmarks/conversions.py --n 100000
    python benchmarks/conversions.py --n 100000 --baseline   # the ingest alone, to compare
    python benchmarks/conversions.py --n 100000 --url postgresql+psycopg://postgres@127.0.0.1:5432/lt_capi

A Graph emulator (adapters/facebook/fake/, over loopback HTTP) holds N Meta leads of
the last day and a dataset. The N leads are ingested into a fresh store with the
Conversion Leads subscriber installed, so each contact's creation writes its initial
lead stage to the outbox in the ingest's transaction (the stage changes of the figure;
a person's later moves write the same rows, one per history row). Then the outbox job
delivers them with the default outbox settings (the destination asks for 1,000 rows a
batch): the figure is the wall time and the requests against the minimum,
ceil(N / 1000). Every event is checked received once.

The PostgreSQL schema at --url is dropped and recreated: point it at a database of
your own.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).parents[1]))

from sqlalchemy import func, select, text

from adapters.facebook.config import FacebookConfig
from adapters.facebook.conversions_delivery import destinations
from adapters.facebook.fake import FakeGraph
from benchmarks.pgdb import empty_schema
from connector.config import OutboxConfig
from connector.model import Lead
from connector.pipeline import Pipeline
from connector.store import open_store
from connector.store.tables import outbox as outbox_table
from connector.sync import fanout, outbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--url", default=None, help="store URL (default: SQLite in a temp dir)")
    parser.add_argument(
        "--baseline", action="store_true", help="ingest only, without the subscriber (its cost)"
    )
    args = parser.parse_args()
    n = args.n

    fake = FakeGraph(seed=3)
    fake.start()
    page = fake.add_page("Shop", business_id="9001")
    form = fake.add_form(page.id, name="Form")
    dataset = fake.audiences.add_dataset("555000111")
    now = time.time()
    made = [
        (fake.add_lead(form, {"email": f"p{i}@example.com"}, created_time=now - 86_400 + i * 0.5,
                       notify=False), now - 86_400 + i * 0.5)
        for i in range(n)
    ]  # fmt: skip
    config = FacebookConfig.model_validate(
        {
            "app_secret": fake.app_secret,
            "system_user_token": fake.add_system_user_token("9001"),
            "graph_url": fake.base_url,
            "pages": [{"id": page.id, "access_token": page.token}],
            "conversions": {"dataset_id": "555000111", "stages": {"Qualified": "MQL"}},
        }
    )

    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{tmp}/store.db"
        if url.startswith("postgresql"):
            empty_schema(url)
        store = open_store(url, upgrade=True)
        if not args.baseline:
            fanout.connect_subscribers(SimpleNamespace(facebook=config), store.engine)
        records = [
            Lead(
                source="facebook",
                ref=f"lead {lead_id}",
                fields={"email": f"p{i}@example.com", "phone": f"+6012{i:07d}"},
                source_id=lead_id,
                occurred_at=datetime.fromtimestamp(created, UTC),
            )
            for i, (lead_id, created) in enumerate(made)
        ]
        started = time.perf_counter()
        Pipeline(store, workers=0).ingest("facebook", records)
        wrote = time.perf_counter() - started
        with store.engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(outbox_table)).scalar_one()
        if args.baseline:
            print(f"baseline: {n} leads ingested without the subscriber: {wrote:.1f} s")
            return

        if url.startswith("postgresql"):
            # As benchmarks/outbox.py does: without statistics on a table that just grew
            # by N rows, the planner's claim query ran for minutes (see BENCHMARKS.md);
            # autovacuum would analyze it within a minute or so in a live deployment.
            with store.engine.begin() as conn:
                conn.execute(text("ANALYZE outbox"))
        [target] = destinations(config)
        started = time.perf_counter()
        stats = outbox.deliver(store, [target], settings=OutboxConfig())
        sent = time.perf_counter() - started
        store.close()
    fake.stop()

    received = {str(e["user_data"]["lead_id"]) for e in dataset.events}
    assert len(dataset.events) == n and received == {m[0] for m in made}, "events lost"
    minimum = math.ceil(n / 1000)
    print(f"machine: {platform.machine()} {platform.processor() or ''} python "
          f"{platform.python_version()}, store {url.split(':')[0]}")  # fmt: skip
    print(f"write: {n} leads ingested, {rows} stage rows in the outbox: {wrote:.1f} s")
    print(
        f"send:  {stats.delivered} delivered, {stats.failed} failed in {sent:.1f} s "
        f"({n / sent:,.0f} events/s); requests {dataset.requests} (minimum {minimum})"
    )


if __name__ == "__main__":
    main()
