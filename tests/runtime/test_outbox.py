"""The outbox on both stores: enqueue, leases, per-contact order, attempts counted at the
claim, backoff with jitter, dead letters, concurrent claimers."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from connector.config import OutboxConfig
from connector.ports import Delivered, DeliveryResult, Failed, OutboxRow, Retry
from connector.statuses import Catalogue
from connector.store import Store, open_store
from connector.store.tables import contacts as contacts_table
from connector.store.tables import outbox as table
from connector.sync import outbox


class Recorder:
    """A destination that keeps what it was given and answers `answer(row)` (default
    Delivered). It fails the test's check if it ever holds two rows of one contact at
    once (`overlaps`)."""

    def __init__(self, name: str = "crm", answer: object = None, pause: float = 0.0) -> None:
        self.name = name
        self.seen: list[OutboxRow] = []
        self.answer = answer
        self.pause = pause
        self.in_flight: set[int] = set()
        self.overlaps: list[int] = []
        self._mutex = threading.Lock()

    def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
        contacts = [r.contact_id for r in rows if r.contact_id is not None]
        mine = set(contacts)
        with self._mutex:
            # Two rows of one contact in this batch, or one held by another call.
            self.overlaps += sorted(mine & self.in_flight)
            self.overlaps += [c for c in mine if contacts.count(c) > 1]
            self.in_flight |= mine
            self.seen.extend(rows)
        try:
            if self.pause:
                time.sleep(self.pause)
            if isinstance(self.answer, Exception):
                raise self.answer
            if callable(self.answer):
                return [self.answer(r) for r in rows]
            return [Delivered() for _ in rows]
        finally:
            with self._mutex:
                self.in_flight -= mine


def rows(store: Store) -> list[dict[str, object]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.id))]


def people(store: Store, n: int) -> list[int]:
    """n bare contacts (the outbox only needs their ids)."""
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        return [
            int(
                conn.execute(
                    insert(contacts_table)
                    .values(status=0, custom={}, created_at=now, updated_at=now)
                    .returning(contacts_table.c.id)
                ).scalar_one()
            )
            for _ in range(n)
        ]


def fill(store: Store, n: int, destination: str = "crm", contact: int | None = None) -> None:
    with store.engine.begin() as conn:
        for i in range(n):
            outbox.enqueue(conn, destination, "status", f"k{i}", contact, {"i": i})


def test_enqueue_is_insert_if_absent_in_the_callers_transaction(store: Store) -> None:
    with store.engine.begin() as conn:
        assert outbox.enqueue(conn, "crm", "status", "c1:won", None, {"v": 1}) is True
        assert outbox.enqueue(conn, "crm", "status", "c1:won", None, {"v": 2}) is False
        assert outbox.enqueue(conn, "ads", "status", "c1:won", None, {"v": 3}) is True
    with pytest.raises(RuntimeError), store.engine.begin() as conn:
        outbox.enqueue(conn, "crm", "status", "rolled-back", None, {})
        raise RuntimeError("the change failed")
    got = rows(store)
    assert [(r["destination"], r["key"], r["payload"]) for r in got] == [
        ("crm", "c1:won", {"v": 1}),
        ("ads", "c1:won", {"v": 3}),
    ]
    assert got[0]["attempts"] == 0 and got[0]["delivered_at"] is None


def test_the_same_key_after_delivery_or_death_is_a_new_effect(store: Store) -> None:
    """Won -> Lost -> Won: the second Won is pushed too (the first version dropped it)."""
    [c] = people(store, 1)
    with store.engine.begin() as conn:
        outbox.enqueue(conn, "crm", "status", f"{c}:won", c, {"status": "won"})
        outbox.enqueue(conn, "crm", "status", f"{c}:lost", c, {"status": "lost"})
    target = Recorder()
    assert outbox.deliver(store, [target]).delivered == 2
    with store.engine.begin() as conn:
        assert outbox.enqueue(conn, "crm", "status", f"{c}:won", c, {"status": "won"})
        assert not outbox.enqueue(conn, "crm", "status", f"{c}:won", c, {"status": "won"})
    outbox.deliver(store, [target])
    assert [r.payload["status"] for r in target.seen] == ["won", "lost", "won"]
    # A dead letter does not hold its key either.
    with store.engine.begin() as conn:
        outbox.enqueue(conn, "crm", "status", "gone", c, {})
    outbox.deliver(store, [Recorder(answer=lambda r: Failed("contact deleted"))])
    with store.engine.begin() as conn:
        assert outbox.enqueue(conn, "crm", "status", "gone", c, {})


def test_deliver_in_batches_marks_delivered(store: Store) -> None:
    fill(store, 7)
    target = Recorder()
    stats = outbox.deliver(store, [target], settings=OutboxConfig(batch=3))
    assert stats.delivered == 7
    assert sorted(r.payload["i"] for r in target.seen) == list(range(7))
    assert [r.attempts for r in target.seen] == [1] * 7  # counted before the call
    got = rows(store)
    assert all(r["delivered_at"] is not None and r["attempts"] == 1 for r in got)
    assert all(r["claimed_until"] is None and r["claimed_by"] is None for r in got)
    assert outbox.deliver(store, [target]).delivered == 0  # nothing due
    assert outbox.depth(store) == {}


class _Aborted(Exception):
    """What psycopg raises for a transaction PostgreSQL aborted (its SQLSTATE)."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"aborted: {sqlstate}")
        self.sqlstate = sqlstate


def test_a_record_round_postgres_aborts_runs_again_and_nothing_is_sent_twice(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from connector.sync import outbox as module

    fill(store, 5)
    taken = outbox.claim(store, "crm", OutboxConfig(batch=10))
    real, calls = module.lock, []

    def lock(conn: object, ids: list[int], wait: bool) -> set[int]:
        calls.append(list(ids))
        if len(calls) == 1:  # the first round loses a deadlock with an enqueue
            raise OperationalError("SELECT ... FOR UPDATE", {}, _Aborted("40P01"))
        return real(conn, ids, wait=wait)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "lock", lock)
    stats = outbox.record(store, taken, [Delivered()] * len(taken.rows))
    assert (stats.delivered, stats.stale) == (5, 0)
    assert len(calls) == 2 and calls[0] == calls[1]
    got = rows(store)
    assert all(r["delivered_at"] is not None and r["claimed_by"] is None for r in got)
    # Nothing is left leased to be claimed and delivered again.
    assert outbox.claim(store, "crm", OutboxConfig(batch=10)).rows == []


def test_a_record_error_that_is_not_a_lost_race_is_raised(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from connector.sync import outbox as module

    fill(store, 2)
    taken = outbox.claim(store, "crm", OutboxConfig(batch=10))

    def lock(conn: object, ids: list[int], wait: bool) -> set[int]:
        raise OperationalError("SELECT ... FOR UPDATE", {}, _Aborted("57014"))

    monkeypatch.setattr(module, "lock", lock)
    with pytest.raises(OperationalError):
        outbox.record(store, taken, [Delivered()] * len(taken.rows))


class Sized(Recorder):
    """A destination whose API takes at most `batch_size` rows a call."""

    batch_size = 4

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
        self.calls.append(len(rows))
        return super().deliver(rows)


def test_a_destination_is_handed_its_own_batch_unless_the_deployment_sets_one(
    store: Store,
) -> None:
    """Conversion Leads take 1,000 events a request while the outbox's default batch is
    100: the destination's `batch_size` decides, unless `outbox.batch` is set."""
    fill(store, 9)
    target = Sized()
    assert outbox.deliver(store, [target], settings=OutboxConfig()).delivered == 9
    assert target.calls == [4, 4, 1]
    fill(store, 9, destination="crm2")
    target = Sized()
    target.name = "crm2"
    assert outbox.deliver(store, [target], settings=OutboxConfig(batch=3)).delivered == 9
    assert target.calls == [3, 3, 3]


def test_retry_backs_off_with_jitter_and_failed_is_a_dead_letter(store: Store) -> None:
    fill(store, 3)

    def answer(row: OutboxRow) -> DeliveryResult:
        return {0: Delivered(), 1: Retry("429 throttled"), 2: Failed("contact deleted")}[
            row.payload["i"]
        ]

    before = datetime.now(UTC)
    stats = outbox.deliver(store, [Recorder(answer=answer)])
    after = datetime.now(UTC)
    assert (stats.delivered, stats.retried, stats.failed) == (1, 1, 1)
    _, retried, failed = rows(store)
    assert retried["attempts"] == 1 and retried["last_error"] == "429 throttled"
    assert isinstance(retried["available_at"], datetime)
    wait = outbox.backoff(1)
    assert before + timedelta(seconds=wait / 2) <= retried["available_at"]
    assert retried["available_at"] <= after + timedelta(seconds=wait)
    assert failed["dead_at"] is not None and failed["last_error"] == "contact deleted"
    depth = outbox.depth(store)
    assert depth["crm"]["pending"] == 1 and depth["crm"]["failed"] == 1
    # Not due yet; due later: attempt two, and a Failed row is never claimed again.
    assert outbox.deliver(store, [Recorder(answer=answer)]).retried == 0
    later = datetime.now(UTC) + timedelta(seconds=wait + 1)
    again = Recorder(answer=lambda r: Retry("again", after=5))
    outbox.deliver_batch(store, again, now=later)
    assert [r.payload["i"] for r in again.seen] == [1]
    assert rows(store)[1]["attempts"] == 2


def test_attempts_run_out_into_a_dead_letter_that_keeps_the_error(store: Store) -> None:
    fill(store, 1)
    settings = OutboxConfig(max_attempts=3)
    now = datetime.now(UTC)
    for n in range(1, 4):
        claimed, stats = outbox.deliver_batch(
            store,
            Recorder(answer=lambda r: Retry(f"503 attempt {r.attempts}", after=1)),
            settings,
            now=now + timedelta(seconds=10 * n),
        )
        assert claimed == 1
        assert (stats.retried, stats.failed) == ((1, 0) if n < 3 else (0, 1))
    [row] = rows(store)
    assert row["attempts"] == 3 and row["dead_at"] is not None
    assert row["last_error"] == "gave up after 3 attempts: 503 attempt 3"
    assert outbox.deliver_batch(store, Recorder(), settings, now=now + timedelta(days=1))[0] == 0


def test_backoff_is_exponential_capped_and_jittered() -> None:
    assert [outbox.backoff(n) for n in (1, 2, 3)] == [30, 60, 120]
    assert outbox.backoff(50) == outbox.DEFAULTS.backoff_cap
    waits = [outbox.jittered(3) for _ in range(200)]
    assert all(60 <= w <= 120 for w in waits)
    assert len(set(waits)) > 100  # not one value for every row that failed together


def test_a_destination_that_raises_retries_the_batch(store: Store) -> None:
    fill(store, 2)
    stats = outbox.deliver(store, [Recorder(answer=ConnectionError("reset"))])
    assert stats.retried == 2
    assert all(r["last_error"] == "ConnectionError: reset" for r in rows(store))


def test_one_row_per_contact_at_a_time_in_id_order(store: Store) -> None:
    a, b = people(store, 2)
    with store.engine.begin() as conn:
        for i, contact in enumerate([a, a, b, a, b, None, None]):
            outbox.enqueue(conn, "crm", "status", f"k{i}", contact, {"i": i})
    first = outbox.claim(store, "crm")
    # a's first row, b's first row, and both rows without a contact (unordered).
    assert [r.payload["i"] for r in first.rows] == [0, 2, 5, 6]
    assert outbox.claim(store, "crm").rows == []  # the rest wait behind leased rows
    outbox.record(store, first, [Retry("busy", after=60)] + [Delivered()] * 3)
    # a's row 0 backs off: a's later rows still wait; b moves on.
    assert [r.payload["i"] for r in outbox.claim(store, "crm").rows] == [4]
    # A dead letter does not hold its contact back.
    later = datetime.now(UTC) + timedelta(seconds=61)
    again = outbox.claim(store, "crm", now=later)
    assert [r.payload["i"] for r in again.rows] == [0]
    outbox.record(store, again, [Failed("rejected")])
    assert [r.payload["i"] for r in outbox.claim(store, "crm", now=later).rows] == [1]


def test_an_expired_lease_is_claimed_again_with_its_attempt_counted(store: Store) -> None:
    fill(store, 1)
    settings = OutboxConfig(lease_seconds=60)
    now = datetime.now(UTC)
    dead = outbox.claim(store, "crm", settings, replica="host:1", now=now)  # then it dies
    assert [r.attempts for r in dead.rows] == [1]
    assert outbox.claim(store, "crm", settings, now=now + timedelta(seconds=59)).rows == []
    took = outbox.claim(store, "crm", settings, replica="host:2", now=now + timedelta(seconds=61))
    assert [r.attempts for r in took.rows] == [2]
    [row] = rows(store)
    assert row["claimed_by"] == took.owner
    assert row["last_error"] == f"attempt 1 left no result (claimed by {dead.owner})"
    # The first claimer comes back late: its failure changes nothing, the lease is not
    # its own; the second claimer's result counts.
    assert outbox.record(store, dead, [Retry("timeout")]).stale == 1
    assert rows(store)[0]["claimed_by"] == took.owner
    assert outbox.record(store, took, [Delivered()]).delivered == 1
    assert rows(store)[0]["delivered_at"] is not None


def test_a_row_whose_delivery_never_reports_ends_dead(store: Store) -> None:
    """A row that kills its claimer every time: attempts are counted at the claim, so
    after max_attempts abandoned leases it is a dead letter, not claimed again; and a
    row left without a result is claimed alone, so its batch companions are delivered
    instead of dying with it."""
    fill(store, 3)  # k1 is the poison
    settings = OutboxConfig(max_attempts=3, lease_seconds=1)
    t0 = datetime.now(UTC)

    def claim(seconds: float) -> outbox.Claim:
        return outbox.claim(store, "crm", settings, now=t0 + timedelta(seconds=seconds))

    assert [r.attempts for r in claim(0).rows] == [1, 1, 1]  # then the process dies
    for key in ("k0", "k1", "k2"):
        taken = claim(2)
        assert [(r.key, r.attempts) for r in taken.rows] == [(key, 2)]
        if key != "k1":
            outbox.record(store, taken, [Delivered()])
    assert [(r.key, r.attempts) for r in claim(4).rows] == [("k1", 3)]  # dies again
    assert claim(6).rows == []
    got = {str(r["key"]): r for r in rows(store)}
    assert got["k0"]["delivered_at"] and got["k2"]["delivered_at"]
    poison = got["k1"]
    assert poison["dead_at"] is not None and poison["attempts"] == 3
    assert str(poison["last_error"]).startswith("attempt 3 of 3 left no result")
    assert "attempt 2 left no result" in str(poison["last_error"])  # the one before
    assert outbox.depth(store)["crm"]["failed"] == 1


def test_concurrent_claimers_keep_each_contacts_order(store_url: str) -> None:
    """Four claimers (threads, each with its own store: its own connections) take rows of
    20 contacts side by side; no contact ever has two rows at the destination at once,
    each contact's rows arrive in id order, and every row arrives exactly once."""
    stores = [open_store(store_url, Catalogue.default(), upgrade=True) for _ in range(4)]
    ids = people(stores[0], 20)
    rng = random.Random(7)  # neighbours share contacts, in and across claims
    with stores[0].engine.begin() as conn:
        for i in range(200):
            contact = rng.choice(ids)
            outbox.enqueue(conn, "crm", "status", f"k{i}", contact, {"i": i})
    target = Recorder(pause=0.005)
    start = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def worker(store: Store) -> None:
        try:
            start.wait()
            for _ in range(400):
                claimed, _stats = outbox.deliver_batch(store, target, OutboxConfig(batch=5))
                if not claimed and not outbox.depth(store):
                    return
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert target.overlaps == []
    seen = [r.id for r in target.seen]
    assert len(seen) == len(set(seen)) == 200
    by_contact: dict[int | None, list[int]] = {}
    for r in target.seen:
        by_contact.setdefault(r.contact_id, []).append(r.id)
    assert all(got == sorted(got) for got in by_contact.values())
    assert all(r["delivered_at"] is not None and r["attempts"] == 1 for r in rows(stores[0]))
    for s in stores:
        s.close()


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_concurrent_deliverers_never_deliver_a_row_twice(store_url: str) -> None:
    stores = [open_store(store_url, Catalogue.default(), upgrade=True) for _ in range(3)]
    fill(stores[0], 300)
    target = Recorder(pause=0.01)
    start = threading.Barrier(3)

    def worker(store: Store) -> None:
        start.wait()
        outbox.deliver(store, [target], settings=OutboxConfig(batch=20))

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
    config = LeadsyncConfig(outbox=OutboxConfig(batch=2))
    d = Daemon(config, store, {"crm": WithDestination()})  # type: ignore[dict-item]
    assert [j.id for j in d.jobs()] == [OUTBOX_JOB]
    assert d.run_once() == 0
    assert len(target.seen) == 3 and outbox.depth(store) == {}
    assert {str(r["key"]): r["attempts"] for r in rows(store)} == {"k0": 1, "k1": 1, "k2": 1}
    assert Daemon(LeadsyncConfig(), store, {}).jobs() == []  # no destination, no job


def test_no_lock_is_held_while_a_destination_is_called(store: Store) -> None:
    """While a destination is called, another claimer finds the leased rows taken, and
    the store takes writes to the very rows being delivered (no transaction is open and
    no row is locked across the call, on either store)."""
    fill(store, 2)
    nested: list[int] = []

    class Reentrant:
        name = "crm"

        def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
            with store.engine.begin() as conn:
                outbox.enqueue(conn, "audit", "note", f"n{len(nested)}", None, {})
                # A row lock held by the claim would make this wait forever on PostgreSQL.
                conn.execute(table.update().where(table.c.id == rows[0].id).values(kind="status"))
            claimed, _ = outbox.deliver_batch(store, Recorder())
            nested.append(claimed)
            return [Delivered() for _ in rows]

    assert outbox.deliver(store, [Reentrant()]).delivered == 2
    assert nested == [0]
    assert outbox.depth(store) == {
        "audit": {"pending": 1, "oldest_age": pytest.approx(0, abs=60), "failed": 0}
    }


def test_migration_0007_turns_failed_rows_into_dead_letters(store_url: str) -> None:
    from alembic import command
    from sqlalchemy import column
    from sqlalchemy import table as sql_table

    from connector.store.engine import _alembic, make_engine
    from connector.store.tables import Json, UTCDateTime

    first = sql_table(  # the outbox as revision 0002 made it
        "outbox",
        *(column(name) for name in ("destination", "kind", "key", "attempts", "last_error")),
        column("payload", Json),
        column("created_at", UTCDateTime()),
        column("available_at", UTCDateTime()),
    )
    open_store(store_url, Catalogue.default(), upgrade=True).close()
    engine = make_engine(store_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        command.downgrade(_alembic(conn), "0007-1")  # the revision before 0007
        row = {"destination": "crm", "kind": "s", "payload": {}, "created_at": now}
        conn.execute(
            insert(first),
            [
                {**row, "key": "a", "attempts": 3, "last_error": "failed: no such contact",
                 "available_at": datetime(9999, 1, 1, tzinfo=UTC)},
                {**row, "key": "b", "attempts": 0, "last_error": None, "available_at": now},
            ],
        )  # fmt: skip
        command.upgrade(_alembic(conn), "head")
    engine.dispose()
    store = open_store(store_url, Catalogue.default())
    got = {str(r["key"]): r for r in rows(store)}
    assert got["a"]["dead_at"] is not None and got["a"]["last_error"] == "failed: no such contact"
    assert got["b"]["dead_at"] is None and got["b"]["delivered_at"] is None
    assert outbox.depth(store)["crm"]["pending"] == 1
    assert outbox.depth(store)["crm"]["failed"] == 1
    store.close()


def test_migration_0013_flags_the_heads_of_a_waiting_backlog(store_url: str) -> None:
    """Rows written before 0013 (no head flags) are claimed in order after it: the first
    pending row of each contact, and every row without one, head."""
    from alembic import command
    from sqlalchemy import column
    from sqlalchemy import table as sql_table

    from connector.store.engine import _alembic, make_engine
    from connector.store.tables import Json, UTCDateTime

    before = sql_table(  # the outbox as revision 0012 left it
        "outbox",
        *(column(name) for name in ("destination", "kind", "key", "attempts", "contact_id")),
        column("payload", Json),
        column("created_at", UTCDateTime()),
        column("available_at", UTCDateTime()),
        column("delivered_at", UTCDateTime()),
    )
    store = open_store(store_url, Catalogue.default(), upgrade=True)
    a, b = people(store, 2)
    store.close()
    engine = make_engine(store_url)
    now = datetime.now(UTC)
    row = {"destination": "crm", "kind": "s", "payload": {}, "created_at": now,
           "available_at": now, "attempts": 0, "delivered_at": None}  # fmt: skip
    with engine.begin() as conn:
        command.downgrade(_alembic(conn), "0012")
        conn.execute(
            insert(before),
            [
                {**row, "key": "a0", "contact_id": a, "delivered_at": now},  # delivered
                {**row, "key": "a1", "contact_id": a},
                {**row, "key": "b0", "contact_id": b},
                {**row, "key": "a2", "contact_id": a},
                {**row, "key": "n0", "contact_id": None},
                {**row, "key": "b1", "contact_id": b},
            ],
        )
        command.upgrade(_alembic(conn), "head")
    engine.dispose()
    store = open_store(store_url, Catalogue.default())
    heads = {str(r["key"]) for r in rows(store) if r["head"] and r["delivered_at"] is None}
    assert heads == {"a1", "b0", "n0"}
    target = Recorder()
    assert outbox.deliver(store, [target]).delivered == 5
    assert [r.key for r in target.seen] == ["a1", "b0", "n0", "a2", "b1"]
    store.close()
