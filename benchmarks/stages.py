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
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
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


TOTAL = "writer thread, in all"
REST = "rest (read, split, hand over)"


def _timed_commit(transaction: Callable[..., Any]) -> Callable[..., Any]:
    """The pipeline's transaction, with its COMMIT timed as a stage of its own."""

    @contextlib.contextmanager
    def wrapper(self: Any) -> Iterator[Any]:
        with transaction(self) as conn:
            yield conn
            started, cpu = time.perf_counter(), time.thread_time()
            conn.get_transaction().commit()
            SPENT["commit"] += time.perf_counter() - started
            CPU["commit"] += time.thread_time() - cpu

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
    if hasattr(pipeline, "quarantine_store"):  # closing re-ingested entries (0006)
        qs = pipeline.quarantine_store
        qs.resolve_reingested = timed("close re-ingested entries", qs.resolve_reingested)
    if hasattr(pipeline, "clean_leads"):  # NUL cleaning at the pipeline's entry
        pipeline.clean_leads = timed("clean text (NUL)", pipeline.clean_leads)
    pipeline.Pipeline._transaction = _timed_commit(pipeline.Pipeline._transaction)  # type: ignore[method-assign]
    pipeline.Pipeline.run = timed(TOTAL, pipeline.Pipeline.run)  # type: ignore[method-assign]
    url = args.url or f"sqlite:///{tempfile.mkdtemp(prefix='leadsync-stages-')}/stages.db"
    if url.startswith("postgresql"):
        ingest._reset_pg()
    result = ingest.run_leadsync(url, args.n, 7, args.workers)
    total = result["seconds"]
    print(f"{url.split(':')[0]}: {args.n} leads in {total:.1f} s = {args.n / total:.0f} leads/s")
    # The rest of the writer thread: the source's reading, splitting, handing batches
    # to the worker (pickling happens on the pool's own threads, not timed here).
    staged = [name for name in SPENT if name != TOTAL]
    SPENT[REST] = SPENT[TOTAL] - sum(SPENT[name] for name in staged)
    CPU[REST] = CPU[TOTAL] - sum(CPU[name] for name in staged)
    print(f"  {'stage':<28} {'wall':>8}  {'µs/lead':>7}  {'CPU µs/lead':>11}")
    for name, seconds in SPENT.most_common():
        per, cpu = seconds / args.n * 1e6, CPU[name] / args.n * 1e6
        print(f"  {name:<28} {seconds:6.2f} s  {per:7.1f}  {cpu:11.1f}")


if __name__ == "__main__":
    main()
