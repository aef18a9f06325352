"""Deliverer processes killed with -9 again and again, on both stores: nothing is lost,
attempts are counted, each contact's effects arrive in order, and a row whose delivery
kills the process every time ends as a dead letter instead of killing forever."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from connector.statuses import Catalogue
from connector.store import Store, open_store
from connector.store.tables import outbox as table
from connector.sync import outbox
from tests.runtime.test_outbox import people, rows

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]


def start(url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "OUTBOX_LOG": str(log),
        "OUTBOX_LEASE": "0.5",  # a killed worker's rows come back quickly
        "OUTBOX_MAX_ATTEMPTS": "4",
        "OUTBOX_BATCH": "10",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.outbox_plugin", url],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
    )


def lines(log: Path) -> list[tuple[int, int]]:
    """(row id, contact id) of every delivery, in the order they happened."""
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        row_id, _pid, contact = line.split()
        found.append((int(row_id), int(contact)))
    return found


def committed(store: Store) -> int:
    """Rows whose delivery is recorded in the store (not only handed to the recorder)."""
    with store.engine.connect() as conn:
        query = select(func.count()).select_from(table).where(table.c.delivered_at.is_not(None))
        return int(conn.execute(query).scalar_one())


def test_kill_9_while_delivering_loses_nothing_and_buries_the_poison(
    store_url: str, tmp_path: Path
) -> None:
    store = open_store(store_url, Catalogue.default(), upgrade=True)
    ids = people(store, 15)
    rng = random.Random(12)
    with store.engine.begin() as conn:
        # The poison row comes first for its contact: that contact's later rows wait
        # behind it until it is dead, and are delivered after.
        outbox.enqueue(conn, "recorder", "test", "poison", ids[0], {"poison": True})
        for i in range(200):
            outbox.enqueue(conn, "recorder", "test", f"e{i}", rng.choice(ids), {"n": i})
    log = tmp_path / "deliveries.log"
    kills = 0
    for _ in range(8):
        worker = start(store_url, log)
        seen = committed(store)
        deadline = time.time() + 30
        # Kill it at a random moment once it has recorded a delivery of its own (or it
        # killed itself on the poison row). Recorded, not only handed over: gated on the
        # recorder's log, a slow (loaded) worker was killed between handing a batch over
        # and recording it, so the next worker redelivered that same batch and was
        # killed at the same point again, until those innocent rows ran out of attempts
        # and were buried as dead letters beside the poison.
        while time.time() < deadline and committed(store) <= seen and worker.poll() is None:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.15))
        if worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
        worker.wait(30)
        kills += 1
    assert len({r for r, _ in lines(log)}) < 200, "the kills did not land mid-delivery"
    # Then workers until one finishes: the poison kills each one that claims it, until its
    # attempts run out.
    for _ in range(10):
        worker = start(store_url, log)
        _, stderr = worker.communicate(timeout=120)
        if worker.returncode == 0:
            break
        assert worker.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
        kills += 1
    assert worker.returncode == 0

    final = {str(r["key"]): r for r in rows(store)}
    poison = final.pop("poison")
    assert poison["dead_at"] is not None and poison["attempts"] == 4
    assert "left no result" in str(poison["last_error"])
    assert all(r["delivered_at"] is not None for r in final.values())  # nothing lost
    delivered = lines(log)
    assert {r for r, _ in delivered} == {int(str(r["id"])) for r in final.values()}
    assert int(str(poison["id"])) not in {r for r, _ in delivered}
    # At least once: a row is delivered again only when its worker died before
    # recording it, at most one batch per kill; and every delivery counted an attempt.
    assert len(delivered) - len(final) <= kills * 10
    for r in final.values():
        times = sum(1 for row_id, _ in delivered if row_id == r["id"])
        assert isinstance(r["attempts"], int) and r["attempts"] >= times
    # Per contact, deliveries never go back to an earlier row (redeliveries included).
    by_contact: dict[int, list[int]] = {}
    for row_id, contact in delivered:
        by_contact.setdefault(contact, []).append(row_id)
    assert all(seq == sorted(seq) for seq in by_contact.values())
    assert outbox.depth(store) == {"recorder": {"pending": 0, "oldest_age": 0.0, "failed": 1}}
    store.close()
