"""Conversion Leads end to end (SQLite and PostgreSQL): Meta leads polled from the Graph
emulator into the store, status changes through the engine, the change feed's outbox
rows, delivered over loopback HTTP to the emulator's events endpoint (written from §C)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from sqlalchemy import select

from adapters.facebook import conversions_delivery as delivery
from adapters.facebook.config import FacebookConfig
from adapters.facebook.conversions import SUBSCRIBER
from adapters.facebook.conversions_config import DESTINATION
from adapters.facebook.conversions_delivery import destinations
from adapters.facebook.fake import FakeGraph
from adapters.facebook.source import FacebookSource
from connector import normalize
from connector.config import OutboxConfig
from connector.pipeline import Pipeline
from connector.store import Store
from connector.store.tables import contacts, leads
from connector.sync import changes, fanout, outbox, outbox_admin
from connector.sync.status import set_by_person

DAY = 86_400.0
DATASET = "555000111"
STAGES = {
    "Qualified": "Marketing Qualified Lead",
    "Negotiating": "Sales Opportunity",
    "Won": "Converted",
}
INITIAL = "Initial Lead from Facebook"
BATCH = OutboxConfig(batch=1000)


@pytest.fixture
def fake() -> Iterator[FakeGraph]:
    graph = FakeGraph(seed=14)
    graph.start()
    yield graph
    graph.stop()


class World:
    """A Page with one form, a dataset, and the config that sends to it."""

    def __init__(self, fake: FakeGraph, store: Store, **conversions: Any) -> None:
        self.fake, self.store = fake, store
        self.page = fake.add_page("Shop", business_id="9001")
        self.form = fake.add_form(self.page.id, name="Form")
        self.dataset = fake.audiences.add_dataset(DATASET)
        self.config = FacebookConfig.model_validate(
            {
                "app_secret": fake.app_secret,
                "system_user_token": fake.add_system_user_token("9001"),
                "graph_url": fake.base_url,
                "pages": [{"id": self.page.id, "access_token": self.page.token}],
                "region": "MY",
                "conversions": {"dataset_id": DATASET, "stages": STAGES, **conversions},
            }
        )
        # As the CLI and the daemon do (fanout.connect), for this store only.
        names = fanout.connect_subscribers(SimpleNamespace(facebook=self.config), store.engine)
        assert names == [SUBSCRIBER]
        [self.target] = destinations(self.config)
        self.target.graph.client.http.attempts = 1  # no in-call retries: the outbox retries

    def lead(self, n: int, created: float | None = None) -> str:
        fields = {"email": f"Person{n}@Example.com", "phone_number": f"+60 12-345 {n:04d}"}
        return self.fake.add_lead(self.form, fields, created_time=created, notify=False)

    def poll(self) -> None:
        source = FacebookSource(self.config, self.store.catalogue)
        source.discover()
        Pipeline(self.store, workers=0).run(source)

    def contact_of(self, lead_id: str) -> int:
        with self.store.engine.connect() as conn:
            return int(
                conn.execute(
                    select(leads.c.contact_id).where(leads.c.source_id == lead_id)
                ).scalar_one()
            )

    def deliver(self) -> outbox.DeliveryStats:
        return outbox.deliver(self.store, [self.target], settings=BATCH)

    def sent(self) -> list[tuple[str, str]]:
        return [(str(e["user_data"]["lead_id"]), e["event_name"]) for e in self.dataset.events]

    def rows(self, state: Any = None) -> list[dict[str, Any]]:
        return outbox_admin.listing(self.store, DESTINATION, state, limit=10_000, with_payload=True)


@pytest.fixture
def world(fake: FakeGraph, store: Store) -> Iterator[World]:
    built = World(fake, store)
    yield built
    changes.unsubscribe(store.engine, SUBSCRIBER)


def test_every_stage_goes_once_in_order_initial_first_and_a_reentry_again(world: World) -> None:
    lead = world.lead(1, created=time.time() - 3600)
    world.poll()
    contact = world.contact_of(lead)
    for status in ("Qualified", "Reach", "Negotiating"):  # Reach is not mapped
        set_by_person(world.store, contact, status, "rep")
    world.deliver()
    assert world.sent() == [(lead, INITIAL), (lead, STAGES["Qualified"]),
                            (lead, STAGES["Negotiating"])]  # fmt: skip
    first = world.dataset.events[0]
    assert first["action_source"] == "system_generated"
    assert first["custom_data"] == {"event_source": "crm", "lead_event_source": "leadsync"}
    # The lead id unhashed; email and phone only as hashes of the stored normalised values.
    assert first["user_data"] == {
        "lead_id": int(lead),
        "em": [normalize.sha256("person1@example.com")],
        "ph": [normalize.sha256("60123450001")],
    }
    assert abs(first["event_time"] - (time.time() - 3600)) < 5  # the lead's creation
    # Delivered once: nothing goes again; a poll reading the lead again adds nothing.
    world.poll()
    world.deliver()
    assert len(world.sent()) == 3
    # Re-entering a stage is a new occurrence: it is sent again.
    set_by_person(world.store, contact, "Qualified", "rep")
    world.deliver()
    assert world.sent()[3:] == [(lead, STAGES["Qualified"])]
    assert all(r["state"] == "delivered" for r in world.rows())


def test_a_second_meta_lead_of_a_known_contact_sends_its_initial_stage_then_its_stages(
    world: World,
) -> None:
    first = world.lead(5, created=time.time() - 7200)
    world.poll()
    contact = world.contact_of(first)
    set_by_person(world.store, contact, "Qualified", "rep")
    world.deliver()
    assert world.sent() == [(first, INITIAL), (first, STAGES["Qualified"])]
    # The same person fills in the form again: a new Meta lead on the existing contact.
    second = world.lead(5, created=time.time() - 60)
    world.poll()
    assert world.contact_of(second) == contact
    world.deliver()
    assert world.sent()[2:] == [(second, INITIAL)]
    [event] = world.dataset.events[2:]
    assert abs(event["event_time"] - (time.time() - 60)) < 5  # the second lead's creation
    # Later stages go for each of the contact's Meta leads, in order per lead.
    set_by_person(world.store, contact, "Negotiating", "rep")
    world.deliver()
    assert sorted(world.sent()[3:]) == sorted(
        [(first, STAGES["Negotiating"]), (second, STAGES["Negotiating"])]
    )
    # Polled again: the lead is known, nothing more goes.
    world.poll()
    world.deliver()
    assert len(world.sent()) == 5


def test_a_stage_older_than_7_days_is_a_dead_letter_with_its_reason(world: World) -> None:
    old = world.lead(2, created=time.time() - 8 * DAY)
    world.poll()
    set_by_person(world.store, world.contact_of(old), "Qualified", "rep")
    stats = world.deliver()
    # A run whose batch delivered nothing ends there (outbox.deliver); the next run of
    # the job sends the stage that waited behind the dead letter.
    stats.add(world.deliver())
    assert (stats.delivered, stats.failed) == (1, 1)
    [dead] = world.rows("failed")
    assert dead["payload"]["event_name"] == INITIAL
    assert dead["last_error"].startswith("older than 7 days")
    assert world.sent() == [(old, STAGES["Qualified"])]  # the fresh stage still went


def test_a_stage_before_the_leads_creation_is_not_sent(world: World) -> None:
    row = {"lead_id": "1234567890123456", "event_name": "X", "event_time": 100,
           "lead_created": 200}  # fmt: skip
    why = delivery.unsendable(row, time.time())
    assert why is not None and "older than 7 days" in why  # both: the age is checked first
    now = time.time()
    row |= {"event_time": int(now - 60), "lead_created": int(now)}
    assert "before the lead's creation" in str(delivery.unsendable(row, now))


def test_one_bad_event_in_a_batch_of_10_leaves_the_other_9_delivered(world: World) -> None:
    made = [world.lead(i, created=time.time() - 600) for i in range(10)]
    world.poll()
    # Meta no longer knows one lead (deleted in Meta): its event rejects any request.
    world.fake.lead_meta.pop(made[6])
    stats = world.deliver()
    assert (stats.delivered, stats.failed) == (9, 1)
    assert sorted(world.sent()) == sorted((m, INITIAL) for m in made if m != made[6])
    [dead] = world.rows("failed")
    assert dead["payload"]["lead_id"] == made[6]
    assert "Meta rejected the event" in dead["last_error"] and "not a lead" in dead["last_error"]
    # The split: 1 rejected request of 10, then halves down to the bad event.
    assert world.target.requests <= 1 + 2 * 4


def test_batches_hold_at_most_the_limit_and_transient_errors_retry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "MAX_EVENTS", 4)
    made = [world.lead(i, created=time.time() - 600) for i in range(10)]
    world.poll()
    world.deliver()
    assert world.dataset.requests == 3 and len(world.sent()) == 10
    # A server error: nothing is lost, the rows wait for another attempt.
    contact = world.contact_of(made[0])
    set_by_person(world.store, contact, "Won", "rep")
    requests.post(f"{world.fake.base_url}/_fake/faults", json={"error_rate": 1.0}, timeout=5)
    stats = world.deliver()
    assert (stats.delivered, stats.retried) == (0, 1)
    [waiting] = world.rows("pending")
    assert waiting["payload"]["event_name"] == "Converted" and waiting["last_error"]


def test_test_event_code_routes_events_to_test_events(fake: FakeGraph, store: Store) -> None:
    world = World(fake, store, test_event_code="TEST4242")
    try:
        lead = world.lead(3, created=time.time() - 60)
        world.poll()
        world.deliver()
        assert world.dataset.events == []
        assert [e["user_data"]["lead_id"] for e in world.dataset.test_events["TEST4242"]] == [
            int(lead)
        ]
    finally:
        changes.unsubscribe(store.engine, SUBSCRIBER)


def test_test_leads_and_other_sources_send_nothing(world: World) -> None:
    import hashlib
    import hmac

    token = world.page.token
    proof = hmac.new(world.fake.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
    requests.post(
        f"{world.fake.base_url}/v26.0/{world.form}/test_leads",
        data={"access_token": token, "appsecret_proof": proof},
        timeout=5,
    )
    world.poll()
    with world.store.engine.connect() as conn:
        [tester] = conn.execute(select(contacts.c.id, contacts.c.custom)).all()
    assert tester.custom["is_test"] is True
    set_by_person(world.store, tester.id, "Qualified", "rep")
    from connector.model import Lead

    other = Lead(source="csv", ref="row 1", fields={"email": "x@example.com"}, raw={"a": 1})
    other.source_id = "1"
    Pipeline(world.store, workers=0).ingest("csv", [other])
    assert world.rows() == []


def test_the_hook_follows_the_configuration(fake: FakeGraph, store: Store) -> None:
    World(fake, store)
    bare = SimpleNamespace(facebook=None)
    assert fanout.connect_subscribers(bare, store.engine) == []
    with store.engine.connect() as conn:
        assert not changes.listening(conn)  # unsubscribed: the hot path builds no events


def test_a_rejected_token_keeps_the_events_waiting_and_says_what_to_do(world: World) -> None:
    from datetime import UTC, datetime, timedelta

    from adapters.facebook import plugin
    from connector.runtime import health

    # Wired as the daemon wires it: the plugin hands the destination Runtime.report.
    def report(source: str, state: Any, reason: str | None = None) -> None:
        health.report(world.store, source, state, reason)

    runtime = SimpleNamespace(config=SimpleNamespace(facebook=world.config), report=report)
    [target] = plugin.destinations(runtime)  # type: ignore[arg-type]
    target.graph.client.http.attempts = 1
    world.target = target
    world.lead(5, created=time.time() - 60)
    world.poll()
    token = world.config.system_user_token
    assert token is not None
    world.fake.expire_token(token.get_secret_value())
    stats = world.deliver()
    assert (stats.delivered, stats.retried) == (0, 1)
    [waiting] = world.rows("pending")  # nothing lost while a person renews the token
    assert "token" in waiting["last_error"]

    def row() -> dict[str, Any]:
        [found] = [r for r in health.read(world.store) if r["source"] == delivery.HEALTH]
        return found

    assert row()["state"] == "failing"
    assert "System User token was rejected" in row()["reason"]
    assert "facebook.system_user_token" in row()["reason"]
    # Renewed: the next attempt (past its backoff) is delivered and the health clears.
    world.fake.tokens[token.get_secret_value()].expired_subcode = None
    later = datetime.now(UTC) + timedelta(hours=2)
    claimed, again = outbox.deliver_batch(world.store, target, BATCH, now=later)
    assert (claimed, again.delivered) == (1, 1)
    assert [name for _, name in world.sent()] == [INITIAL]
    assert row()["state"] == "ok" and row()["reason"] is None
