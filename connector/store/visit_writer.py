"""Page views of concurrent collector requests, written together.

The collector answers thousands of small requests a second; a transaction each would
queue them at SQLite's write lock (or PostgreSQL's commits). A `VisitWriter` is a
`store.group_commit.GroupCommit` (as the webhook inbox's `GroupWriter` is): everything
that arrived while the previous transaction committed goes in one, and each request is
answered only once its views are committed, so nothing acknowledged is lost.

An event loop waits with `await writer.write(views)`: the writer thread wakes each
loop once per transaction for all of that loop's requests in it, where a
`concurrent.futures.Future` per request (`submit`) costs a lock, a condition and a
wake-up of the loop per request (`asyncio.wrap_future`), a sixth of the collector's
event-loop time in a profile.

On PostgreSQL a batch is one statement (`visitors.record_new`), so it runs as its own
transaction: one round trip a batch on a connection the writer thread keeps.
"""

from __future__ import annotations

from concurrent.futures import Future
from datetime import UTC, datetime

from sqlalchemy import Connection

from connector.store.engine import Store
from connector.store.group_commit import GroupCommit, Registry
from connector.store.visitors import PageView, record_new


class VisitWriter(GroupCommit[list[PageView], int]):
    """Writes the page views of concurrent collector requests together: one
    transaction for everything queued while the previous one committed. A request is
    answered, with how many of its views were new, only once they are committed."""

    # Views per transaction: 12 values each stays under SQLite's 32,766 bound values.
    MAX_BATCH = 1000
    NAME = "visit-writer"
    # PostgreSQL's batch is one statement (see `visitors.record_new`): its own
    # transaction, committed (durably: synchronous_commit stays on) when it returns.
    AUTOCOMMIT = True
    # A visitor's requests go to one writer thread, in order: a retried batch is then
    # never committed before the original it repeats (which counts its views as new),
    # and two threads never wait on each other for one visitor's row lock.
    LANES = True

    def __init__(self, store: Store, threads: int | None = None) -> None:
        # PostgreSQL takes concurrent writers: while one transaction waits for its
        # commit (an fsync, a busy server), the next batch is already being written.
        # SQLite has one write lock, so one thread is all it can use.
        super().__init__(store, threads or (4 if store.dialect == "postgresql" else 1))

    def size(self, payload: list[PageView]) -> int:
        return len(payload)

    def lane(self, payload: list[PageView]) -> int:
        # A collector request is one visitor's; an empty one can go anywhere.
        return hash((payload[0].site, payload[0].visitor)) if payload else 0

    def submit(self, views: list[PageView]) -> Future[int]:
        """Queue views; the future gives how many were new once they are committed."""
        return self.put(views)

    def commit(self, conn: Connection, payloads: list[list[PageView]]) -> list[int]:
        inserted = record_new(conn, [v for views in payloads for v in views], datetime.now(UTC))
        # A retry can share a transaction with its original: the view is new for the
        # first request that brought it only.
        claimed: set[tuple[str, str]] = set()
        counts = []
        for views in payloads:
            new = {(v.site, v.event_id) for v in views} & inserted - claimed
            claimed |= new
            counts.append(len(new))
        return counts


writer = Registry(VisitWriter)
"""The store's one VisitWriter (made on first use, kept for the process)."""
