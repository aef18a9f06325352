"""The outbox: outbound effects written with the change that causes them, delivered later.

`enqueue` runs in the caller's transaction, so a status change and the push it causes
commit together or not at all; the same (destination, key) enqueued twice is one row.
The core job `outbox.deliver` claims due rows, hands them to the plugin's `Destination`
in batches and records each result: delivered_at, or attempts/last_error with an
exponential, capped backoff, or a permanent failure.

Claims: on PostgreSQL the batch is selected `FOR UPDATE SKIP LOCKED` and the row locks
are held while the destination is called, so concurrent replicas take disjoint batches
and a row is never delivered twice by two of them; a replica that dies mid-batch rolls
back and the rows are due again. On SQLite (one process) a short transaction pushes the
rows' available_at forward by a lease and commits before the network call: SQLite's one
write lock is never held across one.

A permanently failed row keeps delivered_at NULL, has available_at set to FAILED_AT (far
future) and last_error starting with "failed: "; `leadsync status` counts them apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, func, select, update

from connector.logs import describe
from connector.ports import Delivered, DeliveryResult, Destination, Failed, OutboxRow, Retry
from connector.store import Store
from connector.store.tables import outbox

log = structlog.get_logger("leadsync.outbox")

LEASE = timedelta(seconds=300)
BACKOFF_BASE = 30.0
BACKOFF_CAP = 3600.0
BATCH = 100
FAILED_AT = datetime(9999, 1, 1, tzinfo=UTC)


def backoff(attempts: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Seconds before the next attempt after `attempts` failed ones: 30, 60, 120 … 3600."""
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


def enqueue(
    conn: Connection,
    destination: str,
    kind: str,
    key: str,
    payload: Any,
    contact_id: int | None = None,
    now: datetime | None = None,
) -> bool:
    """Add an effect in the caller's transaction; False if (destination, key) is already
    there (the first one stands)."""
    now = now or datetime.now(UTC)
    values = {
        "destination": destination,
        "kind": kind,
        "key": key,
        "payload": payload,
        "contact_id": contact_id,
        "created_at": now,
        "available_at": now,
        "attempts": 0,
    }
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = (
            pg_insert(outbox)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["destination", "key"])
        )
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = (
            sqlite_insert(outbox)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["destination", "key"])
        )
    # rowcount is -1 on PostgreSQL with the implicit RETURNING; ask for the id instead.
    return conn.execute(stmt.returning(outbox.c.id)).first() is not None


@dataclass(slots=True)
class DeliveryStats:
    delivered: int = 0
    retried: int = 0
    failed: int = 0

    def add(self, other: DeliveryStats) -> None:
        self.delivered += other.delivered
        self.retried += other.retried
        self.failed += other.failed


def _due(destination: str, now: datetime, limit: int) -> Any:
    t = outbox
    return (
        select(t)
        .where(
            t.c.destination == destination,
            t.c.delivered_at.is_(None),
            t.c.available_at <= now,
        )
        .order_by(t.c.id)
        .limit(limit)
    )


def _row(r: Any, attempts: int) -> OutboxRow:
    return OutboxRow(
        id=r.id,
        destination=r.destination,
        kind=r.kind,
        key=r.key,
        payload=r.payload,
        contact_id=r.contact_id,
        attempts=attempts,
        created_at=r.created_at,
    )


def _call(target: Destination, rows: Sequence[OutboxRow]) -> list[DeliveryResult]:
    try:
        results = list(target.deliver(rows))
    except Exception as exc:  # a destination that raises: retry the whole batch
        error = describe(exc)
        log.warning("outbox.batch_failed", destination=target.name, error=error)
        return [Retry(error) for _ in rows]
    if len(results) < len(rows):
        results += [Retry("no result for this row") for _ in rows[len(results) :]]
    return results


def _record(
    conn: Connection, rows: Sequence[OutboxRow], results: Iterable[DeliveryResult], now: datetime
) -> DeliveryStats:
    stats = DeliveryStats()
    t = outbox
    for row, result in zip(rows, results, strict=False):
        where = t.c.id == row.id
        if isinstance(result, Delivered):
            values: dict[str, Any] = {"delivered_at": now, "last_error": None}
            stats.delivered += 1
        elif isinstance(result, Failed):
            values = {"available_at": FAILED_AT, "last_error": f"failed: {result.error}"}
            stats.failed += 1
        else:
            wait = result.after if result.after is not None else backoff(row.attempts)
            values = {
                "available_at": now + timedelta(seconds=wait),
                "last_error": result.error,
            }
            stats.retried += 1
        conn.execute(update(t).where(where).values(attempts=row.attempts, **values))
    return stats


def deliver_batch(
    store: Store, target: Destination, limit: int = BATCH, now: datetime | None = None
) -> tuple[int, DeliveryStats]:
    """Claim, deliver and record one batch for `target`; returns (rows claimed, stats)."""
    now = now or datetime.now(UTC)
    if store.dialect == "postgresql":
        with store.engine.begin() as conn:
            claimed = conn.execute(
                _due(target.name, now, limit).with_for_update(skip_locked=True)
            ).all()
            rows = [_row(r, r.attempts + 1) for r in claimed]
            if not rows:
                return 0, DeliveryStats()
            results = _call(target, rows)
            return len(rows), _record(conn, rows, results, datetime.now(UTC))
    with store.engine.begin() as conn:
        claimed = conn.execute(_due(target.name, now, limit)).all()
        rows = [_row(r, r.attempts + 1) for r in claimed]
        if not rows:
            return 0, DeliveryStats()
        conn.execute(
            update(outbox)
            .where(outbox.c.id.in_([r.id for r in rows]))
            .values(available_at=now + LEASE, attempts=outbox.c.attempts + 1)
        )
    results = _call(target, rows)
    with store.engine.begin() as conn:
        return len(rows), _record(conn, rows, results, datetime.now(UTC))


def deliver(
    store: Store,
    targets: Iterable[Destination],
    stopping: Any = None,
    limit: int = BATCH,
) -> DeliveryStats:
    """Deliver every due row of every destination, batch by batch, until none is due or
    `stopping` (a threading.Event) is set."""
    total = DeliveryStats()
    for target in targets:
        while stopping is None or not stopping.is_set():
            claimed, stats = deliver_batch(store, target, limit)
            total.add(stats)
            if claimed:
                log.info(
                    "outbox.batch",
                    destination=target.name,
                    delivered=stats.delivered,
                    retried=stats.retried,
                    failed=stats.failed,
                )
            if claimed < limit:
                break
    return total


def depth(store: Store, now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Per destination: rows pending (not delivered, not failed), the oldest one's age in
    seconds, and rows failed for good."""
    now = now or datetime.now(UTC)
    t = outbox
    found: dict[str, dict[str, Any]] = {}
    with store.reader.connect() as conn:
        pending = conn.execute(
            select(t.c.destination, func.count(), func.min(t.c.created_at))
            .where(t.c.delivered_at.is_(None), t.c.available_at < FAILED_AT)
            .group_by(t.c.destination)
        )
        for destination, count, oldest in pending:
            age = (now - oldest).total_seconds() if oldest is not None else 0.0
            found[destination] = {"pending": int(count), "oldest_age": max(0.0, age), "failed": 0}
        failed = conn.execute(
            select(t.c.destination, func.count())
            .where(t.c.delivered_at.is_(None), t.c.available_at >= FAILED_AT)
            .group_by(t.c.destination)
        )
        for destination, count in failed:
            entry = found.setdefault(destination, {"pending": 0, "oldest_age": 0.0, "failed": 0})
            entry["failed"] = int(count)
    return found


__all__ = ["Failed", "Retry", "backoff", "deliver", "deliver_batch", "depth", "enqueue"]
