"""The page-view writer answers an event loop's concurrent writes after their commit,
with each request's count of new views (a retried event is not new), whether they
share a transaction or not; a thread's `submit` gets the same."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from connector.store import Store, visitors
from connector.store.visit_writer import VisitWriter


def _view(event_id: str, visitor: str) -> visitors.PageView:
    return visitors.PageView(
        site="www",
        event_id=event_id,
        visitor=visitor,
        occurred_at=datetime.now(UTC),
        url="https://www.example.com/",
        referrer=None,
        title=None,
        utm=None,
        fbc=None,
        fbp=None,
        source="webtag",
    )


def test_concurrent_writes_from_a_loop_are_answered_after_commit(store: Store) -> None:
    writer = VisitWriter(store)

    async def main() -> list[int]:
        writes = [
            writer.write([_view(f"event-{i:08d}", f"visitor-{i % 7:08d}")]) for i in range(200)
        ]
        # The same events again, and a request of two views one of which is new.
        writes += [
            writer.write([_view(f"event-{i:08d}", f"visitor-{i % 7:08d}")]) for i in range(5)
        ]
        writes.append(
            writer.write(
                [
                    _view("event-00000000", "visitor-00000000"),
                    _view("event-new-0001", "visitor-00000000"),
                ]
            )
        )
        return list(await asyncio.gather(*writes))

    counts = asyncio.run(main())
    assert counts == [1] * 200 + [0] * 5 + [1]
    assert visitors.counts(store)["page_views"] == 201  # all committed when answered
    assert writer.submit([_view("event-thread-01", "visitor-00000001")]).result(30) == 1


def _full(event_id: str, visitor: str, **fields: object) -> visitors.PageView:
    base: dict[str, object] = {
        "site": "www",
        "event_id": event_id,
        "visitor": visitor,
        "occurred_at": datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC),
        "url": "https://www.example.com/p",
        "source": "webtag-test",
    }
    return visitors.PageView(**{**base, **fields})  # type: ignore[arg-type]


def test_views_of_a_linked_visitor_are_stored_alike_on_both_stores(store: Store) -> None:
    # PostgreSQL writes a batch with one statement of its own (CTEs), SQLite through
    # Core: the same rows must come out, interactions' data included.
    from connector.model import Lead
    from connector.pipeline import Pipeline
    from connector.store.contacts import list_contacts, show_contact

    Pipeline(store, workers=0).ingest("crm", [Lead("crm", "row 1", {"email": "a@example.com"})])
    contact_id = list_contacts(store, limit=10)[1][0]["id"]
    with store.engine.begin() as conn:
        visitors.link_visitor(conn, "www", "visitor-linked", contact_id, datetime.now(UTC))
    utm = {"utm_source": "news", "utm_medium": "email"}
    writer = VisitWriter(store)
    counts = writer.submit(
        [
            _full("e-1", "visitor-linked", referrer="", title="Pricing", utm=utm, fbc="fb.1.2.X"),
            _full("e-2", "visitor-linked", referrer="https://r.example/", fbp="fb.1.3.4"),
            _full("e-3", "visitor-anon", title="Home", utm=utm),
        ]
    ).result(30)
    assert counts == 3
    # A later view without ids keeps the visitor's stored ones.
    assert writer.submit([_full("e-4", "visitor-anon")]).result(30) == 1

    views = {
        v["event_id"]: v
        for v in contact_page_views(show_contact(store, contact_id)["interactions"])
    }
    assert views == {
        "e-1": {
            "url": "https://www.example.com/p",
            "event_id": "e-1",
            "site": "www",
            "title": "Pricing",
            "utm": utm,
            "fbc": "fb.1.2.X",
        },
        "e-2": {
            "url": "https://www.example.com/p",
            "event_id": "e-2",
            "site": "www",
            "referrer": "https://r.example/",
        },
    }
    linked = visitors.visitor(store, "www", "visitor-linked")
    anon = visitors.visitor(store, "www", "visitor-anon")
    assert linked is not None and anon is not None
    assert (linked["fbc"], linked["fbp"], linked["utm"]) == ("fb.1.2.X", "fb.1.3.4", utm)
    assert (anon["contact_id"], anon["utm"], anon["fbc"]) == (None, utm, None)
    [first, _] = anon["page_views"]
    assert first["occurred_at"] == datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert (first["title"], first["utm"], first["referrer"], first["contact_id"]) == (
        "Home",
        utm,
        None,
        None,
    )
    assert [v["contact_id"] for v in linked["page_views"]] == [contact_id, contact_id]


def contact_page_views(interactions: list[dict[str, object]]) -> list[dict[str, object]]:
    found = []
    for i in interactions:
        if i["kind"] == "page_view":
            assert i["source"] == "webtag-test"
            found.append(i["data"])
    return found  # type: ignore[return-value]


def test_a_view_the_store_refuses_fails_its_request_alone(store: Store) -> None:
    writer = VisitWriter(store)

    async def main() -> list[object]:
        writes = [writer.write([_view(f"event-{i:04d}", f"visitor-{i:04d}")]) for i in range(6)]
        bad = _full("event-bad", "visitor-0001", url=None)  # NOT NULL: the batch fails
        writes.insert(3, writer.write([bad]))
        return list(await asyncio.gather(*writes, return_exceptions=True))

    outcomes = asyncio.run(main())
    assert [o == 1 for o in outcomes] == [True, True, True, False, True, True, True]
    assert isinstance(outcomes[3], Exception)
    assert visitors.counts(store)["page_views"] == 6
    # The writer goes on after the failure (on PostgreSQL: on a fresh connection).
    assert writer.submit([_view("event-after", "visitor-0001")]).result(30) == 1


def test_a_retry_is_never_committed_before_its_original(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Four writer threads: the original's transaction is slow, its retry arrives while
    # it is under way. A visitor's requests share a thread, so the retry waits and the
    # original is the request that counts the view as new.
    from connector.store import visit_writer

    real = visit_writer.record_new

    def slow(conn: object, views: list[visitors.PageView], now: datetime) -> object:
        if any(v.event_id == "event-slow" and v.url.endswith("/first") for v in views):
            time.sleep(0.5)
        return real(conn, views, now)  # type: ignore[arg-type]

    monkeypatch.setattr(visit_writer, "record_new", slow)
    writer = VisitWriter(store, threads=4)
    original = writer.submit([_full("event-slow", "visitor-x", url="https://e.example/first")])
    time.sleep(0.1)  # the original's thread has taken it
    retry = writer.submit([_full("event-slow", "visitor-x", url="https://e.example/again")])
    assert (original.result(30), retry.result(30)) == (1, 0)
