"""Group commit: the writes of concurrent requests, one transaction for many.

A daemon answers many small requests a second (webhook bodies, web tag page views);
a transaction each would queue them at SQLite's one write lock or at PostgreSQL's
commits. A `GroupCommit` writer thread takes everything that arrived while its
previous transaction committed (up to `MAX_BATCH`, counted by `size`), writes it in
one transaction and only then answers each request, so an acknowledgement still means
committed. If the store refuses the batch, each request is written in a transaction
of its own and only what still fails is answered with the error: one bad request does
not fail its neighbours.

Waiters are either `concurrent.futures.Future`s (`put`, for threads and for
`asyncio.wrap_future`) or asyncio futures (`write`, for an event loop): the writer
wakes each loop once per transaction for all of that loop's requests in it, where a
`Future` per request costs a lock, a condition and a wake-up of the loop per request.

On PostgreSQL each writer thread keeps one connection of its own (outside the store's
pool, so writers never starve the jobs of connections, and with no pre-ping: a batch
is a round trip or three, a ping would be one more) and closes it after `IDLE`
seconds without work. SQLite takes a pooled connection per transaction (no round
trips to save, and the store's write turns live on its engine).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, InvalidStateError
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.pool import NullPool

from connector.store.engine import Store, _loads, dump_json

P = TypeVar("P")
"""What one request writes."""
R = TypeVar("R")
"""What it is answered with once committed."""

_Outcome = tuple[Any, Any]  # (waiter, result or the exception)


class GroupCommit(Generic[P, R]):
    """A writer of concurrent requests' payloads, one transaction for everything queued
    while the previous one committed. Subclasses say how a batch is written (`commit`)
    and, if payloads differ in weight, how much one counts (`size`)."""

    MAX_BATCH = 500
    """Most `size` units in one transaction."""
    NAME = "group-commit"
    """The writer thread's name (NAME-0, NAME-1, ... when there are several)."""
    IDLE = 5.0
    """Seconds a PostgreSQL writer thread keeps its connection with nothing to write."""
    AUTOCOMMIT = False
    """True when `commit` writes with ONE statement on PostgreSQL: the statement is its
    own transaction (atomic, committed durably when it returns), which saves the BEGIN
    and COMMIT round trips."""

    LANES = False
    """True: each writer thread has a queue of its own and `lane` says which one a
    payload takes, so payloads of one lane are written in the order they came (with
    one shared queue, two threads' transactions race: a retry could commit before the
    original it followed)."""

    def __init__(self, store: Store, threads: int = 1) -> None:
        self.store = store
        self.threads = threads
        shared: queue.SimpleQueue[tuple[P, Any]] = queue.SimpleQueue()
        self._queues = [queue.SimpleQueue() if self.LANES else shared for _ in range(threads)]
        self._started = False
        self._start = threading.Lock()
        self._own: Engine | None = None
        # Committed transactions and the payloads they held (the fallback's one-payload
        # transactions included): how well requests are grouped, for /metrics. Written
        # by the writer threads only; a torn read is off by one at most.
        self.transactions = 0
        self.items = 0

    # -- what a subclass provides ---------------------------------------------------

    def commit(self, conn: Connection, payloads: list[P]) -> list[R]:
        """Write `payloads` in the caller's transaction; one result per payload, in
        order. Raise to refuse the batch (each payload is then tried alone)."""
        raise NotImplementedError

    def size(self, payload: P) -> int:
        """How much of `MAX_BATCH` one payload takes."""
        return 1

    def lane(self, payload: P) -> int:
        """Which writer thread's queue a payload takes (with `LANES`; any int)."""
        return 0

    # -- what requests call ---------------------------------------------------------

    def put(self, payload: P) -> Future[R]:
        """Queue a payload; the future gives its result once it is committed."""
        done: Future[R] = Future()
        self._enqueue(payload, done)
        return done

    async def write(self, payload: P) -> R:
        """Write a payload; its result once committed (or the store's error). For an
        event loop: one wake-up of the loop per transaction, whatever it holds."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._enqueue(payload, done)
        return await done

    # -- the writer threads ---------------------------------------------------------

    def _enqueue(self, payload: P, done: Any) -> None:
        lane = self.lane(payload) % self.threads if self.LANES else 0
        self._queues[lane].put((payload, done))
        if not self._started:
            with self._start:
                if not self._started:
                    for n in range(self.threads):
                        name = self.NAME if self.threads == 1 else f"{self.NAME}-{n}"
                        threading.Thread(
                            target=self._run, args=(self._queues[n],), name=name, daemon=True
                        ).start()
                    self._started = True

    def _engine(self) -> Engine:
        """The engine of this writer's own PostgreSQL connections (NullPool: a
        connection closed after IDLE is closed for real)."""
        with self._start:
            if self._own is None:
                self._own = create_engine(
                    self.store.engine.url,
                    poolclass=NullPool,
                    hide_parameters=True,  # parameters are people's emails and phones
                    json_serializer=dump_json,
                    json_deserializer=_loads,
                    **({"isolation_level": "AUTOCOMMIT"} if self.AUTOCOMMIT else {}),
                )
            return self._own

    def _run(self, source: queue.SimpleQueue[tuple[P, Any]]) -> None:
        held = self.store.dialect == "postgresql"
        slot: list[Connection] = []  # this thread's connection, when it holds one
        while True:
            try:
                first = source.get(timeout=self.IDLE if slot else None)
            except queue.Empty:
                slot.pop().close()  # idle: give the server its connection back
                continue
            batch = [first]
            size = self.size(first[0])
            while size < self.MAX_BATCH:
                try:
                    batch.append(source.get_nowait())
                except queue.Empty:
                    break
                size += self.size(batch[-1][0])
            outcomes = self._write(batch, slot if held else None)
            self.transactions += 1
            self.items += len(batch)
            _deliver(outcomes)

    def _write(self, batch: list[tuple[P, Any]], slot: list[Connection] | None) -> list[_Outcome]:
        payloads = [p for p, _ in batch]
        try:
            with self._transaction(slot) as conn:
                results = self.commit(conn, payloads)
        except Exception:
            # One request the store refuses must not fail its neighbours: each is
            # written alone, and only what still fails is answered with an error.
            outcomes: list[_Outcome] = []
            for payload, done in batch:
                try:
                    with self._transaction(slot) as conn:
                        [result] = self.commit(conn, [payload])
                except Exception as exc:
                    outcomes.append((done, exc))
                else:
                    outcomes.append((done, result))
            return outcomes
        return [(done, r) for (_, done), r in zip(batch, results, strict=True)]

    @contextlib.contextmanager
    def _transaction(self, slot: list[Connection] | None) -> Iterator[Connection]:
        if slot is None:
            with self.store.engine.begin() as conn:
                yield conn
            return
        if not slot:
            slot.append(self._engine().connect())
        conn = slot[0]
        try:
            with conn.begin():
                yield conn
        except Exception:
            # Whatever went wrong, the next transaction starts on a fresh connection
            # (a broken one would fail every batch after it).
            slot.pop().close()
            raise


def _deliver(outcomes: list[_Outcome]) -> None:
    """Answer every waiter of a transaction: concurrent futures at once, each event
    loop's futures with one wake-up of that loop."""
    loops: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for done, outcome in outcomes:
        if isinstance(done, Future):
            # A waiter that gave up (asyncio.wrap_future cancels the Future when its
            # task is cancelled) cannot be answered: setting it would raise and end
            # the writer thread, and every later request would wait forever.
            with contextlib.suppress(InvalidStateError):
                if isinstance(outcome, BaseException):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)
        else:
            loops.setdefault(done.get_loop(), []).append((done, outcome))
    for loop, settled in loops.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[_Outcome]) -> None:
    for done, outcome in settled:
        if done.done():  # the request was cancelled (its client went away)
            continue
        if isinstance(outcome, BaseException):
            done.set_exception(outcome)
        else:
            done.set_result(outcome)


W = TypeVar("W", bound=GroupCommit[Any, Any])


class Registry(Generic[W]):
    """One writer of a kind per store, made on first use and kept for the process."""

    def __init__(self, make: type[W]) -> None:
        self._make = make
        self._writers: dict[int, W] = {}
        self._lock = threading.Lock()

    def __call__(self, store: Store) -> W:
        with self._lock:
            # The writer holds its store, so the id cannot be reused while the entry lives.
            found = self._writers.get(id(store))
            if found is None:
                found = self._writers[id(store)] = self._make(store)
            return found
