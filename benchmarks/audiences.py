"""Audience benchmark: a 1,000,000-member custom audience with 1% churn.

    python benchmarks/audiences.py --members 1000000 --store sqlite
    python benchmarks/audiences.py --members 1000000 --store postgres \\
        --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/lt_audiences_bench

Builds a store of `--members` Qualified contacts (email and phone), records them as
already sent to the audience (what a first push leaves), then churns 1%: half of it
leaves the segment (Lost), half is new. Measured, each in a fresh process so its peak
RSS is its own: for comparison the whole-segment scan (the diff before the watermark,
still used for segments that move with time), then the plan (the incremental diff from
the first push's watermark and the key hashing, no call), the push of the churn
to the Graph emulator over loopback (calls against the minimum: adds in 10,000s,
removes in 200s), then a plan again (zero calls expected). Targets (issue 14): diff
< 2 s, calls equal to the minimum, zero calls when nothing changed, RSS <= 300 MB.
The PostgreSQL schema at --pg-url is dropped and recreated: use a database of your own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from sqlalchemy import insert, text, update

from benchmarks.pgdb import empty_schema, refuse_shared
from connector.statuses import Catalogue
from connector.store import audiences as audience_state
from connector.store import open_store
from connector.store.tables import audience_members, contacts

NAME = "Qualified and won"
WHERE = "status in (Qualified, Won)"


def build(url: str, members: int) -> None:
    if url.startswith("postgresql"):
        empty_schema(url)
    store = open_store(url, Catalogue.default(), upgrade=True)
    qualified = store.catalogue.resolve("Qualified").id
    now = datetime.now(UTC)
    # The members were last changed a day ago and sent by the first push an hour later;
    # the churn happens now, after that push's watermark.
    past = now - timedelta(days=1)
    pushed = past + timedelta(hours=1)
    started = time.perf_counter()
    chunk = 20_000
    with store.engine.begin() as conn:
        for start in range(0, members, chunk):
            conn.execute(
                insert(contacts),
                [
                    {
                        "id": i + 1,
                        "status": qualified,
                        "email": f"person{i}@example.com",
                        "phone": f"+6012{i:07d}",
                        "custom": {},
                        "created_at": past,
                        "updated_at": past,
                    }
                    for i in range(start, min(members, start + chunk))
                ],
            )
    # What a first push leaves: every member recorded as sent.
    from adapters.facebook import audience_diff as sync
    from adapters.facebook.audience_config import AudienceConfig

    config = AudienceConfig(name=NAME, where=WHERE)
    rows = list(sync.desired(store, config))
    with store.engine.begin() as conn:
        for start in range(0, len(rows), chunk):
            conn.execute(
                insert(audience_members),
                [
                    {"audience": NAME, "contact_id": c, "key_hash": k, "row": r, "sent_at": pushed}
                    for c, k, r in rows[start : start + chunk]
                ],
            )
        # 1% churn: half leave the segment, half are new people.
        churn = members // 100
        lost = store.catalogue.resolve("Lost").id
        conn.execute(
            update(contacts)
            .where(contacts.c.id <= churn // 2)
            .values(status=lost, status_changed_at=now, updated_at=now)
        )
        conn.execute(
            insert(contacts),
            [
                {
                    "id": members + i + 1,
                    "status": qualified,
                    "email": f"new{i}@example.com",
                    "phone": f"+6013{i:07d}",
                    "custom": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(churn // 2)
            ],
        )
    # ...and the watermark that first push left.
    mark = audience_state.watermark(store, pushed)
    audience_state.save_ids(
        store,
        NAME,
        {"watermark": mark.isoformat(), "basis": sync.basis(store, config), "deferred": []},
    )
    if url.startswith("postgresql"):
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    store.close()
    print(
        f"# built {members:,} members + churn in {time.perf_counter() - started:.1f} s", flush=True
    )


def measure(url: str, step: str) -> dict[str, object]:
    """One step in this (fresh) process: its time and its own peak RSS."""
    from adapters.facebook import audience_diff
    from adapters.facebook import audiences as sync
    from adapters.facebook.audience_config import AudiencesConfig
    from adapters.facebook.fake import FakeGraph
    from adapters.facebook.graph import GraphClient

    store = open_store(url, Catalogue.default())
    config = AudiencesConfig.model_validate(
        {"ad_account_id": "act_777", "sets": [{"name": NAME, "where": WHERE}]}
    )
    started = time.perf_counter()
    if step == "plan":
        result: dict[str, object] = dict(sync.plan(store, config)[0])
        result["mode"] = audience_diff.mode(store, NAME, config.sets[0])
    elif step == "scan":  # the whole-segment scan a push made before the watermark
        found = list(audience_diff.scan(store, NAME, config.sets[0]))
        result = {"mode": "scan", "changes": len(found)}
    else:
        fake = FakeGraph(seed=1)
        fake.start()
        token = fake.add_system_user_token("9001")
        fake.audiences.add_account("777")
        client = GraphClient(fake.base_url, "v26.0")
        pusher = sync.Pusher(
            store, sync.AdsGraph(client, token, fake.app_secret, "act_777"), config
        )
        pusher.audience_id(config.sets[0])  # created before the clock: not part of the diff
        started = time.perf_counter()
        result = dict(pusher.push(config.sets[0]))
        fake.stop()
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store.close()
    return {"step": step, "seconds": round(seconds, 2), "peak_rss_mb": round(rss), **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--store", default="sqlite")
    parser.add_argument(
        "--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/lt_audiences_bench"
    )
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "build":
        build(args.url, args.members)
        return
    if args.step:
        print(json.dumps(measure(args.url, args.step), default=str))
        return
    url = args.pg_url if args.store == "postgres" else f"sqlite:///{tempfile.mkdtemp()}/a.db"
    if args.store == "postgres":
        refuse_shared(url)  # before the build step's child process, not inside it
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
        f"{args.store}",
        flush=True,
    )
    # Every step in a child of this small process: Linux keeps ru_maxrss across execve,
    # so a child of a process that built a million rows would report the builder's peak.
    built = subprocess.run(
        [sys.executable, __file__, "--step", "build", "--url", url, "--members", str(args.members)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    print(built.stdout.strip().splitlines()[-1], flush=True)
    churn = args.members // 100
    minimum = -(-(churn // 2) // 10_000) + -(-(churn // 2) // 200)
    print(f"# minimum calls for the churn: {minimum}", flush=True)
    for step in ("scan", "plan", "push", "plan"):
        done = subprocess.run(
            [sys.executable, __file__, "--step", step, "--url", url],
            capture_output=True,
            text=True,
            check=True,
        )
        print(done.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
