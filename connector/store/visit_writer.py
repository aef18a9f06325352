"""Page views of concurrent collector requests, written together.

The collector answers thousands of small requests a second; a transaction each would
queue them at SQLite's write lock (or PostgreSQL's commits). A `VisitWriter` writes
everything that arrived while the previous transaction committed in one (group commit,
as `runtime.inbox.GroupWriter` does for webhook bodies), and answers each request only
once its views are committed, so nothing acknowledged is lost.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from datetime import UTC, datetime

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
        self._queue: queue.SimpleQueue[tuple[list[PageView], Future[int]]] = queue.SimpleQueue()
        self._started = False
        self._start = threading.Lock()

    def submit(self, views: list[PageView]) -> Future[int]:
        """Queue views; the future gives how many were new once they are committed."""
        done: Future[int] = Future()
        self._queue.put((views, done))
        if not self._started:
            with self._start:
                if not self._started:
                    for n in range(self.threads):
                        threading.Thread(
                            target=self._run, name=f"visit-writer-{n}", daemon=True
                        ).start()
                    self._started = True
        return done

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
                            done.set_result(record_page_views(conn, views, datetime.now(UTC)))
                    except Exception as exc:
                        done.set_exception(exc)
                continue
            for views, done in batch:
                done.set_result(sum((v.site, v.event_id) in inserted for v in views))


_WRITERS: dict[int, VisitWriter] = {}
_WRITERS_LOCK = threading.Lock()


def writer(store: Store) -> VisitWriter:
    """The store's one VisitWriter (made on first use, kept for the process)."""
    with _WRITERS_LOCK:
        found = _WRITERS.get(id(store))
        if found is None:
            found = _WRITERS[id(store)] = VisitWriter(store)
        return found
