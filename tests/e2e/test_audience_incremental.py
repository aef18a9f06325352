"""The incremental audience diff (only contacts changed since the last push) against the
full walk (every member hashed again), after random changes made the way the store
makes them (status moves, later records, test leads, merges and unmerges, new people),
on SQLite and PostgreSQL; then removals Meta refuses while the audience is too small,
and token and permission errors shown by `audiences status`."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.facebook import audience_diff
from adapters.facebook import audiences as sync
from adapters.facebook.fake import FakeGraph
from connector import normalize
from connector.model import Lead
from connector.pipeline import Pipeline
from connector.store import Store
from connector.store import audiences as audience_state
from connector.store import contacts as contact_store
from tests.e2e import audience_setup
from tests.e2e.audience_setup import AudienceCli

SEGMENTS = [
    "status in (Qualified, Won)",
    "status >= Reach and not city = Warsaw",
    "has_phone and status != Disqualified",
    "created > 2020-01-01 and status in (New, Qualified, Negotiating)",
    "custom.budget >= 100 or status = Won",
]
KEYS = [["EMAIL", "PHONE"], ["EMAIL", "FN", "CT"], ["PHONE", "EXTERN_ID"]]
STATUSES = ["New", "Reach", "Disqualified", "Qualified", "Negotiating", "Won", "Lost"]
_serial = itertools.count()


graph = audience_setup.graph_fixture(seed=7)


def pusher(fake: FakeGraph, store: Store, **audience: Any) -> sync.Pusher:
    """The pusher of the one audience `audience` describes."""
    return audience_setup.pusher(fake, store, [audience])


def ingest(store: Store, *leads: Lead) -> None:
    Pipeline(store, workers=0).ingest("t", list(leads))


def person(n: int, **extra: Any) -> Lead:
    custom = extra.pop("custom", {})
    lead = Lead(
        source="t",
        ref=f"row {n}",
        fields={
            "email": f"p{n}@example.com",
            "phone": f"+6012{n:07d}",
            "first_name": "Ana",
            "city": "Kraków",
            "external_id": f"x{n}",
            **extra,
        },
        raw={"n": n, **extra},
        source_id=f"p{n}-{next(_serial)}",
    )
    lead.custom.update(custom)
    return lead


def live(store: Store) -> list[dict[str, Any]]:
    return contact_store.list_contacts(store, limit=100_000)[1]


def sorted_changes(store: Store, name: str, config: Any, full: bool) -> list[Any]:
    return sorted((k, c, h) for k, c, h, _ in audience_diff.changes(store, name, config, full=full))


def pick(data: st.DataObject, items: list[Any], label: str) -> Any:
    """One of `items`, drawn the same way whatever their number (the store grows from
    one example to the next, and hypothesis wants draws shaped alike)."""
    return items[data.draw(st.integers(0, 10_000), label=label) % len(items)]


def change(store: Store, data: st.DataObject, fresh: Iterator[int]) -> None:
    """One random change, made through the store's own writers."""
    people = live(store)
    what = data.draw(
        st.sampled_from(["status", "email", "city", "test", "budget", "merge", "unmerge", "new"]),
        label="change",
    )
    target = pick(data, people, "contact")
    if what == "status":
        contact_store.set_status(store, target["id"], data.draw(st.sampled_from(STATUSES)), "rep")
    elif what in ("email", "city", "test", "budget") and target.get("phone"):
        # A later record of the same person (found by phone) with another value.
        n = next(fresh)
        fields: dict[str, Any] = {"phone": target["phone"]}
        custom: dict[str, Any] = {}
        if what == "email":
            fields["email"] = f"moved{n}@example.com"
        elif what == "city":
            fields["city"] = data.draw(st.sampled_from(["Warsaw", "Gdańsk", "Hà Nội"]))
        elif what == "test":
            custom["is_test"] = True
        else:
            custom["budget"] = data.draw(st.sampled_from([50, 150]))
        lead = Lead(source="t", ref=f"edit {n}", fields=fields, raw={"n": n}, source_id=f"e{n}")
        lead.custom.update(custom)
        ingest(store, lead)
    elif what == "merge" and len(people) > 1:
        other = pick(data, [p for p in people if p["id"] != target["id"]], "other")
        contact_store.merge_contacts(store, target["id"], other["id"], "rep")
    elif what == "unmerge":
        merged = [m for m in contact_store.merges(store, target["id"]) if not m.get("undone_at")]
        if merged:
            contact_store.unmerge(store, int(merged[0]["absorbed"]), "rep")
    else:
        n = next(fresh)
        ingest(store, person(n))
        found = next(p for p in live(store) if p["email"] == f"p{n}@example.com")
        contact_store.set_status(store, found["id"], data.draw(st.sampled_from(STATUSES)), "rep")


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_the_incremental_diff_equals_the_full_walk_after_random_changes(
    graph: FakeGraph, store: Store, data: st.DataObject, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No lag: the watermark is the push's start, so only contacts changed after it are
    # read (with the default lag every contact of a test this short would be).
    monkeypatch.setattr(audience_state, "LAG", timedelta(0))
    serial = next(_serial)
    fresh = itertools.count(serial * 1000)
    for _ in range(data.draw(st.integers(3, 8), label="people")):
        n = next(fresh)
        ingest(store, person(n, custom={"budget": data.draw(st.sampled_from([10, 200]))}))
    for p in live(store):
        if p["status"] in ("Unknown", "New"):
            contact_store.set_status(store, p["id"], data.draw(st.sampled_from(STATUSES)), "rep")
    where = data.draw(st.sampled_from(SEGMENTS), label="where")
    keys = data.draw(st.sampled_from(KEYS), label="keys")
    push = pusher(graph, store, name=f"A{serial}", where=where, keys=keys)
    config = push.audiences.sets[0]
    push.push(config)
    for _ in range(data.draw(st.integers(1, 3), label="rounds")):
        for _ in range(data.draw(st.integers(1, 6), label="changes")):
            change(store, data, fresh)
        assert audience_diff.mode(store, config.name, config) == "incremental"
        incremental = sorted_changes(store, config.name, config, full=False)
        full = sorted_changes(store, config.name, config, full=True)
        assert incremental == full
        scanned = sorted((k, c, h) for k, c, h, _ in audience_diff.scan(store, config.name, config))
        assert scanned == full  # the scan (segments that move with time) agrees too
        push.push(config)
        assert sorted_changes(store, config.name, config, full=True) == []
        assert sorted_changes(store, config.name, config, full=False) == []


def test_a_segment_that_moves_with_time_is_scanned_and_a_changed_one_walked(
    graph: FakeGraph, store: Store
) -> None:
    ingest(store, person(1), person(2))
    push = pusher(graph, store, name="Recent", where="created < 30d and status = New")
    config = push.audiences.sets[0]
    assert audience_diff.mode(store, "Recent", config) == "scan"  # first push
    push.push(config)
    assert audience_diff.mode(store, "Recent", config) == "scan"  # truth moves with time
    row = pusher(graph, store, name="Recent", where="status = New").audiences.sets[0]
    push.push(row)
    assert audience_diff.mode(store, "Recent", row) == "incremental"
    wider = row.model_copy(update={"keys": ["EMAIL"]})
    assert audience_diff.mode(store, "Recent", wider) == "walk"  # keys changed: every row
    assert audience_diff.mode(store, "Recent", row, full=True) == "walk"
    assert not audience_state.row_bound("source = facebook")
    assert not audience_state.row_bound("last_activity > 2026-01-01")
    assert not audience_state.row_bound("has_issues")
    assert audience_state.row_bound("status >= Qualified and not is_test and custom.x = 1")


def test_a_removal_meta_refuses_as_too_small_is_deferred_and_retried(
    graph: FakeGraph, store: Store
) -> None:
    ingest(store, *(person(n) for n in range(8)))
    for p in live(store):
        contact_store.set_status(store, p["id"], "Qualified", "rep")
    push = pusher(graph, store, name="Seed", where="status = Qualified")
    config = push.audiences.sets[0]
    assert push.push(config)["added"] == 8
    [audience] = graph.audiences.audiences.values()
    graph.audiences.min_after_remove = 6
    people = sorted(live(store), key=lambda p: p["id"])
    for p in people[:3]:
        contact_store.set_status(store, p["id"], "Lost", "rep")
    # A changed contact whose old row cannot leave: its new row waits too.
    moved = Lead(source="t", ref="m", fields={"phone": people[3]["phone"],
                 "email": "moved@example.com"}, raw={}, source_id="moved")  # fmt: skip
    ingest(store, moved)
    result = push.push(config)  # not fatal: kept as pending
    assert result["removed"] == 0 and result["deferred"] == 4 and result["added"] == 0
    assert len(audience.members) == 8
    assert audience_state.ids(store, "Seed")["deferred"] == sorted(p["id"] for p in people[:4])
    [health] = [h for h in audience_state_health(store) if h["source"] == "facebook.audiences:Seed"]
    assert health["state"] == "ok" and "4 removal(s) deferred" in health["reason"]
    # Still too small, and nothing changed: tried again, deferred again, no add.
    again = push.push(config)
    assert again["deferred"] == 4 and again["removed"] == 0 and again["added"] == 0
    # Three new members: the adds go first and lift the size, then the removals pass.
    ingest(store, *(person(n) for n in range(100, 103)))
    for p in live(store):
        if p["status_name"] != "Lost" and p["status_name"] != "Qualified":
            contact_store.set_status(store, p["id"], "Qualified", "rep")
    done = push.push(config)
    assert done["deferred"] == 0 and done["removed"] == 4 and done["added"] == 4
    held = {key[0] for key in audience.members}
    assert len(held) == 8 and normalize.sha256("moved@example.com") in held
    assert normalize.sha256(people[3]["email"]) not in held
    assert audience_state.ids(store, "Seed")["deferred"] == []
    assert sorted_changes(store, "Seed", config, full=True) == []
    assert push.push(config)["calls"] == 0


def audience_state_health(store: Store) -> list[dict[str, Any]]:
    from connector.runtime.health import read

    return read(store)


def test_token_and_permission_errors_show_in_audiences_status(
    graph: FakeGraph, store: Store, tmp_path: Any
) -> None:
    ingest(store, person(1), person(2))
    cli = AudienceCli(graph, store, tmp_path, [{"name": "All", "where": "has_email"}])
    token = cli.token

    def cli_json(*args: str) -> Any:
        return cli.json(*args, logs_before=True)

    assert cli_json("audiences", "push", "--json")[0]["added"] == 2
    assert cli_json("audiences", "status", "--json")[0]["failing"] is None
    graph.revoke_permission(token, "ads_management")
    ingest(store, person(3))  # something to send (a push with nothing to send calls nobody)
    [pushed] = cli_json("audiences", "push", "--json")
    assert "permission denied (#200)" in pushed["failing"] and "ads_management" in pushed["failing"]
    [status] = cli_json("audiences", "status", "--json")
    assert "assign it ad account act_888" in status["failing"]
    assert "failing: permission denied" in cli("audiences", "status")
    graph.tokens[token].permissions.add("ads_management")
    graph.expire_token(token)
    [pushed] = cli_json("audiences", "push", "--json")
    assert "token was rejected (#190/463)" in pushed["failing"]
    assert "system_user_token" in cli_json("audiences", "status", "--json")[0]["failing"]
    graph.tokens[token].expired_subcode = None  # renewed: the next push clears it
    assert cli_json("audiences", "push", "--json")[0]["added"] == 1
    assert cli_json("audiences", "status", "--json")[0]["failing"] is None
