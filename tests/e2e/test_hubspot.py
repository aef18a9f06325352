"""HubSpot two-way sync end to end: the adapter over real loopback HTTP against the
emulator (adapters/hubspot/fake.py), the engine and the outbox on a real store
(SQLite and PostgreSQL). A second two-way system, "other", is connected so fan-out
can be seen: it has no destination here, its outbox rows are only read."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from adapters.hubspot import HubSpotPlugin
from adapters.hubspot.client import HubSpotClient
from adapters.hubspot.config import HubSpotConfig
from adapters.hubspot.drain import drain
from adapters.hubspot.fake import FakeHubSpot
from adapters.hubspot.pull import pull
from adapters.hubspot.push import HubSpotDestination
from connector.config import OutboxConfig, SyncConfig
from connector.http import Hooks
from connector.model import Lead
from connector.pipeline import Pipeline
from connector.store import Store
from connector.store import contacts as cs
from connector.store.tables import leads, outbox, status_history
from connector.sync import fanout, links
from connector.sync import outbox as ob
from connector.sync.status import set_by_person
from connector.sync.why import explain
from tests.contract.test_store import lead
from tests.e2e.test_facebook import StubRuntime, count, serving

SECRET = "s3cret-of-the-app"
HOUR_MS = 3_600_000


@pytest.fixture
def fake() -> Iterator[FakeHubSpot]:
    with FakeHubSpot(client_secret=SECRET, search_cap=50) as hs:
        yield hs


@pytest.fixture
def hub(store: Store) -> Iterator[Store]:
    fanout.install(("hubspot", "other"), SyncConfig(), store.engine)
    yield store
    fanout.uninstall(store.engine)


def hs_config(fake: FakeHubSpot, **extra: Any) -> HubSpotConfig:
    return HubSpotConfig.model_validate(
        {
            "token": fake.token,
            "portal_id": fake.portal.portal_id,
            "api_url": fake.base_url,
            "webhook_secret": SECRET,
            "lag": 0,
            **extra,
        }
    )


def client_of(config: HubSpotConfig, **kw: Any) -> HubSpotClient:
    # The emulator's search cap is 50 here (the fixture): the client is told the same.
    return HubSpotClient(config, hooks=Hooks(), backoff=0.01, **{"cap": 50, **kw})


def rows(store: Store, destination: str, kind: str | None = None) -> list[Any]:
    query = select(outbox).where(outbox.c.destination == destination).order_by(outbox.c.id)
    if kind is not None:
        query = query.where(outbox.c.kind == kind)
    with store.engine.connect() as conn:
        return list(conn.execute(query))


def contact_of(store: Store, hubspot_id: str) -> int:
    with store.engine.connect() as conn:
        found = links.find(conn, "hubspot", hubspot_id)
    assert found is not None, f"HubSpot contact {hubspot_id} is not linked"
    return found


def status_of(store: Store, hubspot_id: str) -> str:
    return str(cs.show_contact(store, contact_of(store, hubspot_id))["status_name"])


def test_pull_crosses_the_search_cap_and_observes_each_status(
    fake: FakeHubSpot, hub: Store
) -> None:
    now = int(time.time() * 1000)
    words = ["NEW", "CONNECTED", "OPEN_DEAL", "SOMETHING_CUSTOM"]
    made = [
        # Three contacts to a timestamp: the cap (50) falls inside a group of ties.
        fake.add_contact(
            f"p{i}@example.com",
            at=now - HOUR_MS + (i // 3) * 1000,
            firstname=f"P{i}",
            hs_lead_status=words[i % 4] if words[i % 4] != "SOMETHING_CUSTOM" else "OPEN",
        ).id
        for i in range(120)
    ]
    fake.portal.options["hs_lead_status"] += ("SOMETHING_CUSTOM",)
    fake.change(made[3], "hs_lead_status", "SOMETHING_CUSTOM")  # a portal's own option
    config = hs_config(fake)
    client = client_of(config, page=10)
    counts = pull(hub, client, config, default_region="MY")
    assert counts["contacts"] == 120  # each once, though the cap was crossed
    assert fake.calls["search"] >= 13 and fake.calls["error_400"] == 0
    assert count(hub, leads, leads.c.source == "hubspot") == 120
    assert status_of(hub, str(made[1])) == "Qualified"
    assert status_of(hub, str(made[2])) == "Negotiating"
    assert status_of(hub, str(made[0])) == "New"
    assert status_of(hub, str(made[3])) == "New"  # unmapped: a field issue, no change
    # Fan-out: to the other system (contacts and accepted changes), never back to HubSpot.
    created = rows(hub, "other", "contact")
    assert len(created) == 120  # each in HubSpot's status: no separate status rows
    assert sum(r.payload["status"] == "Qualified" for r in created) == 30
    assert rows(hub, "other", "status") == [] and rows(hub, "hubspot") == []

    # From the cursor: nothing new, nothing decided twice.
    before = fake.calls["search"]
    again = pull(hub, client, config)
    assert again["contacts"] == 1  # the cursor's own contact (GTE), decided "duplicate"
    assert fake.calls["search"] == before + 1
    fake.change(made[5], "hs_lead_status", "OPEN_DEAL", source="CRM_UI")
    # The change, and the cursor's own contact again (made[3], the newest: GTE).
    assert pull(hub, client, config)["contacts"] == 2
    assert status_of(hub, str(made[5])) == "Negotiating"
    [moved] = rows(hub, "other", "status")
    assert moved.payload["status"] == "Negotiating"
    # Search cannot say who changed a value: a lower rank seen by the pull counts as
    # automation and is refused (the webhook, which says who, is the path for people).
    fake.change(made[9], "hs_lead_status", "UNQUALIFIED", source="CRM_UI")
    pull(hub, client, config)
    assert status_of(hub, str(made[9])) == "Qualified"
    # `leadsync contacts why` says so, rather than leave "automation" unexplained.
    said = " ".join(explain(hub, contact_of(hub, str(made[9])))["lines"])
    assert "refused Disqualified" in said and "hubspot did not report a person" in said


def test_a_search_throttle_ends_the_pull_where_it_stands_and_the_next_resumes(
    fake: FakeHubSpot, hub: Store
) -> None:
    now = int(time.time() * 1000)
    for i in range(30):
        fake.add_contact(f"t{i}@example.com", at=now - HOUR_MS + i * 1000, hs_lead_status="NEW")
    config = hs_config(fake)
    client = client_of(config, page=10, attempts=2)
    real = fake.limits.take
    served = {"searches": 0}

    def take(search: bool) -> Any:
        # The third search on is HubSpot's 429 (someone else spends the 5 a second).
        if search:
            served["searches"] += 1
            if served["searches"] >= 3:
                fake.limits.search_per_second = 0
        return real(search)

    fake.limits.take = take  # type: ignore[method-assign]
    first = pull(hub, client, config)
    assert first["throttled"] == 1 and first["contacts"] == 20  # two pages, then the 429
    assert fake.calls["error_429"] >= 1
    assert count(hub, leads, leads.c.source == "hubspot") == 20
    fake.limits.take = real  # type: ignore[method-assign]
    fake.limits.search_per_second = 5
    second = pull(hub, client, config)
    assert second["throttled"] == 0
    assert count(hub, leads, leads.c.source == "hubspot") == 30  # nothing skipped


def test_webhooks_duplicated_and_reordered_settle_on_the_newest(
    fake: FakeHubSpot, hub: Store
) -> None:
    config = hs_config(fake)
    client = client_of(config)
    known = fake.add_contact("ann@example.com", firstname="Ann", hs_lead_status="NEW")
    pull(hub, client, config)
    runtime = StubRuntime(hub, type("Config", (), {"hubspot": config})())
    app = Starlette(routes=list(HubSpotPlugin().routes(runtime)))
    with serving(app) as base:
        fake.set_webhooks(
            url=base + config.webhook_path,
            properties=["hs_lead_status"],
            duplicate=True,
            reorder=True,
            force_retries=1,
        )
        at = int(time.time() * 1000)
        fake.change(known.id, "hs_lead_status", "IN_PROGRESS", at=at + 1000)
        fake.change(known.id, "hs_lead_status", "CONNECTED", at=at + 2000)
        # Someone HubSpot has and the store does not: read once, ingested, then observed.
        new = fake.add_contact("bo@example.com", firstname="Bo")
        fake.change(new.id, "hs_lead_status", "OPEN_DEAL", at=at + 3000)
        fake.flush_webhooks()
    assert fake.hooks.stats["delivered"] >= 2 and fake.hooks.stats["forced_retries"] >= 1
    reads = fake.calls["read"]

    def pipeline() -> Pipeline:
        return Pipeline(hub, default_region="MY", workers=0)

    # One delivery per claim: the newest arrives first, the older ones are stale after it.
    got = drain(runtime, client, config, pipeline, limit=1)
    assert got["deliveries"] >= 4
    assert runtime.woken[-1] == "outbox.deliver"  # the fan-out is delivered at once
    assert status_of(hub, str(known.id)) == "Qualified"
    assert status_of(hub, str(new.id)) == "Negotiating"
    assert fake.calls["read"] == reads + 1  # Bo only, once
    with hub.engine.connect() as conn:
        ann = contact_of(hub, str(known.id))
        moves = conn.execute(
            select(status_history.c.rule, status_history.c.accepted).where(
                status_history.c.contact_id == ann
            )
        ).all()
    assert [m for m in moves if m.accepted and m.rule != "initial"][-1].rule == "newest"
    other = [r.payload["status"] for r in rows(hub, "other", "status")]
    assert other.count("Qualified") == 1 and "Reach" not in other  # one write per change


def test_push_contacts_and_statuses_through_429s_with_echoes_dropped(hub: Store) -> None:
    # HubSpot's own cap: one batch upsert gives 100 contacts one lastmodifieddate.
    with FakeHubSpot(client_secret=SECRET) as fake:
        push_and_echo(fake, hub)


def push_and_echo(fake: FakeHubSpot, hub: Store) -> None:
    fake.limits.max_per_interval, fake.limits.interval_ms = 2, 1000
    config = hs_config(fake, context_properties={"source": "leadsync_source"})
    fake.portal.define("leadsync_source")
    client = client_of(config, cap=10_000)
    # Contacts that came from elsewhere: 150 to HubSpot (two upserts of 100 and 50).
    Pipeline(hub, default_region="MY", workers=0).ingest(
        "csv",
        [lead(f"r{i}", "csv", email=f"c{i}@example.com", first_name=f"C{i}") for i in range(150)]
        + [lead("nomail", "csv", phone="+60123456789", first_name="Nomail")],
    )
    # Someone HubSpot already has, with a status a rep set: matched by email, linked,
    # and that status is not overwritten by the store's default.
    c0 = fake.add_contact("c0@example.com", firstname="Already there", hs_lead_status="CONNECTED")
    for _ in range(2):  # someone else spent the window: the first call is a 429
        fake.limits.take(search=False)
    destination = HubSpotDestination(hub, client, config)
    settings = OutboxConfig(batch=200)
    stats = ob.deliver(hub, [destination], settings=settings)
    assert stats.delivered == 150 and stats.failed == 1  # the one without an email
    assert fake.calls["error_429"] >= 1 and fake.calls["upsert"] == 2
    assert fake.calls["update"] == 2  # the new contacts' statuses: 99 + 50
    assert destination.created == 149  # c0 existed: linked, not created
    assert c0.properties["hs_lead_status"] == "CONNECTED"
    assert contact_of(hub, str(c0.id)) > 0
    assert len(fake.portal.contacts) == 150
    c7 = fake.portal.find("c7@example.com", "email")
    assert c7 is not None and c7.properties["hs_lead_status"] == "NEW"
    assert c7.properties["firstname"] == "C7" and c7.properties["leadsync_source"] == "csv"
    contact = contact_of(hub, str(c7.id))

    # Our own writes come back by webhook: dropped as echoes, nothing fans out again.
    runtime = StubRuntime(hub, type("Config", (), {"hubspot": config})())
    app = Starlette(routes=list(HubSpotPlugin().routes(runtime)))
    with serving(app) as base:
        fake.set_webhooks(url=base + config.webhook_path, properties=["hs_lead_status"])
        decision = set_by_person(hub, contact, "Negotiating", "ana")
        assert decision.accepted
        assert ob.deliver(hub, [destination], settings=settings).delivered == 1
        assert c7.properties["hs_lead_status"] == "OPEN_DEAL"
        fake.flush_webhooks()
    assert fake.hooks.stats["delivered"] == 1  # HubSpot told us about our own write
    others = len(rows(hub, "other"))
    history = len(cs.show_contact(hub, contact)["status_history"])

    def pipeline() -> Pipeline:
        return Pipeline(hub, workers=0)

    drain(runtime, client, config, pipeline)
    assert len(rows(hub, "other")) == others
    assert len(cs.show_contact(hub, contact)["status_history"]) == history
    with hub.engine.connect() as conn:
        [link] = links.many(conn, "hubspot", [str(c7.id)]).values()
    assert link.last_written_value == "OPEN_DEAL" and link.last_seen_value == "OPEN_DEAL"
    # A person then changes it in HubSpot: that is no echo.
    with serving(app) as base:
        fake.set_webhooks(url=base + config.webhook_path)
        fake.change(c7.id, "hs_lead_status", "UNQUALIFIED")
        fake.flush_webhooks()
    drain(runtime, client, config, pipeline)
    assert status_of(hub, str(c7.id)) == "Disqualified"
    assert rows(hub, "other")[-1].payload["status"] == "Disqualified"


def test_push_finds_unlinked_and_vanished_contacts_by_email_and_isolates_bad_rows(
    hub: Store,
) -> None:
    with FakeHubSpot(client_secret=SECRET) as fake:
        config = hs_config(fake, context_properties={"form": "no_such_property"})
        client = client_of(config, cap=10_000)
        destination = HubSpotDestination(hub, client, config)
        Pipeline(hub, default_region="MY", workers=0).ingest(
            "csv",
            [
                lead("a", "csv", email="a@example.com"),
                lead("b", "csv", email="b@example.com"),
            ],
        )
        [a, b] = sorted(r["id"] for r in cs.list_contacts(hub)[1])
        with hub.engine.begin() as conn:
            # The contact rows are set aside: these contacts reach HubSpot by status.
            conn.execute(outbox.update().values(dead_at=time_now()))
            links.link(conn, "hubspot", "424242", b)  # a record HubSpot has since deleted
        set_by_person(hub, a, "Qualified", "ana")
        set_by_person(hub, b, "Negotiating", "ana")
        stats = ob.deliver(hub, [destination])
        assert stats.delivered == 2
        got_a = fake.portal.find("a@example.com", "email")
        got_b = fake.portal.find("b@example.com", "email")
        assert got_a is not None and got_a.properties["hs_lead_status"] == "CONNECTED"
        assert got_b is not None and got_b.properties["hs_lead_status"] == "OPEN_DEAL"
        assert contact_of(hub, str(got_a.id)) == a and contact_of(hub, str(got_b.id)) == b

        # A lead context property the portal lacks: HubSpot refuses the batch (400);
        # each row is then tried alone, and only the bad one fails, with the message.
        Pipeline(hub, default_region="MY", workers=0).ingest(
            "form",
            [
                Lead(
                    source="form",
                    ref="c",
                    fields={"email": "c@example.com"},
                    source_id="c",
                    context={"form": "Contact us"},
                ),
                lead("d", "form", email="d@example.com"),
            ],
        )
        stats = ob.deliver(hub, [destination])
        assert (stats.delivered, stats.failed) == (1, 1)
        assert fake.portal.find("d@example.com", "email") is not None
        assert fake.portal.find("c@example.com", "email") is None
        [dead] = [r for r in rows(hub, "hubspot", "contact") if r.last_error]
        assert "refused" in dead.last_error


def time_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
