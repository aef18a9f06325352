"""Facebook backfill benchmark: N leads over F forms from the Graph API emulator.

    python benchmarks/facebook_backfill.py --leads 100000 --forms 20 --latency 0 --latency 0.05

For each latency the emulator runs in its own process (its CPU is not ours), holding
one Page with F forms, ads in a few ad sets, and N synthetic messy leads spread over
the last 60 days. The backfill then runs here, exactly as `leadsync backfill facebook`
does (the SDK over loopback, the pipeline into a fresh SQLite store); then two polls,
the second of which finds nothing new. Reported per run:

- leads/s end to end, and the CPU seconds of our process tree (user + system, the
  normalising workers included, the emulator not) against the wall time: CPU well
  under the wall time means we waited on the API;
- Graph calls used against the minimum: one leadgen_forms call for the Page plus, per
  form, ceil(leads / page size) lead pages (the issue's definition);
- calls made by the idle poll, per form (target: at most one).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import machine  # noqa: E402

DAY = 86400.0


def _emulator(conn: Any, leads: int, forms: int, latency: float, seed: int) -> None:
    """Child process: build the world, send its description, serve until told to stop."""
    import copy

    from adapters.facebook.fake import DEMO_QUESTIONS, FakeGraph, config_section

    fake = FakeGraph(seed=seed)
    fake.start()
    page = fake.add_page("Benchmark Page")
    campaign = fake.add_campaign(page.id, name="Spring campaign")
    adsets = [
        fake.add_adset(
            campaign, name=f"Ad set {i}", interests=[{"id": str(600 + i), "name": f"Interest {i}"}]
        )
        for i in range(4)
    ]
    ads = [fake.add_ad(adsets[i % 4], name=f"Ad {i}") for i in range(8)]
    # Forms for a four-country audience ask the country (as the demo's do).
    form_ids = [
        fake.add_form(page.id, name=f"Form {i}", questions=copy.deepcopy(DEMO_QUESTIONS))
        for i in range(forms)
    ]
    now = time.time()
    per_form = [leads // forms + (1 if i < leads % forms else 0) for i in range(forms)]
    for form_id, n in zip(form_ids, per_form, strict=True):
        fake.generate_leads(form_id, n, start=now - 60 * DAY, end=now - 60, ads=ads)
    fake.faults.latency = latency
    fake.reset_calls()
    conn.send(
        {
            **config_section(fake, {"pages": [{"id": page.id, "token": page.token}]}),
            "forms": dict(zip(form_ids, per_form, strict=True)),
        }
    )
    conn.recv()  # "stop"
    conn.send(dict(fake.calls))
    fake.stop()


def run(leads: int, forms: int, latency: float, page_size: int, seed: int) -> dict[str, Any]:
    from adapters.facebook import Backfill
    from adapters.facebook.config import FacebookConfig
    from adapters.facebook.source import FacebookSource
    from connector import logs
    from connector.pipeline import Pipeline
    from connector.store import open_store

    logs.configure(0)  # warnings only: the benchmark prints its own table
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_emulator, args=(child, leads, forms, latency, seed), daemon=True)
    proc.start()
    world = parent.recv()
    config = FacebookConfig.model_validate({**world["facebook"], "page_size": page_size})
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        source = FacebookSource(config, store.catalogue)
        cpu = TreeCpu(exclude=proc.pid)
        cpu0 = cpu.read()
        started = time.perf_counter()
        source.discover(statuses=("ACTIVE", "ARCHIVED"), force=True)
        job = Backfill(source, list(source.forms().values()), time.time() - 61 * DAY, time.time())
        stats = Pipeline(store).run(job)
        seconds = time.perf_counter() - started
        cpu_s = cpu.close() - cpu0
        backfill_calls = source.calls
        # Polls: the first sets each form's cursor (reading back one day), the second
        # finds nothing new, which is what the daemon's polls cost on a quiet day.
        poller = FacebookSource(config.model_copy(update={"first_poll_days": 1.0}), store.catalogue)
        Pipeline(store, workers=0).run(poller)
        before = poller.calls
        Pipeline(store, workers=0).run(poller)
        idle = poller.calls - before
        store.close()
    parent.send("stop")
    served = parent.recv()
    proc.join(10)
    minimum = 1 + sum(math.ceil(n / page_size) for n in world["forms"].values())
    return {
        "latency_ms": round(latency * 1000),
        "leads": leads,
        "forms": forms,
        "seconds": round(seconds, 1),
        "leads_per_s": round(stats.rows / seconds),
        "cpu_s": round(cpu_s, 1),
        "cpu_share": round(cpu_s / seconds, 2),
        "api_wait_s": round(backfill_calls * latency, 1),
        "calls": backfill_calls,
        "minimum": minimum,
        "over_minimum_pct": round(100 * (backfill_calls - minimum) / minimum, 1),
        "idle_poll_calls_per_form": round(idle / forms, 2),
        "stored": stats.rows - stats.quarantined,
        "quarantined": stats.quarantined,
        "served": served,
    }


class TreeCpu:
    """CPU seconds of this process and every descendant but the emulator, sampled: the
    normalising workers are children of multiprocessing's fork server, not ours, so
    getrusage(RUSAGE_CHILDREN) would miss them."""

    def __init__(self, exclude: int) -> None:
        import psutil

        self.me = psutil.Process()
        self.exclude = exclude
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stop.wait(0.2):
            self.read()

    def read(self) -> float:
        import psutil

        for proc in [self.me, *self.me.children(recursive=True)]:
            if proc.pid == self.exclude:
                continue
            try:
                t = proc.cpu_times()
                self.seen[proc.pid] = t.user + t.system
            except psutil.Error:
                pass
        return sum(self.seen.values())

    def close(self) -> float:
        self.stop.set()
        self.thread.join()
        return self.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--forms", type=int, default=20)
    parser.add_argument("--latency", type=float, action="append", help="seconds per call")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"command: python benchmarks/facebook_backfill.py {' '.join(sys.argv[1:])}")
    print(
        f"{'latency':>8} {'leads':>7} {'s':>6} {'leads/s':>8} {'CPU s':>6} {'CPU/wall':>8} "
        f"{'calls x lat':>11} {'calls':>6} {'min':>6} {'over':>6} {'idle/form':>9}"
    )
    for latency in args.latency or [0.0]:
        r = run(args.leads, args.forms, latency, args.page_size, args.seed)
        print(
            f"{r['latency_ms']:>6}ms {r['leads']:>7} {r['seconds']:>6} {r['leads_per_s']:>8} "
            f"{r['cpu_s']:>6} {r['cpu_share']:>8} {r['api_wait_s']:>10}s {r['calls']:>6} "
            f"{r['minimum']:>6} {r['over_minimum_pct']:>5}% {r['idle_poll_calls_per_form']:>9}",
            flush=True,
        )
        print(f"  stored {r['stored']}, quarantined {r['quarantined']}, served {r['served']}")


if __name__ == "__main__":
    main()
