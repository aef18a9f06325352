"""The outbox's order guarantee under random interleavings, on both stores.

Random programs of enqueue / claim / record (Delivered, Retry, Failed) / abandon (the
claimer dies and its lease runs out) / dismiss / time passing, applied to the real store
with a virtual clock. After every claim: its rows are due and pending, no row of a
contact is claimed while an earlier row of the same (destination, contact) is pending,
no two rows of a contact are under live leases at once, and when some row is claimable
the claim takes something. At the end everything not dead is delivered: no contact is
left stuck behind a head that is not there (what the head flags must never cause).

And a race, with threads: enqueuers adding rows to a few busy contacts while
deliverers deliver them, so `record` moves a contact's head while an enqueue of the same
contact is deciding whether its row heads it.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from connector.config import OutboxConfig
from connector.ports import Delivered, DeliveryResult, Failed, OutboxRow, Retry
from connector.statuses import Catalogue
from connector.store import Store, open_store
from connector.store.tables import outbox as table
from connector.sync import outbox, outbox_admin
from tests.runtime.test_outbox import people

SETTINGS = OutboxConfig(lease_seconds=60, max_attempts=3, batch=4)

enqueue_op = st.tuples(
    st.just("enqueue"), st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=1, max_size=4)
)
claim_op = st.tuples(st.just("claim"), st.integers(1, 5))
result = st.sampled_from(["delivered", "retry", "retry-now", "failed", "none"])
record_op = st.tuples(st.just("record"), st.integers(0, 3), st.lists(result, max_size=5))
abandon_op = st.tuples(st.just("abandon"), st.integers(0, 3))
dismiss_op = st.tuples(st.just("dismiss"), st.integers(0, 50))
wait_op = st.tuples(st.just("wait"), st.sampled_from([1, 30, 61, 400]))
program = st.lists(
    st.one_of(enqueue_op, claim_op, record_op, abandon_op, dismiss_op, wait_op),
    min_size=1,
    max_size=40,
)


def state(store: Store, destination: str) -> dict[int, Any]:
    with store.engine.connect() as conn:
        found = conn.execute(select(table).where(table.c.destination == destination))
        return {r.id: r for r in found}


def pending(r: Any) -> bool:
    return r.delivered_at is None and r.dead_at is None


def claimable(rows: dict[int, Any], now: datetime) -> set[int]:
    """What a claim may take at `now`: rows that are due, not under a live lease, with
    no earlier pending row of their contact, and attempts left."""
    # The claim first buries rows whose last attempt left no result: they hold nothing.
    buried = {
        r.id
        for r in rows.values()
        if pending(r)
        and r.claimed_until is not None
        and r.claimed_until < now
        and r.attempts >= SETTINGS.max_attempts
    }
    first: dict[int, int] = {}
    for r in sorted(rows.values(), key=lambda r: r.id):
        if pending(r) and r.id not in buried and r.contact_id is not None:
            first.setdefault(r.contact_id, r.id)
    return {
        r.id
        for r in rows.values()
        if pending(r)
        and r.id not in buried
        and r.available_at <= now
        and (r.claimed_until is None or r.claimed_until < now)
        and (r.contact_id is None or first[r.contact_id] == r.id)
    }


def answer(name: str) -> DeliveryResult:
    if name == "delivered":
        return Delivered()
    if name == "retry":
        return Retry("busy")
    if name == "retry-now":
        return Retry("busy", after=0)
    return Failed("rejected")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=program)
def test_random_interleavings_keep_each_contacts_order(store: Store, steps: list[Any]) -> None:
    destination = f"d{uuid.uuid4().hex[:8]}"  # each example on rows of its own
    contacts = people(store, 4)
    clock = datetime.now(UTC)
    claims: list[outbox.Claim] = []  # claimers alive, that may still record
    every: list[outbox.Claim] = []  # and the dead ones too, whose leases still hold
    n = 0
    for step in steps:
        kind = step[0]
        if kind == "enqueue":
            effects = []
            for who in step[1]:
                contact = None if who is None else contacts[who]
                effects.append((destination, "t", f"k{n}", contact, {"n": n}))
                n += 1
            with store.engine.begin() as conn:
                outbox.enqueue_many(conn, effects, now=clock)
        elif kind == "claim":
            before = state(store, destination)
            expected = claimable(before, clock)
            taken = outbox.claim(
                store, destination, SETTINGS.model_copy(update={"batch": step[1]}), now=clock
            )
            got = {r.id for r in taken.rows}
            assert got <= expected, (got, expected)
            assert bool(got) == bool(expected), "a claimable row was not claimed"
            assert len(got) <= step[1]
            contact_ids = [r.contact_id for r in taken.rows if r.contact_id is not None]
            assert len(contact_ids) == len(set(contact_ids)), "two rows of a contact at once"
            claims.append(taken)
            every.append(taken)
            live = [r for c in every if c.until > clock for r in c.rows]
            by_contact: dict[int, set[int]] = {}
            for r in live:
                if r.contact_id is not None:
                    by_contact.setdefault(r.contact_id, set()).add(r.id)
            assert all(len(ids) == 1 for ids in by_contact.values()), by_contact
        elif kind == "record" and claims:
            taken = claims.pop(step[1] % len(claims))
            every.remove(taken)  # recorded: its rows are no longer held
            names = (step[2] + ["delivered"] * len(taken.rows))[: len(taken.rows)]
            results = [answer(a) for a in names if a != "none"]
            outbox.record(store, taken, results, SETTINGS, now=clock)
        elif kind == "abandon" and claims:
            claims.pop(step[1] % len(claims))  # its claimer died: the lease runs out
        elif kind == "dismiss":
            ids = sorted(state(store, destination))
            if ids:
                outbox_admin.dismiss(store, [ids[step[1] % len(ids)]], now=clock)
        elif kind == "wait":
            clock += timedelta(seconds=step[1])
    # Quiescence: every claimer gone, time passes; everything not dead is delivered.
    for _ in range(200):
        clock += timedelta(seconds=SETTINGS.backoff_cap + SETTINGS.lease_seconds + 1)
        taken = outbox.claim(store, destination, SETTINGS, now=clock)
        if not taken.rows:
            break
        outbox.record(store, taken, [Delivered()] * len(taken.rows), SETTINGS, now=clock)
    final = state(store, destination)
    stuck = [r.id for r in final.values() if pending(r)]
    assert stuck == [], f"rows left pending with nothing ahead of them: {stuck}"


class Ordered:
    """A destination that checks, as it goes, that each contact's rows arrive in id
    order and never two at once."""

    name = "race"

    def __init__(self) -> None:
        self.last: dict[int, int] = {}
        self.seen: list[int] = []
        self.errors: list[str] = []
        self.mutex = threading.Lock()

    def deliver(self, rows: Sequence[OutboxRow]) -> Sequence[DeliveryResult]:
        with self.mutex:
            for r in rows:
                assert r.contact_id is not None
                if self.last.get(r.contact_id, 0) >= r.id:
                    self.errors.append(f"contact {r.contact_id}: {r.id} after {self.last}")
                self.last[r.contact_id] = r.id
                self.seen.append(r.id)
        return [Delivered() for _ in rows]


def test_enqueues_racing_deliveries_lose_no_head(store_url: str) -> None:
    """Two enqueuers write rows for 5 busy contacts (several per transaction, in random
    contact order) while two deliverers deliver: each delivery moves its contact's head
    while an enqueue of that contact may be deciding whether its own row heads. At the
    end every row is delivered once, in order per contact."""
    stores = [open_store(store_url, Catalogue.default(), upgrade=True) for _ in range(4)]
    contacts = people(stores[0], 5)
    target = Ordered()
    writing = threading.Event()
    writing.set()
    errors: list[BaseException] = []
    per_writer = 60

    def enqueuer(store: Store, me: int) -> None:
        rng = random.Random(me)
        try:
            for i in range(per_writer):
                with store.engine.begin() as conn:
                    for c in rng.sample(contacts, 3):
                        outbox.enqueue(conn, "race", "t", f"w{me}-{i}-{c}", c, {})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def deliverer(store: Store) -> None:
        try:
            quiet = 0  # claims in a row that found nothing after the writers stopped
            while writing.is_set() or (
                quiet < 50 and outbox.depth(store).get("race", {}).get("pending")
            ):
                claimed, _ = outbox.deliver_batch(store, target, OutboxConfig(batch=3))
                quiet = 0 if claimed or writing.is_set() else quiet + 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    writers = [threading.Thread(target=enqueuer, args=(stores[i], i)) for i in range(2)]
    readers = [
        threading.Thread(target=deliverer, args=(stores[2 + i],), daemon=True) for i in range(2)
    ]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join(300)
    writing.clear()
    for t in readers:
        t.join(120)
    assert not errors, errors
    assert not any(t.is_alive() for t in readers)
    assert target.errors == []
    left = [r.id for r in state(stores[0], "race").values() if pending(r)]
    assert left == [], f"rows no claim takes (a lost head): {left}"
    assert len(target.seen) == len(set(target.seen)) == 2 * per_writer * 3
    for s in stores:
        s.close()
