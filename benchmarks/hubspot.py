"""HubSpot two-way benchmark (issue 12): status changes arriving by HubSpot webhook,
end to end to another connected two-way system.

    python benchmarks/hubspot.py --changes 10000 --rate 500 --store sqlite
    python benchmarks/hubspot.py --changes 10000 --rate 500 --store postgres

One run:

1. the HubSpot emulator (adapters/hubspot/fake.py) in its own process (spawn), with
   `--changes` contacts in status NEW, modified an hour ago;
2. the real daemon (connector.runtime.daemon.Daemon: scheduler, HTTP server, the
   hubspot plugin's pull and webhook drain, the outbox job) on a thread of this
   process, with default intervals, on a fresh SQLite file or PostgreSQL
   (`--pg-url`, its public schema dropped and recreated), and a second two-way system
   "other": a destination that only records when each status row reaches it;
3. setup (not measured): the daemon's first pull links every contact; the contact rows
   for "other" are delivered; then the emulator's webhooks are pointed at the daemon;
4. load: the emulator changes one contact's hs_lead_status to CONNECTED (a person,
   CRM_UI) at t0 + i/rate, open loop; its sender batches pending events (<= 100 per
   delivery, signed v3) as HubSpot does;
5. latency of change i: the time "other" received its status row minus the change's
   scheduled time (= the webhook's occurredAt). Also: changes/s end to end, HubSpot
   calls during the load (the minimum is 0: a webhook carries the value and the
   contact id, and every contact is already linked), and the engine alone: `observe`
   of the same number of observations in batches of 200, one transaction each.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import machine  # noqa: E402
from benchmarks.pgdb import empty_schema  # noqa: E402

SECRET = "bench-secret"
TOKEN = "pat-na1-bench"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/lt_hubspot"


# -- the emulator process -------------------------------------------------------------


def _emulator(conn: Any, contacts: int) -> None:
    """Child: serve a portal; on ("load", url, rate) change each contact once on
    schedule and report the schedule; on ("stats",) the calls; on ("stop",) exit."""
    from adapters.hubspot.fake import FakeHubSpot

    fake = FakeHubSpot(token=TOKEN, client_secret=SECRET)
    past = int(time.time() * 1000) - 3_600_000
    with fake.portal.lock:
        ids = [
            fake.portal.create(
                {"email": f"b{i}@example.com", "firstname": f"B{i}", "hs_lead_status": "NEW"},
                at=past + i,
            ).id
            for i in range(contacts)
        ]
    conn.send(fake.start())
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            fake.stop()
            return
        if msg[0] == "stats":
            conn.send({**fake.state(), "calls": dict(fake.calls)})
        if msg[0] == "load":
            _, url, rate = msg
            fake.set_webhooks(url=url, properties=["hs_lead_status"])
            start = time.time() + 0.5
            schedule: list[tuple[int, int]] = []
            for i, cid in enumerate(ids):
                due = start + i / rate
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                at = int(due * 1000)
                fake.change(cid, "hs_lead_status", "CONNECTED", at=at)
                schedule.append((cid, at))
            conn.send(schedule)


# -- the other system -----------------------------------------------------------------


class Recorder:
    """The "other" two-way system: takes every row, remembers when status rows came."""

    name = "other"

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        self.rows = 0
        self.calls = 0

    def deliver(self, rows: Sequence[Any]) -> list[Any]:
        from connector.ports import Delivered

        now = time.time()
        self.calls += 1
        self.rows += len(rows)
        for row in rows:
            if row.kind == "status" and row.contact_id is not None:
                self.arrived.setdefault(row.contact_id, now)
        return [Delivered() for _ in rows]


class OtherPlugin:
    name = "other"

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def status_systems(self, config: Any) -> list[str]:
        return ["other"]

    def destinations(self, runtime: Any) -> list[Recorder]:
        return [self.recorder]


# -- the run ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _store(kind: str, pg_url: str) -> Any:

    from connector.store import open_store

    if kind == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="hs-bench-")) / "bench.db"
        return open_store(f"sqlite:///{path}")
    empty_schema(pg_url)
    return open_store(pg_url, upgrade=True)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _wait(what: str, test: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark: {what} did not happen in {timeout:.0f} s")
        time.sleep(0.1)


def run(
    changes: int, rate: float, store_kind: str, pg_url: str, trace: bool = False
) -> dict[str, Any]:
    from sqlalchemy import func, select

    from adapters.hubspot import HubSpotPlugin
    from connector.config import SyncConfig, config_model
    from connector.runtime import inbox
    from connector.runtime.daemon import Daemon
    from connector.store.tables import outbox, system_links
    from connector.sync import fanout

    store = _store(store_kind, pg_url)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_emulator, args=(child, changes), daemon=True)
    proc.start()
    recorder = Recorder()
    daemon: Daemon | None = None
    thread: threading.Thread | None = None
    try:
        api = parent.recv()
        port = _free_port()
        config = config_model().model_validate(
            {
                "store": {"url": store.url},
                "server": {"host": "127.0.0.1", "port": port},
                "hubspot": {
                    "token": TOKEN,
                    "portal_id": 62515,
                    "api_url": api,
                    "webhook_secret": SECRET,
                },
            }
        )
        fanout.install(("hubspot", "other"), SyncConfig(), store.engine)
        plugins: dict[str, Any] = {"hubspot": HubSpotPlugin(), "other": OtherPlugin(recorder)}
        daemon = Daemon(config, store, plugins)
        thread = threading.Thread(target=daemon.run, name="bench-daemon", daemon=True)
        thread.start()

        def count(table: Any, *where: Any) -> int:
            with store.reader.connect() as conn:
                q = select(func.count()).select_from(table).where(*where)
                return int(conn.execute(q).scalar_one())

        setup = time.monotonic()
        _wait("the first pull", lambda: count(system_links) >= changes, 600)
        pending = (outbox.c.delivered_at.is_(None), outbox.c.dead_at.is_(None))
        _wait("the setup's contact rows", lambda: count(outbox, *pending) == 0, 600)
        setup_s = time.monotonic() - setup
        parent.send(("stats",))
        before = parent.recv()["calls"]
        parent.send(("load", f"http://127.0.0.1:{port}/webhooks/hubspot", rate))
        schedule: list[tuple[int, int]] = parent.recv()

        def arrived() -> bool:
            # Every 5 s, where the changes wait: the inbox (drain behind) or the outbox
            # (delivery behind); printed with --trace.
            nonlocal last_trace
            if trace and time.monotonic() - last_trace >= 5:
                last_trace = time.monotonic()
                print(
                    f"  inbox pending {inbox.pending(store, 'hubspot')}, outbox pending "
                    f"{count(outbox, *pending)}, arrived {len(recorder.arrived)}",
                    flush=True,
                )
            return len(recorder.arrived) >= changes

        last_trace = 0.0
        _wait("every change at the other system", arrived, 900)
        parent.send(("stats",))
        after = parent.recv()
        with store.reader.connect() as conn:
            contact_of = {
                int(e): int(c)
                for e, c in conn.execute(
                    select(system_links.c.external_id, system_links.c.contact_id).where(
                        system_links.c.system == "hubspot"
                    )
                )
            }
        latencies = [(recorder.arrived[contact_of[cid]] - at / 1000) * 1000 for cid, at in schedule]
        first = schedule[0][1] / 1000
        last = max(recorder.arrived.values())
        calls = {k: v - before.get(k, 0) for k, v in after["calls"].items() if v - before.get(k, 0)}
    finally:
        if daemon is not None:
            daemon.stopping.set()
        if thread is not None:
            thread.join(60)
        parent.send(("stop",))
        proc.join(10)
    engine_rate = _engine_only(store, changes)
    fanout.uninstall(store.engine)
    return {
        "store": store_kind,
        "changes": changes,
        "rate": rate,
        "setup_s": round(setup_s, 1),
        "p50_ms": round(_pct(latencies, 50), 1),
        "p95_ms": round(_pct(latencies, 95), 1),
        "p99_ms": round(_pct(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
        "end_to_end_per_s": round(changes / (last - first), 1),
        "hubspot_calls_during_load": calls,
        "webhook_deliveries": after["webhooks"].get("delivered", 0),
        "other_calls": recorder.calls,
        "engine_per_s": round(engine_rate, 1),
    }


def _engine_only(store: Any, n: int, batch: int = 200) -> float:
    """`observe` alone: each linked contact seen again with OPEN_DEAL (an accepted,
    fanned-out change), `batch` observations a transaction, as the drain does."""
    from sqlalchemy import select

    from adapters.hubspot.config import LEAD_STATUS_WORDS
    from connector.config import SyncConfig
    from connector.ports import StatusObservation
    from connector.store.tables import system_links
    from connector.sync import fanout
    from connector.sync.status import observe

    fanout.install(("hubspot", "other"), SyncConfig(), store.engine)
    with store.reader.connect() as conn:
        ids = [str(e) for (e,) in conn.execute(select(system_links.c.external_id))][:n]
    at = datetime.now(UTC)
    observations = [StatusObservation("hubspot", i, "OPEN_DEAL", at, True, "userId:1") for i in ids]
    started = time.perf_counter()
    for start in range(0, len(observations), batch):
        with store.engine.begin() as conn:
            observe(conn, observations[start : start + batch], LEAD_STATUS_WORDS, at)
    return len(observations) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=500.0, help="Changes per second.")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="Its public schema is dropped.")
    parser.add_argument("--trace", action="store_true", help="Print the backlogs every 5 s.")
    args = parser.parse_args()
    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(30)  # warnings only
    )
    print(machine())
    result = run(args.changes, args.rate, args.store, args.pg_url, args.trace)
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
