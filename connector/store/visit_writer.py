"""Page views of concurrent collector requests, written together.

The collector answers thousands of small requests a second; a transaction each would
queue them at SQLite's write lock (or PostgreSQL's commits). A `VisitWriter` writes
everything that arrived while the previous transaction committed in one (group commit,
as `runtime.inbox.GroupWriter` does for webhook bodies), and answers each request only
once its views are committed, so nothing acknowledged is lost.

An event loop waits with `await writer.write(views)`: the writer thread wakes each
loop once per transaction for all of that loop's requests in it, where a
`concurrent.futures.Future` per request (`submit`) costs a lock, a condition and a
wake-up of the loop per request (`asyncio.wrap_future`), a sixth of the collector's
event-loop time in a profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from connector.store.engine import Store
from connector.store.visitors import PageView, record_new, record_page_views


class VisitWriter:
    """Writes the page views of concurrent collector requests together: one
    transaction for everything queued while the previous one committed. A request is
    answered only once its views are committed, so nothing acknowledged is lost."""

    # Views per transaction: 12 values each stays under SQLite's 32,766 bound values.
    MAX_BATCH = 1000

    def __init__(self, store: Store, threads: int | None = None) -> None:
        self.store = store
        # PostgreSQL takes concurrent writers: while one transaction waits for its
        # commit (an fsync, a busy server), the next batch is already being written.
        # SQLite has one write lock, so one thread is all it can use.
        self.threads = threads or (4 if store.dialect == "postgresql" else 1)
        # Each item: views and who waits for them (a concurrent or an asyncio future).
        self._queue: queue.SimpleQueue[tuple[list[PageView], Any]] = queue.SimpleQueue()
        self._started = False
        self._start = threading.Lock()

    def submit(self, views: list[PageView]) -> Future[int]:
        """Queue views; the future gives how many were new once they are committed."""
        done: Future[int] = Future()
        self._put(views, done)
        return done

    async def write(self, views: list[PageView]) -> int:
        """Write views; how many were new, once they are committed (or the store's
        error). For an event loop: see the module's docstring."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._put(views, done)
        return await done

    def _put(self, views: list[PageView], done: Any) -> None:
        self._queue.put((views, done))
        if not self._started:
            with self._start:
                if not self._started:
                    for n in range(self.threads):
                        threading.Thread(
                            target=self._run, name=f"visit-writer-{n}", daemon=True
                        ).start()
                    self._started = True

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            size = len(batch[0][0])
            while size < self.MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
                size += len(batch[-1][0])
            outcomes: list[tuple[Any, int | BaseException]] = []
            try:
                with self.store.engine.begin() as conn:
                    every = [v for views, _ in batch for v in views]
                    inserted = record_new(conn, every, datetime.now(UTC))
            except Exception:
                # One request the store refuses must not fail its neighbours: each is
                # written alone, and only what still fails is answered with an error.
                for views, done in batch:
                    try:
                        with self.store.engine.begin() as conn:
                            n = record_page_views(conn, views, datetime.now(UTC))
                        outcomes.append((done, n))
                    except Exception as exc:
                        outcomes.append((done, exc))
            else:
                # A retry can share a transaction with its original: the view is new
                # for the first request that brought it only.
                claimed: set[tuple[str, str]] = set()
                for views, done in batch:
                    new = {(v.site, v.event_id) for v in views} & inserted - claimed
                    claimed |= new
                    outcomes.append((done, len(new)))
            _deliver(outcomes)


def _deliver(outcomes: list[tuple[Any, int | BaseException]]) -> None:
    """Answer every waiter of a transaction: concurrent futures at once, each event
    loop's futures with one wake-up of that loop."""
    loops: dict[asyncio.AbstractEventLoop, list[tuple[Any, int | BaseException]]] = {}
    for done, outcome in outcomes:
        if isinstance(done, Future):
            if isinstance(outcome, BaseException):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)
        else:
            loops.setdefault(done.get_loop(), []).append((done, outcome))
    for loop, settled in loops.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[Any, int | BaseException]]) -> None:
    for done, outcome in settled:
        if done.done():  # the request was cancelled (its client went away)
            continue
        if isinstance(outcome, BaseException):
            done.set_exception(outcome)
        else:
            done.set_result(outcome)


_WRITERS: dict[int, VisitWriter] = {}
_WRITERS_LOCK = threading.Lock()


def writer(store: Store) -> VisitWriter:
    """The store's one VisitWriter (made on first use, kept for the process)."""
    with _WRITERS_LOCK:
        found = _WRITERS.get(id(store))
        if found is None:
            found = _WRITERS[id(store)] = VisitWriter(store)
        return found
