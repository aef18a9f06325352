"""Webhook deliveries: stored before the 2xx, processed by a drain job afterwards.

A webhook handler verifies the signature, `put`s the raw body and answers at once (Meta
and HubSpot give up after a few seconds and then retry for hours). The drain job
`claim`s a batch with a lease, does the slow work (fetch each lead, ingest) and marks
the deliveries `done`. A replica that dies mid-batch leaves its lease to expire and
another replica takes the batch again; processing is idempotent (leads are keyed by
their source id), so at-least-once is enough.

Claims are short transactions of their own: on SQLite a transaction holds the only
write lock, and the ingest that follows needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, func, insert, select, update

from connector.store import Store
from connector.store.tables import webhook_deliveries

LEASE = timedelta(seconds=120)


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
            .values(
                source=source,
                body=body.decode("utf-8", errors="replace"),
                received_at=now or datetime.now(UTC),
                attempts=0,
            )
            .returning(webhook_deliveries.c.id)
        )
        return int(result.scalar_one())


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


def release(store: Store, ids: list[int], error: str) -> None:
    """Give deliveries back (a transient failure): they are claimed again later."""
    if not ids:
        return
    with store.engine.begin() as conn:
        conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id.in_(ids))
            .values(claimed_until=None, error=error)
        )


def pending(store: Store, source: str | None = None) -> int:
    """Deliveries not processed yet."""
    t = webhook_deliveries
    query = select(func.count()).select_from(t).where(t.c.processed_at.is_(None))
    if source:
        query = query.where(t.c.source == source)
    with store.reader.connect() as conn:
        return int(conn.execute(query).scalar_one())
