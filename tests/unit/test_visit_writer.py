"""The page-view writer answers an event loop's concurrent writes after their commit,
with each request's count of new views (a retried event is not new), whether they
share a transaction or not; a thread's `submit` gets the same."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

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
