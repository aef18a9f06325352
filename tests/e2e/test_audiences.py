"""Custom audiences end to end: contacts in the store, segments, the diff sync through
the shared HTTP layer to the Graph emulator over loopback (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from adapters.facebook import audiences as sync
from adapters.facebook.fake import FakeGraph
from connector import normalize
from connector.model import Lead
from connector.pipeline import Pipeline
from connector.store import Store
from connector.store import contacts as contact_store
from tests.e2e import audience_setup
from tests.e2e.audience_setup import AudienceCli

graph = audience_setup.graph_fixture(seed=5)


def people(store: Store, n: int, status: str = "Qualified", start: int = 0) -> list[int]:
    leads = [
        Lead(
            source="t",
            ref=f"row {i}",
            fields={"email": f"p{i}@example.com", "phone": f"+6012{i:07d}", "first_name": "Ana"},
            raw={"i": i},
            source_id=str(i),
        )
        for i in range(start, start + n)
    ]
    Pipeline(store, workers=0).ingest("t", leads)
    ids = [c["id"] for c in contact_store.list_contacts(store, limit=100_000)[1]]
    for cid in ids:
        contact_store.set_status(store, cid, status, "test")
    return sorted(ids)


def pusher(fake: FakeGraph, store: Store, **extra: Any) -> sync.Pusher:
    """The pusher of one audience, "Qualified and won", with `extra` in its set."""
    where = "status in (Qualified, Won)"
    return audience_setup.pusher(
        fake, store, [{"name": "Qualified and won", "where": where, **extra}]
    )


def members(fake: FakeGraph) -> set[str]:
    [audience] = fake.audiences.audiences.values()
    return {key[0] for key in audience.members}


def test_the_first_push_adds_everyone_and_the_next_makes_no_call(
    graph: FakeGraph, store: Store
) -> None:
    people(store, 30)
    push = pusher(graph, store)
    config = push.audiences.sets[0]
    plan = sync.plan(store, push.audiences)
    assert plan[0]["adds"] == 30 and plan[0]["removes"] == 0 and plan[0]["calls"] == 1
    result = push.push(config)
    assert result["added"] == 30 and result["calls"] == 1
    assert members(graph) == {normalize.sha256(f"p{i}@example.com") for i in range(30)}
    calls = dict(graph.audiences.calls)
    again = push.push(config)
    assert again["calls"] == 0 and graph.audiences.calls.get("POST users") == calls["POST users"]
    assert sync.plan(store, push.audiences)[0]["calls"] == 0


def test_leaving_the_segment_a_merge_and_a_test_lead_are_removes(
    graph: FakeGraph, store: Store
) -> None:
    ids = people(store, 10)
    push = pusher(graph, store)
    config = push.audiences.sets[0]
    push.push(config)
    contact_store.set_status(store, ids[0], "Disqualified", "rep")
    contact_store.merge_contacts(store, ids[1], ids[2], "rep")
    test = Lead(source="t", ref="test", fields={"email": "tester@example.com"}, raw={"t": 1})
    test.custom["is_test"] = True
    test.source_id = "test-1"
    Pipeline(store, workers=0).ingest("t", [test])
    tester = next(
        c["id"] for c in contact_store.list_contacts(store)[1] if c["email"] == "tester@example.com"
    )
    contact_store.set_status(store, tester, "Qualified", "rep")
    result = push.push(config)
    # Disqualified: out. The absorbed contact: out (its row goes; the survivor stays in).
    # The test lead: never in.
    assert result["removed"] == 2 and result["added"] == 0
    assert normalize.sha256("p0@example.com") not in members(graph)
    assert normalize.sha256("tester@example.com") not in members(graph)
    assert len(members(graph)) == 8


def test_batches_of_adds_and_small_removes(
    graph: FakeGraph, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync, "ADD_BATCH", 7)
    monkeypatch.setattr(sync, "REMOVE_BATCH", 3)
    ids = people(store, 20)
    push = pusher(graph, store)
    result = push.push(push.audiences.sets[0])
    assert result["calls"] == 3 and len(members(graph)) == 20
    for cid in ids[:8]:
        contact_store.set_status(store, cid, "Lost", "rep")
    result = push.push(push.audiences.sets[0])
    assert result["removed"] == 8 and result["calls"] == 3 and len(members(graph)) == 12


def test_a_rebuild_replaces_members_through_one_session(
    graph: FakeGraph, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync, "ADD_BATCH", 4)
    people(store, 10)
    push = pusher(graph, store)
    [audience] = [push.audience_id(push.audiences.sets[0])]
    graph.audiences.audiences[audience].members[("stale",)] = ("stale", "")
    result = push.push(push.audiences.sets[0], rebuild=True)
    assert result["replaced"] == 10 and result["calls"] == 3
    assert ("stale",) not in graph.audiences.audiences[audience].members
    assert push.push(push.audiences.sets[0])["calls"] == 0  # the state matches after it


def test_a_lookalike_is_made_once_the_seed_has_100(graph: FakeGraph, store: Store) -> None:
    people(store, 99)
    push = pusher(graph, store, lookalike={"countries": ["MY"], "ratio": 0.02})
    assert push.push(push.audiences.sets[0])["lookalike"] is None
    people(store, 5, start=500)
    made = push.push(push.audiences.sets[0])["lookalike"]
    assert made is not None and graph.audiences.audiences[made].subtype == "LOOKALIKE"
    assert push.push(push.audiences.sets[0])["lookalike"] == made  # kept, not made again


def test_email_and_phone_fast_path_equals_match_keys(store: Store) -> None:
    rng = random.Random(11)
    leads = []
    for i in range(300):
        email = f"{rng.choice(['Ana', 'ZOFIA', 'hùng'])}.{i}@Example.{rng.choice(['com', 'MY'])}"
        phone = rng.choice(["+60 12-345 ", "0048 601 ", "+1 (650) 555-", "+84 90 3"]) + f"{i:04d}"
        leads.append(Lead(source="f", ref=str(i), fields={"email": email, "phone": phone},
                          raw={"i": i}, source_id=str(i)))  # fmt: skip
    Pipeline(store, workers=0).ingest("f", leads)
    rows = contact_store.list_contacts(store, limit=1000)[1]
    assert len(rows) > 250

    class Row:
        def __init__(self, data: dict[str, Any]) -> None:
            self.__dict__.update({f: data.get(f) for f in sync._FIELDS})

    for data in rows:
        fast = sync.key_row(Row(data), ["EMAIL", "PHONE"])
        slow, _ = normalize.match_keys({f: data.get(f) for f in ("email", "phone")})
        expected = [slow.get(k, {}).get("sha256", "") for k in ("EMAIL", "PHONE")]
        assert fast == expected, data


def test_the_cli_plans_pushes_and_shows_status(
    graph: FakeGraph, store: Store, tmp_path: Any
) -> None:
    people(store, 12)
    cli = AudienceCli(graph, store, tmp_path, [{"name": "Seed", "where": "status >= Qualified"}])
    assert cli.json("audiences", "plan", "--json") == [
        {"audience": "Seed", "adds": 12, "removes": 0, "calls": 1, "exclusion": False,
         "lookalike": False}
    ]  # fmt: skip
    [pushed] = cli.json("audiences", "push", "--json")
    assert pushed["added"] == 12
    [status] = cli.json("audiences", "status", "--json")
    assert status["sent_members"] == 12 and status["last_batches"][0]["received"] == 12
    assert cli.json("audiences", "plan", "--json")[0]["calls"] == 0


def test_the_database_delta_equals_the_full_walk_after_random_churn(
    graph: FakeGraph, store: Store
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from connector.store.tables import contacts

    ids = people(store, 40)
    push = pusher(graph, store)
    config = push.audiences.sets[0]
    push.push(config)
    rng = random.Random(4)
    later = datetime.now(UTC) + timedelta(seconds=5)
    for cid in rng.sample(ids, 12):
        what = rng.choice(["email", "phone", "lost", "none"])
        if what == "lost":
            contact_store.set_status(store, cid, "Lost", "rep")
            continue
        values: dict[str, Any] = {"updated_at": later}  # "none": touched, same keys
        if what == "email":
            values["email"] = f"new{cid}@example.com"
        elif what == "phone":
            values["phone"] = f"+6019{cid:07d}"
        with store.engine.begin() as conn:
            conn.execute(update(contacts).where(contacts.c.id == cid).values(**values))
    people(store, 3, start=900)

    def kinds(full: bool) -> list[tuple[str, int, str]]:
        return sorted((k, c, h) for k, c, h, _ in sync.changes(store, config.name, config, full))

    assert kinds(False) == kinds(True) and kinds(True)
    push.push(config)
    assert kinds(True) == [] and kinds(False) == []
