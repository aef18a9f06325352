"""Segments benchmark (issue 13): a view over 1,000,000 contacts, and an export.

    .venv/bin/python benchmarks/segments.py --n 1000000 --stores sqlite,postgres
    .venv/bin/python benchmarks/segments.py --n 1000000 --stores sqlite --explain

Contacts are bulk-loaded straight into the store's tables (executemany on SQLite,
COPY on PostgreSQL; not the ingest pipeline, which BENCHMARKS.md measures apart), each
with one lead. Then, warm, best and median of 5 runs:

* the view `status >= Qualified and source = facebook and score >= 70`, sorted
  `-score`: its first page (50 rows) and its count;
* an export of every contact to CSV (/dev/null) in a child process that reports its
  RSS at every 100,000 rows: rows/s, and RSS from 100k to 1M (flat = streaming).

PostgreSQL: the helper's own database (LEADSYNC_BENCH_PG_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/lt_segments), emptied before the load.
--explain prints each backend's query plan for the page and the count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402

from connector.segments import Segment, count, page  # noqa: E402
from connector.segments.query import _statement, check_sort  # noqa: E402
from connector.segments.sql import Compiler  # noqa: E402
from connector.store import Store, open_store  # noqa: E402
from connector.store.tables import contacts, metadata  # noqa: E402

VIEW = "status >= Qualified and source = facebook and score >= 70"
SORT = "-score"
PG_URL = os.environ.get(
    "LEADSYNC_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/lt_segments"
)
STATUSES = [10, 10, 10, 20, 20, 25, 30, 30, 35, 60, 70]
SOURCES = ["facebook", "facebook", "csv", "hubspot"]
OWNERS = ["kevin", "liz", "ann", "tom", None]
CITIES = ["Warszawa", "Kraków", "Kuala Lumpur", "Hà Nội", "Austin", None]
NOW = datetime.now(UTC).replace(microsecond=0)
BATCH = 50_000


def _rows(n: int, seed: int = 13) -> Any:
    rng = random.Random(seed)
    for i in range(1, n + 1):
        created = NOW - timedelta(minutes=rng.randrange(0, 60 * 24 * 400))
        score = None if rng.random() < 0.1 else round(rng.random() * 100, 1)
        custom = {"budget": rng.randrange(0, 5000)} if rng.random() < 0.5 else {}
        yield {
            "id": i,
            "status": rng.choice(STATUSES),
            "status_changed_at": created,
            "email": f"person{i}@example.com",
            "phone": f"+4850{i:07d}" if rng.random() < 0.7 else None,
            "first_name": f"Name{i % 5000}",
            "last_name": f"Surname{i % 7919}",
            "city": rng.choice(CITIES),
            "owner": rng.choice(OWNERS),
            "score": score,
            "custom": json.dumps(custom),
            "created_at": created,
            "updated_at": created,
            "source": rng.choice(SOURCES),
        }


CONTACT_COLUMNS = ["id", "status", "status_changed_at", "email", "phone", "first_name",
                   "last_name", "city", "owner", "score", "custom", "created_at",
                   "updated_at"]  # fmt: skip
LEAD_COLUMNS = ["id", "source", "source_id", "contact_id", "payload_hash", "ref", "raw",
                "context", "received_at"]  # fmt: skip


def _lead(row: dict[str, Any]) -> list[Any]:
    i = row["id"]
    context = json.dumps({"form_id": str(1000 + i % 7), "platform": "fb"})
    return [i, row["source"], f"s{i}", i, "h", f"row {i}", "{}", context, row["created_at"]]


def _sqlite_time(value: datetime) -> str:
    # The format SQLAlchemy's SQLite DateTime writes (naive UTC), so text comparisons
    # against bound moments order correctly.
    return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def load(store: Store, n: int) -> float:
    """Empty the store and bulk-load n contacts with a lead each; seconds taken."""
    started = time.perf_counter()
    names = ", ".join(t.name for t in reversed(metadata.sorted_tables) if t.name != "statuses")
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        if store.dialect == "postgresql":
            cur.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
            _copy(cur, n)
        else:
            for name in names.split(", "):
                cur.execute(f"DELETE FROM {name}")
            _executemany(cur, n)
        raw.commit()
        if store.dialect == "postgresql":
            cur.execute("SELECT setval('contacts_id_seq', %s)", (n,))
            cur.execute("SELECT setval('leads_id_seq', %s)", (n,))
            raw.commit()
            raw.driver_connection.autocommit = True  # type: ignore[union-attr]
            cur.execute("VACUUM ANALYZE contacts")
            cur.execute("VACUUM ANALYZE leads")
        else:
            cur.execute("ANALYZE")
            raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


def _executemany(cur: Any, n: int) -> None:
    cur.execute("BEGIN")
    contacts_sql = (
        f"INSERT INTO contacts ({', '.join(CONTACT_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(CONTACT_COLUMNS))})"
    )
    leads_sql = (
        f"INSERT INTO leads ({', '.join(LEAD_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(LEAD_COLUMNS))})"
    )
    batch_c: list[list[Any]] = []
    batch_l: list[list[Any]] = []
    for row in _rows(n):
        values = [row[c] for c in CONTACT_COLUMNS]
        for at in (2, 11, 12):
            values[at] = _sqlite_time(values[at])
        batch_c.append(values)
        lead = _lead(row)
        lead[-1] = _sqlite_time(lead[-1])
        batch_l.append(lead)
        if len(batch_c) >= BATCH:
            cur.executemany(contacts_sql, batch_c)
            cur.executemany(leads_sql, batch_l)
            batch_c, batch_l = [], []
    if batch_c:
        cur.executemany(contacts_sql, batch_c)
        cur.executemany(leads_sql, batch_l)


def _copy(cur: Any, n: int) -> None:
    with cur.copy(f"COPY contacts ({', '.join(CONTACT_COLUMNS)}) FROM STDIN") as copy:
        for row in _rows(n):
            copy.write_row([row[c] for c in CONTACT_COLUMNS])
    with cur.copy(f"COPY leads ({', '.join(LEAD_COLUMNS)}) FROM STDIN") as copy:
        for row in _rows(n):
            copy.write_row(_lead(row))


def _timed(fn: Any, runs: int = 5) -> tuple[float, float, Any]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return min(times), statistics.median(times), result


def explain(store: Store) -> None:
    segment = Segment.of(VIEW, store.catalogue)
    compiler = Compiler(store.dialect, store.catalogue)
    page_stmt = _statement(store, segment, check_sort(SORT), ["id", "name", "status", "score"])
    page_stmt = page_stmt.limit(50)
    count_stmt = select(func.count()).select_from(contacts).where(segment.where(compiler))
    prefix = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN (ANALYZE, COSTS OFF) "
    with store.reader.connect() as conn:
        for label, stmt in (("first page", page_stmt), ("count", count_stmt)):
            sql = str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))
            print(f"--- {store.dialect} {label}:\n{sql}\n")
            for row in conn.execute(text(prefix + sql)):
                print("   ", " | ".join(str(c) for c in row))
            print()


def measure(store: Store) -> dict[str, Any]:
    segment = Segment.of(VIEW, store.catalogue)
    order = check_sort(SORT)
    page_best, page_median, rows = _timed(lambda: page(store, segment, order, limit=50))
    count_best, count_median, found = _timed(lambda: count(store, segment))
    return {
        "page_ms": (round(page_best, 1), round(page_median, 1)),
        "count_ms": (round(count_best, 1), round(count_median, 1)),
        "matching": found,
        "page_rows": len(rows),
    }


def export_child(url: str) -> None:
    """Stream every contact to CSV on /dev/null; print rows, RSS and seconds per 100k."""
    import psutil

    from connector.segments import export
    from connector.segments.query import DEFAULT_COLUMNS, values

    store = open_store(url, upgrade=False)
    me = psutil.Process()
    started = time.perf_counter()
    columns = list(DEFAULT_COLUMNS)

    def rows() -> Any:
        for n, row in enumerate(values(store, Segment.of(None, store.catalogue), [], columns), 1):
            if n % 100_000 == 0:
                rss = me.memory_info().rss // (1 << 20)
                print(json.dumps({"rows": n, "rss_mb": rss, "s": time.perf_counter() - started}))
                sys.stdout.flush()
            yield row

    with open(os.devnull, "w") as sink:
        written = export.write(rows(), columns, "csv", sink)
    print(json.dumps({"done": written, "s": time.perf_counter() - started}))


def run_export(url: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--export-child", url],
        capture_output=True,
        text=True,
        check=True,
    )
    marks = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    done = marks[-1]
    steps = [m for m in marks if "rows" in m]
    return {
        "rows": done["done"],
        "rows_per_s": round(done["done"] / done["s"]),
        "rss_mb_at": {
            m["rows"]: m["rss_mb"] for m in steps if m["rows"] in (100_000, 500_000, 1_000_000)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--no-load", action="store_true", help="Reuse the loaded stores.")
    parser.add_argument("--export-child")
    args = parser.parse_args()
    if args.export_child:
        export_child(args.export_child)
        return
    machine = f"{platform.machine()}, {os.cpu_count()} cpus"
    print(f"# {machine}, python {platform.python_version()}")
    scratch = Path(tempfile.gettempdir()) / "leadsync-bench-segments.db"
    for name in args.stores.split(","):
        url = f"sqlite:///{scratch}" if name == "sqlite" else PG_URL
        store = open_store(url, upgrade=True)
        if not args.no_load:
            print(f"{name}: loaded {args.n} contacts in {load(store, args.n):.1f}s")
        if args.explain:
            explain(store)
        result = measure(store)
        result["export"] = run_export(url)
        print(f"{name}: {json.dumps(result)}")
        store.close()


if __name__ == "__main__":
    main()
