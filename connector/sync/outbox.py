"""The outbox: every outbound effect is written with the change that causes it, and
delivered later, at least once, in order per (destination, contact).

Writing: `enqueue(conn, destination, kind, key, contact_id, payload)` inside the
caller's transaction is THE way any code (the change feed, the status engine, an
import) produces an outbound effect; the change and its effect commit together or not
at all. `key` names the effect: the same (destination, key) enqueued again while an
earlier row for it is still undelivered is that row (a retried transaction, a replayed
event); once that row is delivered, the same key is a new effect (Won -> Lost -> Won
pushes Won twice). So a key must name one occurrence (e.g. a status-history id), not
only a value.

Delivering (the daemon's `outbox.deliver` job, on any replica, both stores):
1. claim: one short transaction sets a lease (`claimed_until`, `claimed_by`) on up to
   `batch` due rows and counts the attempt, then commits;
2. the `Destination` is called with no transaction open and no row locked;
3. record: another short transaction writes each row's result, only if the lease is
   still this claim's (a claimer whose lease ran out and was taken over changes
   nothing, except that a delivery it made is recorded as delivered), and hands each
   finished row's contact on to its next row. It never waits for a lock: a row an
   enqueue of its contact holds is recorded a moment later, in another transaction.
A replica that dies between 1 and 3 leaves the lease to run out; the row is claimed
again by anyone, with its attempt already counted. A row whose last allowed attempt
never reported back becomes a dead letter at its next claim, so a row that kills the
process ends dead instead of killing every replica forever.

Order: a row is claimed only when no earlier row (lower id) for the same destination
and contact is still pending (waiting, backing off or leased); dead letters do not
block. One claim therefore takes at most one row per contact, and a destination sees a
contact's effects one after another. The claim reads only the heads of each (destination,
contact), through an index of pending heads in the order they fall due (connector.sync.
outbox_heads, migration 0013), so its cost is the batch's, not the backlog's: rows
waiting behind their contact's head or backing off are never read. On PostgreSQL the
candidates are locked `FOR UPDATE SKIP LOCKED` so concurrent claimers skip each other's
rows; the per-candidate order check (one index probe) reads the statement's snapshot,
in which an earlier row can only look *more* pending than it is (rows go from pending
to delivered or dead, never back, except by `retry`), so two claimers never hold rows 1
and 2 of one contact at once. Ids follow commit order for one contact because writers
of a contact serialise on its row: enqueue after the write.

States: pending (delivered_at and dead_at NULL), delivered, failed (a dead letter:
`Failed` from the destination, or attempts exhausted; keeps the last error), dismissed
(a dead letter or pending row a person set aside). `leadsync outbox list|retry|dismiss`.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import structlog
from sqlalchemy import (
    Connection,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError

from connector.config import OutboxConfig
from connector.logs import describe
from connector.ports import Delivered, DeliveryResult, Destination, Failed, OutboxRow, Retry
from connector.store import Store
from connector.store.races import lost_race
from connector.store.tables import outbox
from connector.sync.outbox_heads import (
    advance_heads,
    contacts_waiting,
    first_pending_of_its_contact,
    heads_of_the_skipped,
    lock,
)

log = structlog.get_logger("leadsync.outbox")

DEFAULTS = OutboxConfig()
State = Literal["pending", "failed", "delivered", "dismissed"]
STATES: tuple[State, ...] = ("pending", "failed", "delivered", "dismissed")

_t = outbox
_PENDING = and_(_t.c.delivered_at.is_(None), _t.c.dead_at.is_(None))
# Pending rows under a lease (live or run out): the predicate of their partial index.
_LEASED = and_(_PENDING, _t.c.claimed_until.is_not(None))
# Pending heads: the predicate of ix_outbox_heads_due (`head = true` renders as the
# index's own spelling on each dialect).
_HEADS = and_(_PENDING, _t.c.head == True)  # noqa: E712 - SQL, not Python truth


def backoff(
    attempts: int, base: float = DEFAULTS.backoff_base, cap: float = DEFAULTS.backoff_cap
) -> float:
    """The longest wait after `attempts` failed attempts: 30, 60, 120 … 3600 seconds."""
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


def jittered(attempts: int, settings: OutboxConfig = DEFAULTS) -> float:
    """The wait actually used: between half and all of `backoff` ("equal jitter"), so
    rows that failed together (a destination outage) do not all come back together."""
    ceiling = backoff(attempts, settings.backoff_base, settings.backoff_cap)
    return random.uniform(ceiling / 2, ceiling)


def enqueue(
    conn: Connection,
    destination: str,
    kind: str,
    key: str,
    contact_id: int | None,
    payload: Any,
    now: datetime | None = None,
) -> bool:
    """Write an outbound effect in the caller's transaction (the only way effects are
    written). `key` names this occurrence of the effect; `contact_id` orders it after
    the contact's earlier effects for `destination` (None: unordered). False if an
    undelivered row already has (destination, key): that row is this effect."""
    return enqueue_many(conn, [(destination, kind, key, contact_id, payload)], now) == 1


def enqueue_many(
    conn: Connection,
    effects: Sequence[tuple[str, str, str, int | None, Any]],
    now: datetime | None = None,
) -> int:
    """`enqueue` for many effects, as (destination, kind, key, contact_id, payload), in
    one statement (ids follow the given order, so a contact's effects keep it). Returns
    how many were new (see `enqueue`)."""
    if not effects:
        return 0
    now = now or datetime.now(UTC)
    waiting = contacts_waiting(conn, effects)
    values = []
    for destination, kind, key, contact_id, payload in effects:
        # A row heads its (destination, contact) when nothing of it is pending: neither
        # in the table nor earlier in this call.
        heads = contact_id is None or (destination, contact_id) not in waiting
        if contact_id is not None:
            waiting.add((destination, contact_id))
        values.append(
            {
                "destination": destination,
                "kind": kind,
                "key": key,
                "payload": payload,
                "contact_id": contact_id,
                "created_at": now,
                "available_at": now,
                "attempts": 0,
                "head": heads,
            }
        )
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(_t)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(_t)
    stmt = stmt.on_conflict_do_nothing(index_elements=["destination", "key"], index_where=_PENDING)
    # executemany with RETURNING: SQLAlchemy sends it as multi-row INSERTs ("insertmanyvalues")
    # from one cached statement, rows in the given order.
    written = len(conn.execute(stmt.returning(_t.c.id), values).all())
    if written < len(values):
        heads_of_the_skipped(conn, values)
    return written


@dataclass(slots=True)
class DeliveryStats:
    """What deliveries did: counts only (never anything personal)."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    """Rows that became dead letters (Failed, or attempts exhausted)."""
    stale: int = 0
    """Results not recorded: the lease had been taken over by another claimer."""

    def add(self, other: DeliveryStats) -> None:
        self.delivered += other.delivered
        self.retried += other.retried
        self.failed += other.failed
        self.stale += other.stale


def _row(r: Any) -> OutboxRow:
    return OutboxRow(
        id=r.id,
        destination=r.destination,
        kind=r.kind,
        key=r.key,
        payload=r.payload,
        contact_id=r.contact_id,
        attempts=r.attempts,
        created_at=r.created_at,
    )


@dataclass(frozen=True, slots=True)
class Claim:
    """Rows leased to one claimer (`owner`) until `until`."""

    owner: str
    until: datetime
    rows: list[OutboxRow] = field(default_factory=list)


def _bury_abandoned(
    conn: Connection, destination: str, settings: OutboxConfig, now: datetime
) -> int:
    """Rows whose last allowed attempt left no result (its claimer died, or took longer
    than the lease) become dead letters instead of being claimed again."""
    abandoned = conn.execute(
        select(_t.c.id, _t.c.attempts, _t.c.claimed_by, _t.c.last_error)
        .where(
            _t.c.destination == destination,
            _LEASED,
            _t.c.claimed_until < now,
            _t.c.attempts >= settings.max_attempts,
        )
        .with_for_update(skip_locked=True, key_share=True)  # the next claim buries the rest
    ).all()
    for r in abandoned:
        before = f"; before: {r.last_error}" if r.last_error else ""
        conn.execute(
            update(_t)
            .where(_t.c.id == r.id, _PENDING)
            .values(
                dead_at=now,
                claimed_until=None,
                claimed_by=None,
                last_error=f"attempt {r.attempts} of {settings.max_attempts} left no result "
                f"(claimed by {r.claimed_by}: the process stopped or overran its lease)"
                f"{before}"[:2000],
            )
        )
    advance_heads(conn, [r.id for r in abandoned])
    if abandoned:
        log.warning("outbox.abandoned_dead", destination=destination, rows=len(abandoned))
    return len(abandoned)


def _claimable(destination: str, now: datetime, limit: int, postgres: bool, abandoned: bool) -> Any:
    if abandoned:
        # Only leases that ran out, through the small index of leased rows, oldest first.
        query = (
            select(_t.c.id)
            .where(_t.c.destination == destination, _LEASED, _t.c.claimed_until < now)
            .order_by(_t.c.id)
        )
    else:
        # Heads in the order they fall due (ix_outbox_heads_due): rows behind their
        # contact's head are not in the index, rows backing off sort after `now`, so the
        # scan passes only the leases in flight on its way to `limit` rows.
        query = (
            select(_t.c.id)
            .where(
                _t.c.destination == destination,
                _HEADS,
                or_(_t.c.claimed_until.is_(None), _t.c.claimed_until < now),
            )
            .order_by(_t.c.available_at, _t.c.id)
        )
    query = query.where(_t.c.available_at <= now, first_pending_of_its_contact(_t)).limit(limit)
    if postgres:
        # Lock the candidates only (not the rows the order check reads): concurrent
        # claimers skip each other's candidates instead of waiting for them.
        query = query.with_for_update(skip_locked=True, of=_t)
    return query.scalar_subquery()


def claim(
    store: Store,
    destination: str,
    settings: OutboxConfig = DEFAULTS,
    replica: str = "local",
    now: datetime | None = None,
) -> Claim:
    """Lease up to `settings.batch` due rows of `destination` (those due longest first,
    at most one per contact: its first pending row) and count their attempt, in one
    short transaction.

    A row whose earlier attempt left no result (its claimer died) is claimed alone,
    before anything else: if it is what kills the process, it takes no batch companions
    with it (their attempts would run out too), and it reaches its dead letter in
    max_attempts claims."""
    now = now or datetime.now(UTC)
    # Each claim is its own owner, so two claimers in one process never record each
    # other's rows.
    owner = f"{replica}/{uuid.uuid4().hex[:8]}"[:128]
    until = now + timedelta(seconds=settings.lease_seconds)
    postgres = store.dialect == "postgresql"
    # A lease that ran out means an attempt that never reported: say so in the row.
    unfinished = (
        literal("attempt ")
        + cast(_t.c.attempts, String)
        + literal(" left no result (claimed by ")
        + func.coalesce(_t.c.claimed_by, "?")
        + literal(")")
    )
    lease = {
        "claimed_until": until,
        "claimed_by": owner,
        "attempts": _t.c.attempts + 1,
        "last_error": case((_t.c.claimed_until.is_not(None), unfinished), else_=_t.c.last_error),
    }
    with store.engine.begin() as conn:
        _bury_abandoned(conn, destination, settings, now)
        found: Sequence[Any] = ()
        for abandoned, limit in ((True, 1), (False, settings.batch)):
            candidates = _claimable(destination, now, limit, postgres, abandoned)
            found = conn.execute(
                update(_t).where(_t.c.id.in_(candidates)).values(**lease).returning(*_t.c)
            ).all()
            if found:
                break
    rows = sorted((_row(r) for r in found), key=lambda r: r.id)  # RETURNING has no order
    return Claim(owner, until, rows)


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


# How often `record` comes back for rows another transaction held (an enqueue of the
# same contact, for as long as its transaction lasts) before it waits for them.
_RECORD_TRIES = 12
# How often a round PostgreSQL aborted (deadlock, serialization) is run again.
_RECORD_ABORTS = 5


def record(
    store: Store,
    taken: Claim,
    results: Iterable[DeliveryResult],
    settings: OutboxConfig = DEFAULTS,
    now: datetime | None = None,
) -> DeliveryStats:
    """Write each row's result in short transactions, where the lease is still
    `taken`'s (a delivery is recorded even when it is not: the effect is there).

    Rows an enqueue of their contact holds are not waited for (see
    `outbox_heads.lock`): they are recorded a moment later, in the next transaction;
    after `_RECORD_TRIES` rounds the last one waits."""
    now = now or datetime.now(UTC)
    stats = DeliveryStats()
    left = list(zip(taken.rows, results, strict=False))
    attempt = aborted = 0
    while left and attempt < _RECORD_TRIES:
        round_stats = DeliveryStats()
        try:
            with store.engine.begin() as conn:
                held = lock(conn, [row.id for row, _ in left], wait=attempt == _RECORD_TRIES - 1)
                ours = [(r, res) for r, res in left if r.id in held]
                _record_held(conn, taken, ours, settings, now, round_stats)
        except DBAPIError as exc:
            # The waiting round can deadlock with an enqueue of the same contact, and
            # PostgreSQL aborts one of the two. Nothing of the round was written: run it
            # again rather than leave the leases to run out (the rows would be sent twice).
            if not lost_race(exc) or aborted >= _RECORD_ABORTS:
                raise
            aborted += 1
            log.info(
                "outbox.record_retried",
                owner=taken.owner,
                sqlstate=getattr(exc.orig, "sqlstate", None),
            )
            continue
        stats.add(round_stats)
        left = [(r, res) for r, res in left if r.id not in held]
        if left:
            time.sleep(min(0.2, 0.002 * 2**attempt))
        attempt += 1
    if stats.stale:
        log.warning("outbox.stale_results", rows=stats.stale, owner=taken.owner)
    return stats


def _record_held(
    conn: Connection,
    taken: Claim,
    results: Sequence[tuple[OutboxRow, DeliveryResult]],
    settings: OutboxConfig,
    now: datetime,
    stats: DeliveryStats,
) -> None:
    """`record` for rows this transaction holds."""
    ours = and_(_PENDING, _t.c.claimed_by == taken.owner)
    released = {"claimed_until": None, "claimed_by": None}
    ended: list[int] = []
    delivered = [row.id for row, res in results if isinstance(res, Delivered)]
    if delivered:
        got = conn.execute(
            update(_t)
            .where(_t.c.id.in_(delivered), _PENDING)
            .values(delivered_at=now, last_error=None, **released)
            .returning(_t.c.id)
        ).all()
        ended += [r.id for r in got]
        stats.delivered += len(got)
        stats.stale += len(delivered) - len(got)
    for row, result in results:
        if isinstance(result, Delivered):
            continue
        if isinstance(result, Failed):
            values: dict[str, Any] = {"dead_at": now, "last_error": result.error}
        elif row.attempts >= settings.max_attempts:
            values = {
                "dead_at": now,
                "last_error": f"gave up after {row.attempts} attempts: {result.error}",
            }
        else:
            wait = result.after if result.after is not None else jittered(row.attempts, settings)
            values = {
                "available_at": now + timedelta(seconds=wait),
                "last_error": result.error,
            }
        kept = conn.execute(
            update(_t)
            .where(_t.c.id == row.id, ours)
            .values(**values, **released)
            .returning(_t.c.id)
        ).first()
        if kept is None:
            stats.stale += 1
        elif "dead_at" in values:
            stats.failed += 1
            ended.append(row.id)
        else:
            stats.retried += 1
    advance_heads(conn, ended)


def per_call(target: Destination, settings: OutboxConfig) -> OutboxConfig:
    """`settings` with the batch `target` takes in one call (its `batch_size`, the most
    its API accepts: Conversion Leads' 1,000 events a request), unless the deployment set
    `outbox.batch` itself; without either, the default batch."""
    size = getattr(target, "batch_size", None)
    if size is None or "batch" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"batch": int(size)})


def deliver_batch(
    store: Store,
    target: Destination,
    settings: OutboxConfig = DEFAULTS,
    replica: str = "local",
    now: datetime | None = None,
) -> tuple[int, DeliveryStats]:
    """Claim, deliver and record one batch for `target`; (rows claimed, stats)."""
    taken = claim(store, target.name, per_call(target, settings), replica, now)
    if not taken.rows:
        return 0, DeliveryStats()
    results = _call(target, taken.rows)
    if datetime.now(UTC) > taken.until:
        # Another replica may have delivered these rows again meanwhile: raise the lease.
        log.warning("outbox.lease_overrun", destination=target.name, rows=len(taken.rows))
    return len(taken.rows), record(store, taken, results, settings)


def deliver(
    store: Store,
    targets: Iterable[Destination],
    stopping: Any = None,
    settings: OutboxConfig = DEFAULTS,
    replica: str = "local",
) -> DeliveryStats:
    """Deliver every due row of every destination, batch by batch, until none is due or
    `stopping` (a threading.Event) is set."""
    total = DeliveryStats()
    for target in targets:
        while stopping is None or not stopping.is_set():
            claimed, stats = deliver_batch(store, target, settings, replica)
            total.add(stats)
            if claimed:
                log.info(
                    "outbox.batch",
                    destination=target.name,
                    delivered=stats.delivered,
                    retried=stats.retried,
                    failed=stats.failed,
                )
            # A short batch is not the end: rows held back behind an earlier row of their
            # contact are due once it is delivered. A batch that delivered nothing is
            # (everything failed or retries later; Retry(after=0) must not spin here).
            if not claimed or not stats.delivered:
                break
    return total


def depth(store: Store, now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Per destination: rows pending (waiting, backing off or leased), the oldest one's
    age in seconds, and dead letters not dismissed (`failed`)."""
    now = now or datetime.now(UTC)
    found: dict[str, dict[str, Any]] = {}
    with store.reader.connect() as conn:
        pending = conn.execute(
            select(_t.c.destination, func.count(), func.min(_t.c.created_at))
            .where(_PENDING)
            .group_by(_t.c.destination)
        )
        for destination, count, oldest in pending:
            age = (now - oldest).total_seconds() if oldest is not None else 0.0
            found[destination] = {"pending": int(count), "oldest_age": max(0.0, age), "failed": 0}
        failed = conn.execute(
            select(_t.c.destination, func.count())
            .where(_t.c.dead_at.is_not(None), _t.c.dismissed_at.is_(None))
            .group_by(_t.c.destination)
        )
        for destination, count in failed:
            entry = found.setdefault(destination, {"pending": 0, "oldest_age": 0.0, "failed": 0})
            entry["failed"] = int(count)
    return found


__all__ = [
    "Claim",
    "DeliveryStats",
    "Failed",
    "Retry",
    "advance_heads",
    "backoff",
    "claim",
    "deliver",
    "deliver_batch",
    "depth",
    "enqueue",
    "enqueue_many",
    "jittered",
    "record",
]
