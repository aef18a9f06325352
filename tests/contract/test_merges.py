"""Merges: configurable identity keys, possible duplicates, the merge log, unmerge and
the survivor rule, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from connector.config import IdentityConfig
from connector.identity import IdentityRules
from connector.statuses import LOST, WON
from connector.store import Store
from connector.store import contacts as cs
from connector.store.tables import contacts, identities, interactions, leads, merge_log
from tests.contract.test_store import count, ingest, lead, live


def by_email(store: Store, email: str) -> dict[str, Any]:
    [row] = [c for c in cs.list_contacts(store, limit=1000)[1] if c["email"] == email]
    return row


def test_an_office_phone_shared_by_two_people_is_a_possible_duplicate(store: Store) -> None:
    ingest(
        store,
        lead(
            "1",
            email="anna@firma.pl",
            phone="+48 22 123 45 67",
            first_name="Anna",
            last_name="Nowak",
        ),
    )
    stats = ingest(
        store,
        lead(
            "2",
            email="jan@firma.pl",
            phone="22 123 45 67",
            country="PL",
            first_name="Jan",
            last_name="Kowalski",
            city="Warszawa",
        ),
    )
    assert (stats.created, stats.merged, stats.updated) == (1, 0, 0)
    assert live(store) == 2
    anna, jan = by_email(store, "anna@firma.pl"), by_email(store, "jan@firma.pl")
    assert jan["phone"] == "+48221234567" and jan["city"] == "Warszawa"  # nothing lost
    [pair] = cs.duplicates(store)
    assert {c["id"] for c in pair["contacts"]} == {anna["id"], jan["id"]}
    assert pair["key"] == "phone:+48221234567"
    # The same again is not filed twice; a record without a name still joins nobody new.
    ingest(store, lead("3", email="jan@firma.pl", phone="+48221234567", first_name="Jan"))
    assert len(cs.duplicates(store)) == 1 and live(store) == 2
    # A person decides: different people. The pair is no longer offered.
    cs.dismiss_duplicate(store, pair["id"], actor="ops")
    assert cs.duplicates(store) == []
    assert cs.duplicates(store, include_settled=True)[0]["dismissed_by"] == "ops"
    with pytest.raises(LookupError):
        cs.dismiss_duplicate(store, 999, actor=None)


def test_names_that_only_differ_in_accents_order_or_parts_still_merge(store: Store) -> None:
    ingest(store, lead("1", email="m.wojcik@x.pl", first_name="Małgorzata", last_name="Wójcik"))
    ingest(store, lead("2", phone="+48600100200", first_name="Malgorzata", last_name="WOJCIK"))
    stats = ingest(store, lead("3", email="m.wojcik@x.pl", phone="+48 600 100 200"))
    assert stats.merged == 1 and live(store) == 1 and cs.duplicates(store) == []
    ingest(store, lead("4", email="tan@x.my", first_name="Tan", last_name="Wei Ling"))
    stats = ingest(store, lead("5", email="tan@x.my", first_name="Wei Ling", last_name="Tan"))
    assert stats.updated == 1 and live(store) == 2  # same words, other order: one person


def test_a_merge_by_hand_is_logged_and_unmerge_restores_everything(store: Store) -> None:
    ingest(store, lead("a1", email="a@x.com", city="A-town"))
    ingest(
        store,
        lead(
            "b1", email="b@x.com", phone="+60123456789", company="B Sdn Bhd", custom={"budget": 5}
        ),
    )
    a, b = by_email(store, "a@x.com"), by_email(store, "b@x.com")
    before_a, before_b = cs.show_contact(store, a["id"]), cs.show_contact(store, b["id"])
    kept = cs.merge_contacts(store, a["id"], b["id"], actor="ops")
    assert kept == a["id"] and live(store) == 1
    merged = cs.show_contact(store, a["id"])
    assert (merged["city"], merged["company"], merged["custom"]) == (
        "A-town",
        "B Sdn Bhd",
        {"budget": 5},
    )
    [entry] = cs.merges(store, a["id"])
    assert (entry["survivor"], entry["absorbed"], entry["rule"], entry["actor"]) == (
        a["id"],
        b["id"],
        "person",
        "ops",
    )
    assert set(entry["detail"]["identities"]) == {"email:b@x.com", "phone:+60123456789"}
    assert set(entry["detail"]["taken"]) == {"phone", "company", "custom.budget"}
    # A lead arriving for the absorbed email lands on the survivor meanwhile.
    ingest(store, lead("a2", email="a@x.com", owner="Kevin"))

    restored, survivor = cs.unmerge(store, b["id"], actor="ops")
    assert (restored, survivor) == (b["id"], a["id"]) and live(store) == 2
    after_a, after_b = cs.show_contact(store, a["id"]), cs.show_contact(store, b["id"])
    for key in ("email", "phone", "company", "city", "custom", "status"):
        assert after_b[key] == before_b[key], key
        assert after_a[key] == before_a[key], key
    assert after_a["owner"] == "Kevin"  # what came later stays where it landed
    assert after_b["identities"] == before_b["identities"]
    assert [x["source_id"] for x in after_b["leads"]] == [x["source_id"] for x in before_b["leads"]]
    assert any(i["kind"] == "unmerge" for i in after_b["interactions"])
    assert cs.merges(store, b["id"])[0]["undone_by"] == "ops"
    assert [m["undone_at"] is not None for m in after_a["merges"]] == [True]
    with pytest.raises(LookupError):
        cs.unmerge(store, b["id"], actor=None)  # nothing left to undo
    # Records for the absorbed one's keys find it again.
    ingest(store, lead("b2", phone="+60 12-345 6789", city="B-town"))
    assert cs.show_contact(store, b["id"])["city"] == "B-town"


def test_an_automatic_merge_is_logged_and_can_be_undone(store: Store) -> None:
    ingest(store, lead("1", email="hoa@x.vn", city="Huế"))
    ingest(store, lead("2", phone="+84903111222", company="Phở Co"))
    stats = ingest(store, lead("3", email="hoa@x.vn", phone="+84 903 111 222"))
    assert stats.merged == 1
    with store.engine.connect() as conn:
        entry = conn.execute(select(merge_log)).one()
    assert entry.rule == "automatic: shared phone" and entry.actor is None
    cs.unmerge(store, entry.absorbed_id, actor="ops")
    assert live(store) == 2
    assert cs.show_contact(store, entry.absorbed_id)["company"] == "Phở Co"
    assert cs.show_contact(store, entry.survivor_id)["company"] is None
    # Every lead, identity and interaction points at a live contact again.
    with store.engine.connect() as conn:
        tombstones = set(
            conn.execute(select(contacts.c.id).where(contacts.c.merged_into.is_not(None))).scalars()
        )
        for table in (leads, identities, interactions):
            assert not tombstones & set(conn.execute(select(table.c.contact_id)).scalars())
    assert count(store, identities) == 2


@pytest.mark.parametrize("order", [(WON, LOST), (LOST, WON)])
def test_a_customer_stays_a_customer(store: Store, order: tuple[int, int]) -> None:
    ingest(store, lead("1", email="c@x.com", status=order[0]))
    ingest(store, lead("2", phone="+60123456789", status=order[1]))
    ingest(store, lead("3", email="c@x.com", phone="+60123456789"))
    [row] = cs.list_contacts(store)[1]
    assert row["status"] == WON


def test_the_survivor_rule_is_configurable(store: Store) -> None:
    ingest(store, lead("1", email="c@x.com", status=WON))
    ingest(store, lead("2", phone="+60123456789", status=LOST))
    store.identity = IdentityRules(survivor=("rank",))
    ingest(store, lead("3", email="c@x.com", phone="+60123456789"))
    [row] = cs.list_contacts(store)[1]
    assert row["status"] == LOST  # rank alone: Lost is further along


def test_the_one_a_person_changed_last_survives_between_equals(store: Store) -> None:
    ingest(store, lead("1", email="old@x.com"))
    ingest(store, lead("2", phone="+60123456789"))
    newer = by_email(store, "old@x.com")["id"] + 1
    cs.set_status(store, newer, "New", actor="ops")  # no move: not a change by a person
    cs.set_status(store, newer, "Reach", actor="ops")
    cs.set_status(store, newer, "New", actor="ops")  # back where both started
    ingest(store, lead("3", email="old@x.com", phone="+60123456789"))
    [row] = cs.list_contacts(store)[1]
    assert row["id"] == newer


def test_identity_keys_are_configurable(store: Store) -> None:
    store.identity = IdentityConfig.model_validate({"keys": ["email"]}).rules()
    ingest(store, lead("1", email="a@x.com", phone="+60123456789"))
    stats = ingest(store, lead("2", email="b@x.com", phone="+60123456789"))
    assert stats.created == 1 and live(store) == 2 and cs.duplicates(store) == []
    assert count(store, identities) == 2  # phones are not identities here


def test_phone_requires_a_matching_name_when_configured(store: Store) -> None:
    store.identity = IdentityRules(phone_requires_name=True)
    ingest(store, lead("1", email="a@x.com", phone="+60123456789", first_name="Siti"))
    stats = ingest(store, lead("2", phone="+60123456789", city="Ipoh"))  # no name
    assert stats.created == 1 and live(store) == 2
    stats = ingest(store, lead("3", phone="+60123456789", first_name="SITI", city="Ipoh"))
    assert stats.updated == 1 and by_email(store, "a@x.com")["city"] == "Ipoh"


def test_identity_config_validates() -> None:
    assert IdentityConfig().rules() == IdentityRules()
    with pytest.raises(ValueError):
        IdentityConfig.model_validate({"keys": ["email", "email"]})
    with pytest.raises(ValueError):
        IdentityConfig.model_validate({"keys": ["fax"]})
    with pytest.raises(ValueError):
        IdentityConfig.model_validate({"survivor": ["youngest"]})
