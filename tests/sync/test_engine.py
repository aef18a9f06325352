"""The status engine's decisions, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector.config import SyncConfig
from connector.store import Store
from connector.store import contacts as cs
from connector.sync import links, status
from tests.contract.test_store import ingest, lead
from tests.sync.helpers import CRM, connected, history, obs, rows


@pytest.fixture
def hub(store: Store) -> Iterator[Store]:
    yield from (store for _ in connected(store))


def one(store: Store, email: str = "ana@example.com") -> int:
    ingest(store, lead("1", email=email, first_name="Ana"))
    [row] = cs.list_contacts(store)[1]
    return int(row["id"])


def observe(store: Store, *observations: object) -> list[status.Decision]:
    with store.engine.begin() as conn:
        return status.observe(conn, observations, CRM, now=obs("x", None, 10_000).changed_at)  # type: ignore[arg-type]


def test_a_person_in_the_crm_moves_the_contact_and_it_fans_out(hub: Store) -> None:
    contact = one(hub)
    [created_crm] = rows(hub, "crm")
    assert created_crm.kind == "contact" and created_crm.payload["status"] == "New"
    [d] = observe(hub, obs("h1", "CONNECTED", 100, email="ANA@example.com"))
    assert (d.accepted, d.rule, d.contact_id, d.status, d.previous) == (
        True, "newest", contact, "Qualified", "New",
    )  # fmt: skip
    assert cs.show_contact(hub, contact)["status_name"] == "Qualified"
    # Fan-out to the sheet, never back to the CRM it came from.
    sheet = [r for r in rows(hub, "sheet") if r.kind == "status"]
    assert [r.payload["status"] for r in sheet] == ["Qualified"]
    assert sheet[0].key == f"status:{d.history_id}"
    assert [r.kind for r in rows(hub, "crm")] == ["contact"]
    last = history(hub, contact)[-1]
    assert (last.origin, last.actor, last.rule, last.losing, last.value, last.accepted) == (
        "crm", "u1", "newest", "New", "CONNECTED", True,
    )  # fmt: skip
    with hub.engine.connect() as conn:
        assert links.find(conn, "crm", "h1") == contact


def test_our_own_write_coming_back_is_an_echo(hub: Store) -> None:
    contact = one(hub)
    cs_decision = status.set_by_person(hub, contact, "Qualified", "ops")
    assert cs_decision.accepted and cs_decision.rule == "person"
    [push] = [r for r in rows(hub, "crm") if r.kind == "status"]
    assert push.payload["status"] == "Qualified"
    with hub.engine.begin() as conn:
        links.record_written(
            conn, "crm", contact, "h1", "CONNECTED", obs("h1", None, 50).changed_at
        )
    before = len(history(hub, contact))
    [d] = observe(hub, obs("h1", "CONNECTED", 60, by_person=False))
    assert d.rule == "echo" and d.history_id is None
    assert len(history(hub, contact)) == before
    assert len(rows(hub)) == 4  # contact and status, to each system: the echo sent nothing


def test_automation_never_lowers_rank_and_the_store_status_is_pushed_back(hub: Store) -> None:
    contact = one(hub)
    observe(hub, obs("h1", "CONNECTED", 100, email="ana@example.com"))
    [d] = observe(hub, obs("h1", "OPEN", 200, by_person=False))
    assert (d.accepted, d.rule) == (False, "rank")
    assert cs.show_contact(hub, contact)["status_name"] == "Qualified"
    last = history(hub, contact)[-1]
    assert (last.accepted, last.rule, last.losing) == (False, "rank", "OPEN (New)")
    back = [r for r in rows(hub, "crm") if r.kind == "status"]
    assert [r.payload["status"] for r in back] == ["Qualified"]


def test_older_and_duplicate_and_reordered_values_change_nothing(hub: Store) -> None:
    contact = one(hub)
    observe(hub, obs("h1", "OPEN_DEAL", 300, email="ana@example.com"))
    [dup] = observe(hub, obs("h1", "OPEN_DEAL", 300))
    [old] = observe(hub, obs("h1", "CONNECTED", 200))
    assert (dup.rule, old.rule) == ("duplicate", "stale")
    # Reordered inside one batch: decided oldest first.
    a, b = observe(hub, obs("h1", "CUSTOMER", 500), obs("h1", "LOST", 400))
    assert (a.rule, a.accepted, b.accepted) == ("newest", True, True)
    assert cs.show_contact(hub, contact)["status_name"] == "Won"


def test_unmapped_value_is_a_field_issue_and_unknown_contact_is_rejected(hub: Store) -> None:
    contact = one(hub)
    [d] = observe(hub, obs("h1", "WEIRD", 100, email="ana@example.com"))
    assert d.rule == "unmapped" and not d.accepted
    [issue] = cs.show_contact(hub, contact)["field_issues"]
    assert "WEIRD" in issue["reason"]
    [u] = observe(hub, obs("h9", "NEW", 100, email="nobody@example.com"))
    assert (u.rule, u.contact_id) == ("unknown-contact", None)


def test_authoritative_system_owns_won(store: Store) -> None:
    rules = SyncConfig(authoritative={"crm": ["Won"]})
    for _ in connected(store, sync=rules):
        contact = one(store)
        with store.engine.begin() as conn:
            [d] = status.observe(
                conn, [obs("s1", "CUSTOMER", 100, system="sheet", email="ana@example.com")],
                CRM, obs("x", None, 1000).changed_at,
            )  # fmt: skip
        assert (d.accepted, d.rule) == (False, "authoritative:crm")
        refused = status.set_by_person(store, contact, "Won", "ops")
        assert (refused.accepted, refused.rule) == (False, "authoritative:crm")
        [ok] = observe(store, obs("h1", "CUSTOMER", 200, by_person=False, email="ana@example.com"))
        assert (ok.accepted, ok.rule) == (True, "authoritative")
        # Terminal and owned: the sheet's person cannot take it out of Won either.
        with store.engine.begin() as conn:
            [no] = status.observe(
                conn, [obs("s1", "LOST", 300, system="sheet")], CRM,
                obs("x", None, 1000).changed_at,
            )  # fmt: skip
        assert (no.accepted, no.rule) == (False, "authoritative:crm")
