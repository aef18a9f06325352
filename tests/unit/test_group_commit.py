"""The group-commit base both the webhook inbox and the web tag's page views use:
everything queued while a transaction commits goes in the next one (up to MAX_BATCH by
`size`), each waiter gets its own result after the commit, and on PostgreSQL a writer
thread gives its own connection back when it has had nothing to do for IDLE."""

from __future__ import annotations

import threading
import time

from sqlalchemy import Connection, func, select, text

from connector.store import Store
from connector.store.group_commit import GroupCommit
from connector.store.tables import webhook_deliveries


class Echo(GroupCommit[str, str]):
    """Answers each payload with itself and the number of its transaction."""

    MAX_BATCH = 10
    NAME = "echo-writer"
    IDLE = 0.3

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.batches: list[list[str]] = []
        self.gate = threading.Event()

    def size(self, payload: str) -> int:
        return 5 if payload.startswith("big") else 1

    def commit(self, conn: Connection, payloads: list[str]) -> list[str]:
        self.gate.wait(30)
        conn.execute(select(func.count()).select_from(webhook_deliveries))
        self.batches.append(payloads)
        return [f"{p}@{len(self.batches)}" for p in payloads]


def test_a_batch_is_what_queued_meanwhile_up_to_max_batch_by_size(store: Store) -> None:
    writer = Echo(store)
    first = writer.put("first")
    time.sleep(0.2)  # the thread took `first` alone and waits at the gate
    rest = [writer.put(p) for p in ["a", "big-1", "b", "big-2", "c", "d"]]
    writer.gate.set()
    assert first.result(30) == "first@1"
    # 1 + 5 + 1 + 5 = 12 >= 10: the drain stops after big-2, the rest is the next batch.
    assert [f.result(30) for f in rest] == ["a@2", "big-1@2", "b@2", "big-2@2", "c@3", "d@3"]
    assert writer.batches == [["first"], ["a", "big-1", "b", "big-2"], ["c", "d"]]


def _connections(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "select count(*) from pg_stat_activity "
                    "where datname = current_database() and pid <> pg_backend_pid()"
                )
            ).scalar_one()
        )


def test_a_writer_thread_gives_its_connection_back_when_idle(store: Store) -> None:
    writer = Echo(store)
    writer.gate.set()
    if store.dialect != "postgresql":  # SQLite: a pooled connection per transaction
        assert writer.put("x").result(30) == "x@1"
        return
    before = _connections(store)
    assert writer.put("x").result(30) == "x@1"
    assert writer.put("y").result(30) == "y@2"
    assert _connections(store) == before + 1  # its own, kept between transactions
    time.sleep(writer.IDLE + 0.5)
    assert _connections(store) == before  # closed for real (not back to a pool)
    assert writer.put("z").result(30) == "z@3"  # and opened again when needed


def test_a_waiter_that_gave_up_does_not_stop_the_writer(store: Store) -> None:
    writer = Echo(store)
    first = writer.put("first")
    time.sleep(0.2)  # taken, waiting at the gate
    assert first.cancel()  # as asyncio.wrap_future does when its request is cancelled
    writer.gate.set()
    assert writer.put("next").result(30) == "next@2"
