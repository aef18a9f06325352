"""The outbox on both stores: insert-if-absent, claims, results, backoff, no double delivery."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from connector.ports import Delivered, DeliveryResult, Failed, OutboxRow, Retry
from connector.statuses import Catalogue
from connector.store import Store, open_store
from connector.store.tables import outbox as table
from connector.sync import outbox


class Recorder:
    def __init__(self, name: str = "crm", answer: object = None, pause: float = 0.0) -> None:
        self.name = name
        self.seen: list[OutboxRow] = []
        self.answer = answer
        self.pause = pause
        self._mutex = threading.Lock()

    def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
        with self._mutex:
            self.seen.extend(rows)
        if self.pause:
            time.sleep(self.pause)
        if isinstance(self.answer, Exception):
            raise self.answer
        if callable(self.answer):
            return [self.answer(r) for r in rows]
        return [Delivered() for _ in rows]


def rows(store: Store) -> list[dict[str, object]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.id))]


def fill(store: Store, n: int, destination: str = "crm") -> None:
    with store.engine.begin() as conn:
        for i in range(n):
            outbox.enqueue(conn, destination, "status", f"k{i}", {"i": i})


def test_enqueue_is_insert_if_absent_in_the_callers_transaction(store: Store) -> None:
    with store.engine.begin() as conn:
        assert outbox.enqueue(conn, "crm", "status", "c1:won", {"v": 1}) is True
        assert outbox.enqueue(conn, "crm", "status", "c1:won", {"v": 2}) is False
        assert outbox.enqueue(conn, "ads", "status", "c1:won", {"v": 3}) is True
    with pytest.raises(RuntimeError), store.engine.begin() as conn:
        outbox.enqueue(conn, "crm", "status", "rolled-back", {})
        raise RuntimeError("the change failed")
    got = rows(store)
    assert [(r["destination"], r["key"], r["payload"]) for r in got] == [
        ("crm", "c1:won", {"v": 1}),
        ("ads", "c1:won", {"v": 3}),
    ]
    assert got[0]["attempts"] == 0 and got[0]["delivered_at"] is None


def test_deliver_in_batches_marks_delivered(store: Store) -> None:
    fill(store, 7)
    target = Recorder()
    stats = outbox.deliver(store, [target], limit=3)
    assert stats.delivered == 7
    assert sorted(r.payload["i"] for r in target.seen) == list(range(7))
    assert all(r["delivered_at"] is not None and r["attempts"] == 1 for r in rows(store))
    assert outbox.deliver(store, [target]).delivered == 0  # nothing due
    assert outbox.depth(store) == {}


def test_retry_backs_off_and_failed_is_kept(store: Store) -> None:
    fill(store, 3)

    def answer(row: OutboxRow) -> DeliveryResult:
        return {0: Delivered(), 1: Retry("429 throttled"), 2: Failed("contact deleted")}[
            row.payload["i"]
        ]

    now = datetime.now(UTC)
    stats = outbox.deliver(store, [Recorder(answer=answer)])
    assert (stats.delivered, stats.retried, stats.failed) == (1, 1, 1)
    _, retried, failed = rows(store)
    assert retried["attempts"] == 1 and retried["last_error"] == "429 throttled"
    assert retried["available_at"] >= now + timedelta(seconds=outbox.backoff(1) - 1)
    assert failed["last_error"] == "failed: contact deleted"
    depth = outbox.depth(store)
    assert depth["crm"]["pending"] == 1 and depth["crm"]["failed"] == 1
    # not due yet; then due later, attempt two, longer wait
    assert outbox.deliver(store, [Recorder(answer=answer)]).retried == 0
    later = datetime.now(UTC) + timedelta(seconds=outbox.backoff(1) + 1)
    outbox.deliver_batch(store, Recorder(answer=lambda r: Retry("again")), now=later)
    assert rows(store)[1]["attempts"] == 2


def test_backoff_is_exponential_and_capped() -> None:
    assert [outbox.backoff(n) for n in (1, 2, 3)] == [30, 60, 120]
    assert outbox.backoff(50) == outbox.BACKOFF_CAP


def test_a_destination_that_raises_retries_the_batch(store: Store) -> None:
    fill(store, 2)
    stats = outbox.deliver(store, [Recorder(answer=ConnectionError("reset"))])
    assert stats.retried == 2
    assert all(r["last_error"] == "ConnectionError: reset" for r in rows(store))


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_concurrent_deliverers_never_deliver_a_row_twice(store_url: str) -> None:
    stores = [open_store(store_url, Catalogue.default(), upgrade=True) for _ in range(3)]
    fill(stores[0], 300)
    target = Recorder(pause=0.01)
    start = threading.Barrier(3)

    def worker(store: Store) -> None:
        start.wait()
        outbox.deliver(store, [target], limit=20)

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = [r.id for r in target.seen]
    assert len(ids) == len(set(ids)) == 300
    assert all(r["delivered_at"] is not None and r["attempts"] == 1 for r in rows(stores[0]))
    for s in stores:
        s.close()


def test_the_daemon_delivers_through_plugins_destinations(store: Store) -> None:
    from connector.config import LeadsyncConfig
    from connector.runtime.daemon import OUTBOX_JOB, Daemon

    target = Recorder()

    class WithDestination:
        name = "crm"

        def destinations(self, runtime: object) -> list[Recorder]:
            return [target]

    fill(store, 3)
    d = Daemon(LeadsyncConfig(), store, {"crm": WithDestination()})  # type: ignore[dict-item]
    assert [j.id for j in d.jobs()] == [OUTBOX_JOB]
    assert d.run_once() == 0
    assert len(target.seen) == 3 and outbox.depth(store) == {}
    assert Daemon(LeadsyncConfig(), store, {}).jobs() == []  # no destination, no job


def test_claimed_rows_are_not_claimed_again_and_the_store_stays_writable(store: Store) -> None:
    """While a destination is called, another deliverer finds nothing to take (a lease on
    SQLite, row locks on PostgreSQL) and the store takes writes (SQLite's write lock is
    not held across the call)."""
    fill(store, 2)
    nested: list[int] = []

    class Reentrant:
        name = "crm"

        def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
            with store.engine.begin() as conn:
                outbox.enqueue(conn, "audit", "note", f"n{len(nested)}", {})
            claimed, _ = outbox.deliver_batch(store, Recorder())
            nested.append(claimed)
            return [Delivered() for _ in rows]

    assert outbox.deliver(store, [Reentrant()]).delivered == 2
    assert nested == [0]
    assert outbox.depth(store) == {
        "audit": {"pending": 1, "oldest_age": pytest.approx(0, abs=60), "failed": 0}
    }
