"""Webhook deliveries: stored before the 2xx, processed by a drain job afterwards.

A webhook handler verifies the signature, stores the raw body (through the store's
`GroupWriter`, which commits concurrent requests together) and answers as soon as it is
committed (Meta and HubSpot give up after a few seconds and then retry for hours). The drain job
`claim`s a batch with a lease, does the slow work (fetch each lead, ingest) and marks
the deliveries `done`. A replica that dies mid-batch leaves its lease to expire and
another replica takes the batch again; processing is idempotent (leads are keyed by
their source id), so at-least-once is enough.

Claims are short transactions of their own: on SQLite a transaction holds the only
write lock, and the ingest that follows needs it.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from connector.store import Store
from connector.store.group_commit import GroupCommit, Registry
from connector.store.tables import webhook_deliveries
from connector.text import clean_bytes

LEASE = timedelta(seconds=120)
DEFAULT_ATTEMPTS = 5
"""Failed attempts after which a delivery becomes a dead letter (`server.webhook_attempts`)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook request body, as received."""

    id: int
    body: str
    received_at: datetime
    attempts: int


def put(store: Store, source: str, body: bytes, now: datetime | None = None) -> int:
    """Persist a verified delivery; returns its id."""
    with store.engine.begin() as conn:
        result = conn.execute(
            insert(webhook_deliveries)
            .values(_row(source, body, now or datetime.now(UTC)))
            .returning(webhook_deliveries.c.id)
        )
        return int(result.scalar_one())


def _row(source: str, body: bytes, received_at: datetime) -> dict[str, Any]:
    return {
        "source": source,
        # A raw NUL is the one byte a text column refuses (PostgreSQL): removed, as it
        # would be from any value, so the body can be stored at all.
        "body": clean_bytes(body).decode("utf-8", errors="replace"),
        "received_at": received_at,
        "attempts": 0,
    }


class GroupWriter(GroupCommit[tuple[str, bytes, datetime], None]):
    """Stores the deliveries of concurrent webhook requests together: one transaction
    (one commit, one turn at SQLite's write lock) for everything that arrived while the
    previous one committed. A request still gets its answer only once its body is
    committed, so nothing acknowledged is lost; at 200 requests a second this is tens
    of commits a second instead of 200 that queue for the lock or for connections
    (group commit, as databases do for their own log: `store.group_commit`)."""

    MAX_BATCH = 500
    NAME = "inbox-writer"

    def submit(self, source: str, body: bytes) -> Future[None]:
        """Queue a verified delivery; the future completes when it is committed."""
        return self.put((source, body, datetime.now(UTC)))

    def commit(self, conn: Connection, payloads: list[tuple[str, bytes, datetime]]) -> list[None]:
        conn.execute(
            insert(webhook_deliveries),
            [_row(source, body, at) for source, body, at in payloads],
        )
        return [None] * len(payloads)


writer = Registry(GroupWriter)
"""The store's one GroupWriter (made on first use, kept for the process)."""


def claim(
    store: Store, source: str, limit: int = 200, now: datetime | None = None
) -> list[Delivery]:
    """Take up to `limit` unprocessed deliveries of `source` that nobody holds, oldest
    first, under a lease. On PostgreSQL `FOR UPDATE SKIP LOCKED` lets replicas claim
    side by side without waiting on each other."""
    now = now or datetime.now(UTC)
    t = webhook_deliveries
    with store.engine.begin() as conn:
        oldest = (
            select(t.c.id)
            .where(
                t.c.source == source,
                t.c.processed_at.is_(None),
                t.c.dead_at.is_(None),
                (t.c.claimed_until.is_(None)) | (t.c.claimed_until < now),
            )
            .order_by(t.c.id)
            .limit(limit)
        )
        if conn.dialect.name == "postgresql":
            oldest = oldest.with_for_update(skip_locked=True)
        # One statement, one round trip: the drain claims every few milliseconds.
        rows = conn.execute(
            update(t)
            .where(t.c.id.in_(oldest.scalar_subquery()))
            .values(claimed_until=now + LEASE, attempts=t.c.attempts + 1)
            .returning(t.c.id, t.c.body, t.c.received_at, t.c.attempts)
        ).all()
    found = [Delivery(r.id, r.body, r.received_at, r.attempts) for r in rows]
    return sorted(found, key=lambda d: d.id)  # RETURNING promises no order


def done(store: Store, ids: list[int], error: str | None = None) -> None:
    """Mark deliveries processed (with the reason when they could not be used: a
    malformed body is kept for a person to look at, not retried forever)."""
    if not ids:
        return
    with store.engine.begin() as conn:
        mark_done(conn, ids, error)


def mark_done(conn: Connection, ids: list[int], error: str | None = None) -> None:
    """`done` inside the caller's transaction: the drain marks deliveries done in the
    transaction that stores their leads (one commit less a batch, and never one
    without the other)."""
    if ids:
        conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id.in_(ids))
            .values(processed_at=datetime.now(UTC), claimed_until=None, error=error)
        )


def release(store: Store, ids: list[int], error: str, *, until: datetime | None = None) -> None:
    """Give deliveries back without counting the attempt (their Page is paused or its
    token is dead: not their fault); claimed again after `until` (default: at once)."""
    if not ids:
        return
    t = webhook_deliveries
    with store.engine.begin() as conn:
        conn.execute(
            update(t)
            .where(t.c.id.in_(ids))
            .values(claimed_until=until, error=error, attempts=t.c.attempts - 1)
        )


def backoff(attempts: int) -> timedelta:
    """How long a delivery that failed `attempts` times waits before its next claim:
    30 s, doubling, at most an hour (a Graph outage is not hammered, and 5 attempts
    span about 8 minutes)."""
    return min(timedelta(seconds=30 * 2 ** max(attempts - 1, 0)), timedelta(hours=1))


def fail(
    store: Store,
    failures: list[tuple[Delivery, str]],
    max_attempts: int = DEFAULT_ATTEMPTS,
    *,
    now: datetime | None = None,
) -> list[int]:
    """Record that processing these deliveries failed (with why): each is claimed again
    after its backoff, or, once it has failed `max_attempts` times, set aside as a dead
    letter (`dead_at`) that no drain claims again. Returns the ids that died."""
    if not failures:
        return []
    now = now or datetime.now(UTC)
    t = webhook_deliveries
    died: list[int] = []
    with store.engine.begin() as conn:
        for delivery, error in failures:
            values: dict[str, Any] = {"error": error[:1000]}
            if delivery.attempts >= max_attempts:
                values.update(dead_at=now, claimed_until=None)
                died.append(delivery.id)
            else:
                values["claimed_until"] = now + backoff(delivery.attempts)
            conn.execute(update(t).where(t.c.id == delivery.id).values(**values))
    return died


def bury(store: Store, failures: list[tuple[Delivery, str]]) -> list[int]:
    """Dead-letter deliveries at once: what failed cannot succeed by retrying (the Graph
    refuses the request itself)."""
    return fail(store, failures, max_attempts=0)


def pending(store: Store, source: str | None = None) -> int:
    """Deliveries not processed yet (dead letters are not pending: nobody claims them)."""
    t = webhook_deliveries
    query = (
        select(func.count()).select_from(t).where(t.c.processed_at.is_(None), t.c.dead_at.is_(None))
    )
    if source:
        query = query.where(t.c.source == source)
    with store.reader.connect() as conn:
        return int(conn.execute(query).scalar_one())


def counts(store: Store) -> dict[str, dict[str, int]]:
    """Per source: deliveries pending and dead-lettered (for /metrics)."""
    t = webhook_deliveries
    dead = t.c.dead_at.is_not(None)
    query = (
        select(t.c.source, dead.label("dead"), func.count())
        .where(t.c.processed_at.is_(None))
        .group_by(t.c.source, dead)
    )
    found: dict[str, dict[str, int]] = {}
    with store.reader.connect() as conn:
        for source, is_dead, n in conn.execute(query):
            entry = found.setdefault(source, {"pending": 0, "dead": 0})
            entry["dead" if is_dead else "pending"] += int(n)
    return found


def dead_letters(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    """The newest dead-lettered deliveries (id, source, when, attempts, last error); the
    body stays in the table (it may hold personal data)."""
    t = webhook_deliveries
    query = (
        select(t.c.id, t.c.source, t.c.received_at, t.c.dead_at, t.c.attempts, t.c.error)
        .where(t.c.dead_at.is_not(None), t.c.processed_at.is_(None))
        .order_by(t.c.dead_at.desc(), t.c.id.desc())
        .limit(limit)
    )
    with store.reader.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
