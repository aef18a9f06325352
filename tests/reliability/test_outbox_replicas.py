"""Three replicas on one PostgreSQL (issue 12, "Proof"): thousands of outbox rows over a
few hundred contacts, delivered by three processes to a destination that logs every
delivery's row id; one replica is killed with -9 in the middle of its deliveries.

- Three claimers side by side (`python -m tests.reliability.outbox_plugin`, the outbox's
  own loop, claiming concurrently: SKIP LOCKED, heads, leases).
- Three `leadsync run` daemons: the outbox job runs on one replica at a time (its
  advisory lock); killing that one mid-batch moves the job to another, and the killed
  replica's leased rows come back when their lease runs out.

Either way: every row is delivered, and apart from the killed process's unrecorded
batch (at least once), exactly once by id; each contact's deliveries never go back
(the receiver, deduping by row id, sees every contact's sequence 0, 1, 2, ... in order).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, insert, select

from connector.store import open_store
from connector.store.tables import contacts
from connector.store.tables import outbox as table
from connector.sync import outbox
from tests.conftest import PG_URL, reset_postgres
from tests.reliability.daemons import free_port, start_daemon, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
ROOT = Path(__file__).parents[2]
ROWS, CONTACTS, BATCH = 4000, 300, 20


@pytest.fixture
def filled() -> Iterator[dict[int, tuple[int, int]]]:
    """A fresh database with ROWS pending rows for "recorder" over CONTACTS contacts, in
    random order; row id -> (contact, its sequence number within the contact)."""
    reset_postgres()
    store = open_store(PG_URL, upgrade=True)
    rng = random.Random(12)
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        people = list(
            conn.execute(
                insert(contacts).returning(contacts.c.id),
                [{"status": 0, "custom": {}, "created_at": now, "updated_at": now}] * CONTACTS,
            ).scalars()
        )
        seq: dict[int, int] = {}
        effects = []
        for i in range(ROWS):
            c = rng.choice(people)
            effects.append(("recorder", "test", f"e{i}", c, {"seq": seq.get(c, 0)}))
            seq[c] = seq.get(c, 0) + 1
        for start in range(0, ROWS, 500):  # several transactions, as writers would
            outbox.enqueue_many(conn, effects[start : start + 500])
    with store.engine.connect() as conn:
        found = conn.execute(select(table.c.id, table.c.contact_id, table.c.payload))
        rows = {r.id: (r.contact_id, r.payload["seq"]) for r in found}
    store.close()
    assert len(rows) == ROWS
    yield rows


def deliveries(log: Path) -> list[tuple[int, int]]:
    """(row id, pid) of every delivery, in the order they were made."""
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        row_id, pid, _contact = line.split()
        found.append((int(row_id), int(pid)))
    return found


def check(rows: dict[int, tuple[int, int]], log: Path, killed: int) -> None:
    made = deliveries(log)
    ids = [r for r, _ in made]
    assert set(ids) == set(rows), "rows never delivered"
    twice = [r for r, n in Counter(ids).items() if n > 1]
    # At least once: only rows the killed process was handed and never recorded come
    # again, at most one batch of them; every other row exactly once.
    assert len(twice) <= BATCH, twice
    killed_rows = {r for r, pid in made if pid == killed}
    assert set(twice) <= killed_rows, "a row delivered twice that no kill explains"
    # Per contact, deliveries never go back (a redelivery repeats the last row only),
    # and deduped by row id the receiver sees each contact's sequence 0, 1, 2 ...
    last: dict[int, int] = {}
    seen: set[int] = set()
    received: dict[int, list[int]] = {}
    for row_id in ids:
        contact, seq = rows[row_id]
        assert last.get(contact, -1) <= row_id, f"contact {contact} went back to {row_id}"
        last[contact] = row_id
        if row_id not in seen:
            seen.add(row_id)
            received.setdefault(contact, []).append(seq)
    assert len(received) == len({c for c, _ in rows.values()})
    assert all(seqs == list(range(len(seqs))) for seqs in received.values())
    engine = create_engine(PG_URL)
    with engine.connect() as conn:
        left = conn.execute(select(table.c.id).where(table.c.delivered_at.is_(None))).all()
    engine.dispose()
    assert left == []


def wait_for_deliveries(log: Path, n: int, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.time() + 120
    while len(deliveries(log)) < n:
        assert time.time() < deadline, f"only {len(deliveries(log))} deliveries"
        assert any(p.poll() is None for p in procs), "every replica stopped"
        time.sleep(0.02)


def test_three_claimer_processes_one_killed(
    filled: dict[int, tuple[int, int]], tmp_path: Path
) -> None:
    log = tmp_path / "deliveries.log"
    env = {
        **os.environ,
        "OUTBOX_LOG": str(log),
        "OUTBOX_LEASE": "2",  # the killed claimer's rows come back soon
        "OUTBOX_BATCH": str(BATCH),
    }
    command = [sys.executable, "-m", "tests.reliability.outbox_plugin", PG_URL]
    procs = [subprocess.Popen(command, cwd=ROOT, env=env) for _ in range(3)]
    try:
        wait_for_deliveries(log, ROWS // 3, procs)
        # The one that delivered last is mid-delivery now (or between two of them).
        victim_pid = deliveries(log)[-1][1]
        victim = next(p for p in procs if p.pid == victim_pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        others = [p for p in procs if p is not victim]
        assert [p.wait(180) for p in others] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    pids = {pid for _, pid in deliveries(log)}
    assert len(pids) == 3, "the three claimers did not all deliver"
    check(filled, log, victim_pid)


def test_three_daemons_one_killed(filled: dict[int, tuple[int, int]], tmp_path: Path) -> None:
    log = tmp_path / "deliveries.log"
    config = tmp_path / "leadsync.yaml"
    config.write_text(yaml.safe_dump({"outbox": {"lease_seconds": 2, "batch": BATCH}}))
    env = {
        "LEADSYNC_EXTRA_PLUGINS": "tests.reliability.outbox_plugin:plugin",
        "OUTBOX_LOG": str(log),
        "PYTHONPATH": str(ROOT),
    }
    ports = [free_port() for _ in range(3)]
    daemons = [start_daemon(config, PG_URL, p, tmp_path / f"d{p}.log", env) for p in ports]
    try:
        for port in ports:
            wait_ready(port, timeout=60)
        wait_for_deliveries(log, ROWS // 3, daemons)
        victim_pid = deliveries(log)[-1][1]  # the replica running the outbox job
        victim = next(d for d in daemons if d.pid == victim_pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        deadline = time.time() + 180
        while len({r for r, _ in deliveries(log)}) < ROWS and time.time() < deadline:
            time.sleep(0.2)
    finally:
        for d in daemons:
            if d.poll() is None:
                d.send_signal(signal.SIGTERM)
        codes = [d.wait(60) for d in daemons]
    assert sorted(codes) == [-signal.SIGKILL, 0, 0]
    assert len({pid for _, pid in deliveries(log)}) >= 2, "no other replica took over"
    check(filled, log, victim_pid)
