"""The checks every two-way system passes (DESIGN.md "Tests": echo suppression), as
plain functions of an adapter's `connector.sdk.StatusCase` and a store whose fan-out
connects the case's system and a second system, `OTHER` (no destination: its outbox
rows are only counted). test_contract_bites.py shows each failing on a system broken
on purpose. An `AssertionError` is a broken contract.

Why the store "moves on" in one check: when the echo comes back while the store still
has the status we wrote, the engine calls it "unchanged" whether or not it knows the
value is ours. The echo only matters when the store has changed since the write and
the system then shows our older value as if a person had just typed it (a sheet keeps
no time per cell, so its value is dated when it is read): taken, it would undo the
newer change and fan the undo out to every other system.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from connector.sdk import StatusCase
from connector.store import Store
from connector.store import contacts as contact_store
from connector.store.tables import outbox, status_history, system_links
from connector.sync import links
from connector.sync import outbox as ob
from connector.sync.status import set_by_person

OTHER = "contract-other"
ACTOR = "contract@example.com"


def linked(case: StatusCase, store: Store) -> tuple[str, int]:
    """The first of the case's records, pulled into the store: (external id, contact)."""
    case.pull(store)
    with store.engine.connect() as conn:
        row = conn.execute(
            select(system_links.c.external_id)
            .where(system_links.c.system == case.name)
            .order_by(system_links.c.external_id)
        ).first()
        assert row is not None, f"{case.name}: the pull linked none of its records"
        contact = links.find(conn, case.name, row.external_id)
    assert contact is not None
    return str(row.external_id), contact


def status(store: Store, contact: int) -> str:
    return str(contact_store.show_contact(store, contact)["status_name"])


def history(store: Store, contact: int) -> list[Any]:
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                select(status_history)
                .where(status_history.c.contact_id == contact)
                .order_by(status_history.c.id)
            )
        )


def outbox_rows(store: Store, destination: str) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(outbox).where(outbox.c.destination == destination)
            ).scalar_one()
        )


def push(case: StatusCase, store: Store) -> int:
    """Deliver every due outbox row of the case's system through its push."""
    return ob.deliver(store, [case.system(store)]).delivered


def set_and_push(case: StatusCase, store: Store, contact: int, to: str) -> None:
    set_by_person(store, contact, to, ACTOR)
    assert push(case, store) >= 1, f"{case.name}: the push delivered nothing"


def a_push_writes_the_status_and_records_it(case: StatusCase, store: Store) -> None:
    """What the push writes reaches the system, and is remembered in system_links as
    the last value written (what the engine's echo check reads)."""
    external_id, contact = linked(case, store)
    set_and_push(case, store, contact, "Qualified")
    word = case.word("Qualified")
    assert word is not None and case.shown(external_id) == word
    with store.engine.connect() as conn:
        link = links.many(conn, case.name, [external_id])[external_id]
    assert (link.last_written_value or "").casefold() == word.casefold()


def our_own_write_coming_back_is_dropped(case: StatusCase, store: Store) -> None:
    """Our write read back, while the store still has it, is nothing: no history row,
    no outbox row anywhere. Read back after the store moved on, it is not taken: the
    store keeps the newer status and nothing fans out to the other systems."""
    external_id, contact = linked(case, store)
    set_and_push(case, store, contact, "Qualified")
    before, others = len(history(store, contact)), outbox_rows(store, OTHER)
    mine = outbox_rows(store, case.name)
    case.pull(store)
    assert len(history(store, contact)) == before
    assert (outbox_rows(store, OTHER), outbox_rows(store, case.name)) == (others, mine)
    assert status(store, contact) == "Qualified"

    set_and_push(case, store, contact, "Negotiating")
    set_by_person(store, contact, "Reach", ACTOR)  # moved on; not pushed yet
    before, others = len(history(store, contact)), outbox_rows(store, OTHER)
    assert case.shown(external_id) == case.word("Negotiating")
    case.pull(store)  # shows "Negotiating": our write, now older than the store
    now = status(store, contact)
    assert now == "Reach", f"{case.name}: our own write was taken back: {now}, not Reach"
    taken = [h for h in history(store, contact)[before:] if h.accepted]
    assert taken == [], f"{case.name}: our own write was taken back as a change: {taken}"
    assert outbox_rows(store, OTHER) == others


def a_change_made_there_after_our_write_is_taken(case: StatusCase, store: Store) -> None:
    """A person's change in the system after our write is accepted (origin: the
    system), fans out to the other systems, and is not written back to its own."""
    external_id, contact = linked(case, store)
    set_and_push(case, store, contact, "Qualified")
    case.pull(store)  # our echo, dropped
    before, others = len(history(store, contact)), outbox_rows(store, OTHER)
    mine = outbox_rows(store, case.name)
    case.set_there(external_id, "Negotiating")
    case.pull(store)
    assert status(store, contact) == "Negotiating"
    [change] = history(store, contact)[before:]
    assert change.accepted and change.origin == case.name
    assert outbox_rows(store, OTHER) == others + 1
    assert outbox_rows(store, case.name) == mine


def a_throttled_push_loses_nothing(case: StatusCase, store: Store) -> None:
    """Under the system's own throttle answer the push delivers nothing and fails
    nothing (the rows wait); once it lifts, the status arrives."""
    external_id, contact = linked(case, store)
    served = case.throttle()
    if served is None:
        pytest.skip(f"{case.name} has no limit to throttle its push")
    set_by_person(store, contact, "Qualified", ACTOR)
    stats = ob.deliver(store, [case.system(store)])
    assert served() >= 1  # the system really answered with its throttle
    assert (stats.delivered, stats.failed) == (0, 0)
    case.lift()
    # The rows come due after the wait the throttle named (or the outbox's backoff).
    later = datetime.now(UTC) + timedelta(hours=1)
    _, after = ob.deliver_batch(store, case.system(store), now=later)
    assert after.delivered >= 1
    assert case.shown(external_id) == case.word("Qualified")
