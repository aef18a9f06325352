"""What a person does with the outbox (`leadsync outbox list|retry|dismiss`): look at
rows by state, send dead letters (or rows backing off) again now, set rows aside.

Neither command touches a row under a live lease: its claimer is calling the
destination, and its result decides. A retried dead letter goes behind nothing: rows of
its contact enqueued after it may have been delivered already, and the retry then
arrives after them (the notes say so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from connector.store import Store
from connector.store.races import rerun_lost_races
from connector.store.tables import outbox
from connector.sync.outbox import STATES, State
from connector.sync.outbox_heads import advance_heads

_t = outbox
_PENDING = and_(_t.c.delivered_at.is_(None), _t.c.dead_at.is_(None))
_FAILED = and_(_t.c.dead_at.is_not(None), _t.c.dismissed_at.is_(None))
_WHERE: dict[str, Any] = {
    "pending": _PENDING,
    "failed": _FAILED,
    "delivered": _t.c.delivered_at.is_not(None),
    "dismissed": _t.c.dismissed_at.is_not(None),
}


def state_of(row: Any) -> State:
    """A row's state from its columns."""
    if row.delivered_at is not None:
        return "delivered"
    if row.dismissed_at is not None:
        return "dismissed"
    if row.dead_at is not None:
        return "failed"
    return "pending"


def parse_state(name: str | None) -> State | None:
    """A state named on the command line (ValueError names the choices)."""
    if name is None:
        return None
    for known in STATES:
        if name == known:
            return known
    raise ValueError(f"unknown outbox state {name!r}; one of {', '.join(STATES)}")


def listing(
    store: Store,
    destination: str | None = None,
    state: State | None = None,
    limit: int = 50,
    with_payload: bool = False,
) -> list[dict[str, Any]]:
    """Rows as plain data: pending ones oldest first (the next to go), the others newest
    first. The payload (which can name a person) only when asked for."""
    query = select(_t)
    if destination:
        query = query.where(_t.c.destination == destination)
    if state is not None:
        query = query.where(_WHERE[state])
    query = query.order_by(_t.c.id if state == "pending" else _t.c.id.desc()).limit(limit)
    columns = [c.name for c in _t.c if with_payload or c.name != "payload"]
    with store.reader.connect() as conn:
        return [
            {**{name: r._mapping[name] for name in columns}, "state": state_of(r)}
            for r in conn.execute(query)
        ]


@dataclass(slots=True)
class Outcome:
    """What a retry or dismiss did: the rows changed, and why others were not."""

    done: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    notes: dict[int, str] = field(default_factory=dict)


def _leased(row: Any, now: datetime) -> bool:
    return row.claimed_until is not None and row.claimed_until >= now


def _unleased(conn: Connection, row_id: int, now: datetime, **values: Any) -> bool:
    """Update a pending row only if no claimer took it since it was read (on PostgreSQL
    the UPDATE waits for a claim in progress and checks again)."""
    free = or_(_t.c.claimed_until.is_(None), _t.c.claimed_until < now)
    changed = conn.execute(
        update(_t).where(_t.c.id == row_id, _PENDING, free).values(**values).returning(_t.c.id)
    ).first()
    return changed is not None


def _revive(conn: Connection, row: Any, now: datetime, outcome: Outcome) -> None:
    """A dead letter back to pending, due now, with a fresh count of attempts."""
    twin = conn.execute(
        select(_t.c.id).where(
            _t.c.destination == row.destination, _t.c.key == row.key, _t.c.id != row.id, _PENDING
        )
    ).scalar()
    if twin is not None:
        outcome.skipped[row.id] = f"the same effect is pending as row {twin}"
        return
    try:
        with conn.begin_nested():  # an enqueue of the same key may land meanwhile
            conn.execute(
                update(_t)
                .where(_t.c.id == row.id)
                .values(
                    dead_at=None,
                    dismissed_at=None,
                    attempts=0,
                    available_at=now,
                    claimed_until=None,
                    claimed_by=None,
                    # It goes behind nothing: due at once even if later rows of its
                    # contact are pending (they wait behind it again; the claim's
                    # order check sees to that).
                    head=True,
                )
            )
    except IntegrityError:
        outcome.skipped[row.id] = "the same effect was enqueued again meanwhile"
        return
    outcome.done.append(row.id)
    if row.contact_id is not None:
        later = conn.execute(
            select(func.count()).where(
                _t.c.destination == row.destination,
                _t.c.contact_id == row.contact_id,
                _t.c.id > row.id,
                _t.c.delivered_at.is_not(None),
            )
        ).scalar_one()
        if later:
            outcome.notes[row.id] = (
                f"{later} later row(s) of contact {row.contact_id} were delivered already; "
                "this one arrives after them"
            )


@rerun_lost_races
def retry(
    store: Store,
    ids: Sequence[int] = (),
    destination: str | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Send rows again now: the given ids, or every dead letter (not dismissed) and
    every row backing off of `destination`. Dead letters start a fresh count of
    attempts; a row backing off keeps its count and is due at once."""
    if bool(ids) == bool(destination):
        raise ValueError("give row ids or --destination (one of the two)")
    now = now or datetime.now(UTC)
    outcome = Outcome()
    with store.engine.begin() as conn:
        if destination:
            query = select(_t).where(
                _t.c.destination == destination,
                or_(_FAILED, and_(_PENDING, _t.c.available_at > now)),
            )
        else:
            query = select(_t).where(_t.c.id.in_(list(ids)))
        found = {r.id: r for r in conn.execute(query.order_by(_t.c.id))}
        for row_id in list(ids) or list(found):
            row = found.get(row_id)
            if row is None:
                outcome.skipped[row_id] = "no such row"
            elif row.delivered_at is not None:
                outcome.skipped[row_id] = "delivered already"
            elif row.dead_at is not None:
                _revive(conn, row, now, outcome)
            elif _leased(row, now) or not _unleased(conn, row_id, now, available_at=now):
                outcome.skipped[row_id] = "being delivered now"
            else:
                outcome.done.append(row_id)
    return outcome


@rerun_lost_races
def dismiss(store: Store, ids: Sequence[int], now: datetime | None = None) -> Outcome:
    """Set rows aside for good: dead letters, or pending rows nobody is delivering (an
    effect a person decided against). They stay listed as `dismissed`. Run again when
    PostgreSQL aborts it to break a deadlock with an enqueue of the same contact."""
    if not ids:
        raise ValueError("give the ids of the rows to dismiss")
    now = now or datetime.now(UTC)
    outcome = Outcome()
    ended: list[int] = []
    with store.engine.begin() as conn:
        found = {r.id: r for r in conn.execute(select(_t).where(_t.c.id.in_(list(ids))))}
        for row_id in ids:
            row = found.get(row_id)
            if row is None:
                outcome.skipped[row_id] = "no such row"
            elif row.delivered_at is not None:
                outcome.skipped[row_id] = "delivered already"
            elif row.dismissed_at is not None:
                outcome.skipped[row_id] = "dismissed already"
            elif row.dead_at is not None:
                conn.execute(update(_t).where(_t.c.id == row_id).values(dismissed_at=now))
                outcome.done.append(row_id)
            elif _leased(row, now) or not _unleased(
                conn, row_id, now, dismissed_at=now, dead_at=now
            ):
                outcome.skipped[row_id] = "being delivered now"
            else:
                outcome.done.append(row_id)
                ended.append(row_id)
        # The rows that waited behind a dismissed pending row are due now.
        advance_heads(conn, ended)
    return outcome
