"""The change feed: every path that changes a contact emits its events in its own
transaction, and what subscribers write rolls back with it (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

import pytest
from sqlalchemy import Connection

from connector.statuses import QUALIFIED, UNKNOWN, Catalogue
from connector.store import Store, open_store
from connector.store import contacts as cs
from connector.store.tables import contacts, outbox, system_links
from connector.sync import changes, events, links
from connector.sync.outbox import enqueue
from tests.contract.test_store import count, ingest, lead
from tests.sync.helpers import connected, rows

Seen = list[changes.Event]


@pytest.fixture
def seen(store: Store) -> Iterator[Seen]:
    got: Seen = []

    def record(conn: Connection, batch: Sequence[changes.Event], now: datetime) -> None:
        got.extend(batch)

    changes.subscribe(store.engine, "test", record)
    yield got
    changes.unsubscribe(store.engine, "test")


def kinds(found: Seen) -> list[str]:
    return [type(e).__name__ for e in found]


def test_ingest_emits_created_status_attributes_and_merges(store: Store, seen: Seen) -> None:
    ingest(store, lead("1", email="a@example.com"), lead("2", phone="+60123456789"))
    assert kinds(seen) == ["ContactCreated", "ContactCreated", "StatusChanged", "StatusChanged"]
    created = [e for e in seen if isinstance(e, changes.ContactCreated)]
    assert {e.origin for e in created} == {"source:test"}
    assert created[0].lead["source_id"]
    new = [e for e in seen if isinstance(e, changes.StatusChanged)]
    assert all(e.from_status is None and e.history_id > 0 for e in new)
    seen.clear()
    # One record joins both: a merge, the survivor's attributes, and a status move.
    ingest(
        store,
        lead("3", email="a@example.com", phone="+60123456789", city="Ipoh", status=QUALIFIED),
    )
    assert "Merged" in kinds(seen) and "AttributesChanged" in kinds(seen)
    [moved] = [e for e in seen if isinstance(e, changes.StatusChanged)]
    assert (moved.to_status, moved.origin) == (QUALIFIED, "source:test")


def test_nobody_listening_builds_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> list[changes.Event]:
        raise AssertionError("events built with no subscriber")

    monkeypatch.setattr(events, "from_plan", boom)
    ingest(store, lead("1", email="a@example.com"))
    assert count(store, contacts) == 1


def test_person_edits_emit(store: Store, seen: Seen) -> None:
    ingest(store, lead("1", email="a@example.com"), lead("2", email="b@example.com"))
    a, b = sorted(c["id"] for c in cs.list_contacts(store)[1])
    seen.clear()
    cs.set_status(store, a, "Qualified", "ops")
    [moved] = seen
    assert isinstance(moved, changes.StatusChanged)
    assert (moved.origin, moved.rule, moved.actor, moved.to_status) == (
        "person", "person", "ops", QUALIFIED,
    )  # fmt: skip
    cs.merge_contacts(store, a, b, "ops")
    assert isinstance(seen[-1], changes.Merged) and seen[-1].survivor == a
    cs.unmerge(store, b, "ops")
    assert isinstance(seen[-1], changes.Unmerged) and seen[-1].restored == b


def test_a_deleted_status_moves_contacts_to_unknown_through_the_feed(store_url: str) -> None:
    first = open_store(store_url, Catalogue.default(), upgrade=True)
    ingest(first, lead("1", email="a@example.com", status=QUALIFIED))
    first.close()
    got: Seen = []
    changes.subscribe(None, "test", lambda conn, batch, now: got.extend(batch))
    try:
        again = open_store(store_url, Catalogue.build(deleted=[QUALIFIED]), upgrade=True)
        again.close()
    finally:
        changes.unsubscribe(None, "test")
    moved, deleted = got
    assert isinstance(moved, changes.StatusChanged) and moved.to_status == UNKNOWN
    assert moved.rule == "status-deleted"
    assert isinstance(deleted, changes.StatusDeleted) and deleted.status_id == QUALIFIED


def test_a_rolled_back_change_leaves_no_event_effect(store: Store) -> None:
    def effect(conn: Connection, batch: Sequence[changes.Event], now: datetime) -> None:
        enqueue(conn, "crm", "test", f"t:{id(batch)}", None, {"n": len(batch)}, now)

    def fail(conn: Connection, batch: Sequence[changes.Event], now: datetime) -> None:
        raise RuntimeError("subscriber failed")

    changes.subscribe(store.engine, "effect", effect)
    changes.subscribe(store.engine, "fail", fail)
    try:
        with pytest.raises(RuntimeError):
            ingest(store, lead("1", email="a@example.com"))
        assert count(store, contacts) == 0 and count(store, outbox) == 0
        changes.unsubscribe(store.engine, "fail")
        ingest(store, lead("1", email="a@example.com"))
        [contact] = cs.list_contacts(store)[1]
        changes.subscribe(store.engine, "fail", fail)
        with pytest.raises(RuntimeError):
            cs.set_status(store, contact["id"], "Won", "ops")
        assert cs.show_contact(store, contact["id"])["status_name"] == "New"
        assert count(store, outbox) == 1  # the ingest's, committed before
    finally:
        changes.unsubscribe(store.engine, "effect")
        changes.unsubscribe(store.engine, "fail")


def test_links_follow_merges_and_unmerges(store: Store) -> None:
    for _ in connected(store):
        ingest(store, lead("1", email="a@example.com"), lead("2", email="b@example.com"))
        a, b = sorted(c["id"] for c in cs.list_contacts(store)[1])
        with store.engine.begin() as conn:
            links.link(conn, "crm", "h-a", a)
            links.link(conn, "crm", "h-b", b)
            links.link(conn, "crm", "h-b", a)  # idempotent: keeps its contact
        cs.merge_contacts(store, a, b, "ops")
        with store.engine.connect() as conn:
            assert links.find(conn, "crm", "h-b") == a
            assert links.external_ids(conn, "crm", a) == ["h-a", "h-b"]
        # The merged contact's status goes to the record that came with the absorbed one.
        pushed = [r for r in rows(store, "crm") if r.key.startswith("status:merge:")]
        assert [r.payload["external_ids"] for r in pushed] == [["h-a", "h-b"]]
        cs.unmerge(store, b, "ops")
        with store.engine.connect() as conn:
            assert links.find(conn, "crm", "h-b") == b
            assert links.external_ids(conn, "crm", a) == ["h-a"]
        assert count(store, system_links) == 2
