"""Where an ingest's time goes: wall time per pipeline stage in the writer process.

    python benchmarks/stages.py --n 100000                      # SQLite in a temp dir
    python benchmarks/stages.py --n 100000 --url postgresql+psycopg://postgres@127.0.0.1:5432/leadsync_bench

Wraps the stages with timers (no profiler, so no distortion) and runs the ingest
benchmark's generator through the pipeline with one normalising worker. Each stage
shows wall time and the writer thread's CPU time: on a shared machine the wall time
moves with other people's load, the CPU time much less.
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest

from connector import pipeline
from connector.store import ingest as writes

SPENT: collections.Counter[str] = collections.Counter()
CPU: collections.Counter[str] = collections.Counter()


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[name] += time.perf_counter() - started
            CPU[name] += time.thread_time() - cpu

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--url", default=None)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    pipeline._assembled = timed("wait for worker + assemble", pipeline._assembled)
    writes.lookup = timed("lookup (3 queries)", writes.lookup)
    writes.apply = timed("apply (write the plan)", writes.apply)
    writes.quarantine_records = timed("quarantine", writes.quarantine_records)
    if hasattr(pipeline, "issues"):  # field issues (file, resolve) since 0003_field_issues
        pipeline.issues.settle = timed("field issues", pipeline.issues.settle)
    pipeline.Resolver.add = timed("resolve identities", pipeline.Resolver.add)  # type: ignore[method-assign]
    url = args.url or f"sqlite:///{tempfile.mkdtemp(prefix='leadsync-stages-')}/stages.db"
    if url.startswith("postgresql"):
        ingest._reset_pg()
    result = ingest.run_leadsync(url, args.n, 7, args.workers)
    total = result["seconds"]
    print(f"{url.split(':')[0]}: {args.n} leads in {total:.1f} s = {args.n / total:.0f} leads/s")
    print(f"  {'stage':<28} {'wall':>8}  {'µs/lead':>7}  {'CPU µs/lead':>11}")
    for name, seconds in SPENT.most_common():
        per, cpu = seconds / args.n * 1e6, CPU[name] / args.n * 1e6
        print(f"  {name:<28} {seconds:6.2f} s  {per:7.1f}  {cpu:11.1f}")


if __name__ == "__main__":
    main()
