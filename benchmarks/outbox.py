"""Outbox benchmark: rows/s claimed, delivered (to a no-op destination) and recorded.

    python benchmarks/outbox.py --store sqlite --rows 10000 --workers 1 3
    python benchmarks/outbox.py --store postgres --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/lt_outbox

For each store and each worker count: a fresh store with `--rows` pending rows spread
over `--contacts` contacts (random order, so the per-contact order check has work to
do), then that many worker processes (as replicas are) start together and run
`outbox.deliver_batch` until nothing is pending. The figure is rows / wall time from
the start signal to the last worker's end; the destination does nothing, so this is
the outbox's own cost (claim, order check, lease, record), the ceiling a real
destination's latency divides. Every row is checked delivered exactly once at the end.
The PostgreSQL schema at --pg-url is dropped and recreated: point it at a database of
your own.

    python benchmarks/outbox.py --store postgres --first-claim --rows 100000 --contacts 100000

`--first-claim`: instead, time the first claim (and the EXPLAIN ANALYZE of its query,
with --explain) right after the rows are written, before the table has statistics
(autovacuum is off or has not come round yet); with `--stale-stats` the table is
ANALYZEd while still empty first, so the planner believes it tiny.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

from sqlalchemy import func, insert, select

from benchmarks.pgdb import empty_schema
from connector.config import OutboxConfig
from connector.ports import Delivered, DeliveryResult, OutboxRow
from connector.store import open_store
from connector.store.tables import contacts
from connector.store.tables import outbox as outbox_table
from connector.sync import outbox


class NoOp:
    name = "noop"

    def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
        return [Delivered() for _ in rows]


def prepare(url: str, rows: int, people: int, analyze: bool = True, stale: bool = False) -> None:
    if url.startswith("postgresql"):
        empty_schema(url)
    store = open_store(url, upgrade=True)
    if stale and url.startswith("postgresql"):
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE outbox")  # statistics of an empty table
    now = datetime.now(UTC)
    rng = random.Random(1)
    with store.engine.begin() as conn:
        ids = [
            r[0]
            for r in conn.execute(
                insert(contacts).returning(contacts.c.id),
                [{"status": 0, "custom": {}, "created_at": now, "updated_at": now}] * people,
            )
        ]
        for start in range(0, rows, 1000):
            for i in range(start, min(rows, start + 1000)):
                outbox.enqueue(conn, "noop", "bench", f"e{i}", rng.choice(ids), {"n": i})
    if url.startswith("postgresql") and analyze:
        # What autovacuum does within about a minute of a table growing this much.
        # Without statistics PostgreSQL takes the outbox for a tiny table and may check
        # the per-contact order through the (destination, key) index, scanning every
        # pending row of the destination per candidate (~40x slower claims).
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE outbox")
    store.close()


def worker(url: str, batch: int, go: Any, done: Any) -> None:
    store = open_store(url)
    settings = OutboxConfig(batch=batch)
    target = NoOp()
    go.wait()
    delivered = claims = empty = 0
    while True:
        claimed, stats = outbox.deliver_batch(store, target, settings, "bench")
        delivered += stats.delivered
        claims += 1
        if not claimed:
            empty += 1
            if not outbox.depth(store).get("noop", {}).get("pending"):
                break
            time.sleep(0.001)  # another worker holds the rest
    done.put((delivered, claims, empty))
    store.close()


def run(url: str, rows: int, people: int, workers: int, batch: int, analyze: bool) -> float:
    prepare(url, rows, people, analyze)
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    done = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(url, batch, go, done)) for _ in range(workers)]
    for p in procs:
        p.start()
    time.sleep(3.0)  # let every worker import and connect before the clock starts
    started = time.perf_counter()
    go.set()
    results = [done.get(timeout=600) for _ in procs]
    counts = [r[0] for r in results]
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()
    store = open_store(url)
    with store.engine.connect() as conn:
        left = conn.execute(
            select(func.count()).where(outbox_table.c.delivered_at.is_(None))
        ).scalar_one()
    store.close()
    assert left == 0 and sum(counts) == rows, (left, counts)
    claims = sum(r[1] for r in results)
    empty = sum(r[2] for r in results)
    print(f"  ({claims} claims, {empty} found nothing due)", flush=True)
    return rows / elapsed


def first_claim(url: str, rows: int, people: int, batch: int, stale: bool, explain: bool) -> None:
    """The first claim on a table of `rows` pending rows that has no statistics."""
    prepare(url, rows, people, analyze=False, stale=stale)
    store = open_store(url)
    settings = OutboxConfig(batch=batch)
    if explain and store.dialect == "postgresql":
        from sqlalchemy import update
        from sqlalchemy.dialects import postgresql

        candidates = outbox._claimable("noop", datetime.now(UTC), batch, True, False)
        query = update(outbox_table).where(outbox_table.c.id.in_(candidates))
        query = query.values(attempts=outbox_table.c.attempts + 1)
        sql = str(
            query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
        )
        with store.engine.connect() as conn:
            for (line,) in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql):
                print("  " + line)
            conn.rollback()
    started = time.perf_counter()
    taken = outbox.claim(store, "noop", settings, "bench")
    elapsed = time.perf_counter() - started
    store.close()
    print(
        f"first claim of {len(taken.rows)} rows on a fresh {rows:,}-row outbox "
        f"({people:,} contacts, {'stale' if stale else 'no'} statistics): {elapsed:.3f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], nargs="+",
                        default=["sqlite", "postgres"])  # fmt: skip
    parser.add_argument(
        "--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/lt_outbox"
    )
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--batch", type=int, default=OutboxConfig().batch)
    parser.add_argument("--no-analyze", action="store_true",
                        help="PostgreSQL: claim before the table has statistics")  # fmt: skip
    parser.add_argument("--first-claim", action="store_true",
                        help="time the first claim on a fresh table instead")  # fmt: skip
    parser.add_argument("--stale-stats", action="store_true",
                        help="--first-claim: ANALYZE the table while empty first")  # fmt: skip
    parser.add_argument("--explain", action="store_true",
                        help="--first-claim: EXPLAIN ANALYZE the claim (PostgreSQL)")  # fmt: skip
    args = parser.parse_args()
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f}", flush=True)
    if args.first_claim:
        for store in args.store:
            url = (
                f"sqlite:///{tempfile.mkdtemp(prefix='outbox-bench-')}/store.db"
                if store == "sqlite"
                else args.pg_url
            )
            first_claim(url, args.rows, args.contacts, args.batch, args.stale_stats, args.explain)
        print(f"load average (1 min) at end: {os.getloadavg()[0]:.2f}", flush=True)
        return
    for store in args.store:
        for n in args.workers:
            if store == "sqlite":
                url = f"sqlite:///{tempfile.mkdtemp(prefix='outbox-bench-')}/store.db"
            else:
                url = args.pg_url
            rate = run(url, args.rows, args.contacts, n, args.batch, not args.no_analyze)
            print(
                f"{store:8} workers={n} rows={args.rows} contacts={args.contacts} "
                f"batch={args.batch}: {rate:,.0f} rows/s (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
