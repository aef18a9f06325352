"""Ingest benchmark: N synthetic messy leads through the pipeline, against dlt.

    python benchmarks/ingest.py --n 100000 --n 1000000 --targets sqlite,postgres
    python benchmarks/ingest.py --n 200000 --targets sqlite,postgres,dlt
    python benchmarks/ingest.py --n 100000 --targets sqlite --profile   # where time goes

Each target runs in its own process; this parent samples the peak RSS of that process
and all its children (our normalising workers, dlt's own) every 50 ms with psutil, so
memory is measured the same way for both. Records are generated, not read from a
file, and never held in memory: record i is a pure function of (seed, i), and a
duplicate of an earlier person regenerates it from its index.

The data: people in MY, PL, VN and US with diacritics in names; ~20% of records are
the same person again written differently (case, spaces, national vs international
phone, email missing or phone missing); ~3% are invalid (bad email, impossible phone,
unknown country) and must end in quarantine. The summary line of each run shows that
the counts agree between runs.

PostgreSQL: database `leadsync_bench` on 127.0.0.1:5432 (created if missing,
emptied before each run). Needs the `bench` extra: `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pgdb import empty_schema  # noqa: E402

# LEADSYNC_BENCH_PG_URL points the benchmark at another database (on a shared
# machine: your own); it is emptied before each run like the default one.
PG_BENCH = os.environ.get(
    "LEADSYNC_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/leadsync_bench"
)
BATCH = 5000

FIRST = {
    "MY": ["Siti", "Ahmad", "Nurul", "Hafiz", "Wei Ling", "Aisyah", "Muhammad", "Farah"],
    "PL": ["Łukasz", "Agnieszka", "Paweł", "Zofia", "Małgorzata", "Kamil", "Żaneta", "Jędrzej"],
    "VN": ["Nguyễn Thị", "Trần Văn", "Lê", "Phạm", "Hoàng", "Vũ Thị", "Đặng", "Bùi"],
    "US": ["John", "Mary", "Robert", "Emily", "Michael", "Sarah", "David", "Jessica"],
}
LAST = {
    "MY": ["binti Tarudin", "bin Ismail", "Tan", "Rahman", "Lim", "Abdullah"],
    "PL": ["Żółć", "Wiśniewska", "Kowalczyk", "Nowak", "Kamińska", "Lewandowski"],
    "VN": ["Minh Khai", "Bình", "Thu Hà", "Hoa", "Phương", "Quang Hải"],
    "US": ["Smith", "Johnson", "Brown", "Davis", "Miller", "Wilson"],
}
CITY = {
    "MY": ["Kuala Lumpur", "Petaling Jaya", "George Town", "Johor Bahru"],
    "PL": ["Kraków", "Gdańsk", "Wrocław", "Łódź"],
    "VN": ["Hà Nội", "Đà Nẵng", "Huế", "Thành phố Hồ Chí Minh"],
    "US": ["San Francisco", "New York", "Austin", "Chicago"],
}
COUNTRY = {
    "MY": ["Malaysia", "MY"],
    "PL": ["Polska", "PL"],
    "VN": ["Việt Nam", "VN"],
    "US": ["USA", "US"],
}
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "wp.pl", "onet.pl", "fpt.vn", "example.org"]
STATUS = ["New", "New", "New", "Reach", "Qualified", "Disqualified", "Negotiating", "Won", "Lost"]
REGIONS = ["MY", "PL", "VN", "US"]
US_AREAS = ["212", "305", "312", "415", "503", "617", "646", "702", "713", "818"]


def _national(region: str, i: int) -> tuple[str, str]:
    """(national format, international format) of person i's unique valid number."""
    s = f"{i % 10_000_000:07d}"
    if region == "MY":
        return f"012-{s[:3]} {s[3:]}", f"+60 12-{s[:3]} {s[3:]}"
    if region == "PL":
        return f"60{s[0]} {s[1:4]} {s[4:]}", f"+48 60{s[0]}-{s[1:4]}-{s[4:]}"
    if region == "VN":
        return f"091{s[0]} {s[1:4]} {s[4:]}", f"+84 91{s[0]} {s[1:4]} {s[4:]}"
    area = US_AREAS[int(s[0])]
    return f"({area}) 2{s[1:3]}-{s[3:]}", f"+1 {area} 2{s[1:3]} {s[3:]}"


_MASK = (1 << 64) - 1


def _mix(seed: int, i: int, salt: int) -> int:
    """splitmix64 of (seed, i, salt): a cheap, stateless random number per record, so
    generating costs a few µs and a repeat of record j needs nothing but j."""
    x = (seed * 0x9E3779B97F4A7C15 + i * 0xBF58476D1CE4E5B9 + salt * 0x94D049BB133111EB) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def person(seed: int, i: int) -> dict[str, str]:
    x = _mix(seed, i, 1)
    region = REGIONS[i % 4]
    first = FIRST[region][x % 8]
    last = LAST[region][(x >> 3) % 6]
    national, _ = _national(region, i)
    user = f"{first}.{last}".replace(" ", "").lower()
    return {
        "first_name": first,
        "last_name": last,
        "email": f"{user}.{i}@{DOMAINS[(x >> 8) % len(DOMAINS)]}",
        "phone": national,
        "city": CITY[region][(x >> 16) % 4],
        "country": COUNTRY[region][(x >> 20) % 2],
        "status": STATUS[(x >> 24) % len(STATUS)],
    }


def record(seed: int, n: int) -> dict[str, str]:
    """Record n of the stream: a new person, a messy repeat (20%) or invalid (3%)."""
    x = _mix(seed, n, 2)
    roll = (x & 0xFFFF) / 0x10000
    if roll < 0.2 and n > 10:
        j = (x >> 16) % n
        rec = person(seed, j)
        region = REGIONS[j % 4]
        style = (x >> 48) % 4
        if style == 0:
            rec["email"] = f"  {rec['email'].upper()} "
        elif style == 1:
            rec["phone"] = _national(region, j)[1]
            rec["email"] = ""
        elif style == 2:
            rec["phone"] = ""
            rec["first_name"] = rec["first_name"].upper()
        else:
            rec["phone"] = "00" + _national(region, j)[1][1:].replace(" ", "").replace("-", "")
        return rec
    rec = person(seed, n)
    if roll > 0.97:
        kind = (x >> 16) % 3
        if kind == 0:
            rec["email"] = rec["email"].replace("@", " at ")
            rec["phone"] = ""
        elif kind == 1:
            rec["phone"] = "12345"
        else:
            rec["country"] = "Atlantis"
    return rec


def records(seed: int, n: int) -> Iterator[dict[str, str]]:
    for k in range(n):
        yield record(seed, k)


# -- targets (each runs in a child process) ----------------------------------------


def run_leadsync(url: str, n: int, seed: int, workers: int | None) -> dict[str, Any]:
    from connector.model import Lead
    from connector.pipeline import Pipeline
    from connector.ports import Batch
    from connector.statuses import Catalogue
    from connector.store import open_store

    catalogue = Catalogue.default()
    # A mapping's value map turns a status word into an id once per word, not per row.
    status_ids = {word: catalogue.resolve(word).id for word in STATUS}
    store = open_store(url, upgrade=True)

    class Synthetic:
        name = "bench"

        def check(self) -> None:
            pass

        def streams(self) -> list[str]:
            return ["synthetic"]

        def context(self) -> dict[str, Any]:
            return {"kind": "bench"}

        def read(self, stream: str, cursor: Any) -> Iterator[Batch]:
            start = int(cursor or 0)
            batch: list[Lead] = []
            for k in range(start, n):
                raw = record(seed, k)
                fields = {f: v for f, v in raw.items() if f != "status" and v}
                batch.append(
                    Lead(
                        source="bench",
                        ref=f"record {k}",
                        fields=fields,
                        source_id=str(k),
                        status=status_ids[raw["status"]],
                        raw=raw,
                    )
                )
                if len(batch) == BATCH:
                    yield Batch(batch, k + 1)
                    batch = []
            if batch:
                yield Batch(batch, n)

    pipeline = Pipeline(store, workers=workers, batch_size=BATCH)
    started, cpu = time.perf_counter(), time.process_time()
    stats = pipeline.run(Synthetic())
    seconds = time.perf_counter() - started
    # The writer process's CPU (all its threads) while ingesting: on a shared machine
    # it moves much less with other people's load than the wall time does.
    writer_cpu = time.process_time() - cpu
    counts = store_counts(store)
    store.close()
    return {
        "seconds": seconds,
        "writer_cpu_us": round(writer_cpu / n * 1e6, 1),
        "rows": stats.rows,
        "created": stats.created,
        "merged": stats.merged,
        "quarantined": stats.quarantined,
        **counts,
    }


def store_counts(store: Any) -> dict[str, int]:
    from sqlalchemy import func, select

    from connector.store.tables import contacts

    with store.engine.connect() as conn:
        live = conn.scalar(
            select(func.count()).select_from(contacts).where(contacts.c.merged_into.is_(None))
        )
    return {"contacts": int(live or 0)}


def run_dlt(workdir: str, n: int, seed: int) -> dict[str, Any]:
    import dlt

    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    os.environ["DLT_DATA_DIR"] = workdir

    @dlt.resource(name="leads", write_disposition="merge", primary_key="email")
    def leads() -> Iterator[dict[str, str]]:
        # dlt has no normaliser: it merges on the email as written, which is the point
        # of the comparison (what a data engineer gets without identity rules). Its
        # primary key cannot be null, so records without an email are left out.
        for rec in records(seed, n):
            if rec["email"]:
                yield rec

    pipeline = dlt.pipeline(
        pipeline_name="bench",
        destination=dlt.destinations.duckdb(str(Path(workdir) / "peer.duckdb")),
        dataset_name="leads_data",
        pipelines_dir=str(Path(workdir) / "pipelines"),
    )
    started = time.perf_counter()
    pipeline.run(leads())
    seconds = time.perf_counter() - started
    with pipeline.sql_client() as client:
        rows = client.execute_sql("select count(*) from leads")[0][0]
    return {"seconds": seconds, "rows": n, "contacts": int(rows)}


# -- the parent: run targets as children, sample their memory --------------------


def _child(target: str, n: int, seed: int, workers: int | None, profile: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="leadsync-bench-") as tmp:
        if target == "sqlite":
            result = _maybe_profiled(
                profile, run_leadsync, f"sqlite:///{tmp}/bench.db", n, seed, workers
            )
        elif target == "postgres":
            _reset_pg()
            result = _maybe_profiled(profile, run_leadsync, PG_BENCH, n, seed, workers)
        elif target == "dlt":
            result = run_dlt(tmp, n, seed)
        else:
            raise SystemExit(f"unknown target {target}")
    print("RESULT " + json.dumps(result), flush=True)


def _maybe_profiled(profile: bool, fn: Any, *args: Any) -> Any:
    if not profile:
        return fn(*args)
    import cProfile
    import pstats

    prof = cProfile.Profile()
    result = prof.runcall(fn, *args)
    pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(35)
    return result


def _reset_pg() -> None:
    empty_schema(PG_BENCH)  # the default database (leadsync_bench) is made if missing


def measure(target: str, n: int, seed: int, workers: int | None, profile: bool) -> dict[str, Any]:
    import psutil

    cmd = [sys.executable, __file__, "--child", target, "--n", str(n), "--seed", str(seed)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    if profile:
        cmd.append("--profile")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                total = 0
                for p in tree:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
                peak = max(peak, total)
            except psutil.Error:
                pass
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        return {"target": target, "n": n, "error": f"exit {proc.returncode}"}
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[7:])
    result.update(
        target=target,
        n=n,
        leads_per_s=round(n / result["seconds"]),
        peak_rss_mb=round(peak / 2**20),
    )
    return result


def machine() -> str:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        cpu = model
    except (OSError, StopIteration):
        pass
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, action="append", help="records (repeatable)")
    parser.add_argument("--targets", default="sqlite,postgres,dlt")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="cProfile the target (stderr)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = args.n or [100_000]
    if args.child:
        _child(args.child, sizes[0], args.seed, args.workers, args.profile)
        return
    print(f"machine: {machine()}")
    print(f"command: python benchmarks/ingest.py {' '.join(sys.argv[1:])}")
    header = (
        f"{'target':<9} {'N':>9} {'leads/s':>9} {'peak RSS':>9} {'seconds':>8} "
        f"{'contacts':>9} {'quarantined':>11} {'writer CPU':>10}"
    )
    print(header)
    results = []
    for n in sizes:
        for target in args.targets.split(","):
            r = measure(target, n, args.seed, args.workers, args.profile)
            results.append(r)
            if "error" in r:
                print(f"{target:<9} {n:>9} failed: {r['error']}", flush=True)
                continue
            print(
                f"{target:<9} {n:>9} {r['leads_per_s']:>9} {r['peak_rss_mb']:>6} MB "
                f"{r['seconds']:>8.1f} {r['contacts']:>9} {r.get('quarantined', '-'):>11}"
                f" {r.get('writer_cpu_us', '-'):>10}",
                flush=True,
            )
    out = ROOT / "benchmarks" / "results.json"
    out.write_text(json.dumps({"machine": machine(), "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
