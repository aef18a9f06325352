"""The outbox's head flags (`outbox.head`, migration 0013): which pending rows the
claim may look at.

A row heads its (destination, contact) when no earlier row of that pair is pending; a
row without a contact always heads (unordered). The claim walks the index of pending
heads (ix_outbox_heads_due) in the order they fall due, so it reads about a batch of
entries whatever the backlog: rows waiting behind their contact's head are not in the
index, rows backing off sort after `now`. The flag is kept in the transactions that
change it:

- `enqueue` flags a row that nothing pending precedes (`contacts_waiting`);
- whatever ends a pending row (record: delivered or dead; burying an abandoned lease;
  `outbox dismiss`) flags the next pending row of its contact (`advance_heads`);
- `outbox retry` flags the dead letter it revives.

Extra flags are harmless (the claim still checks, per candidate, that the row is its
contact's first pending one: `first_pending_of_its_contact`); a missing flag would
leave a contact stuck, so the PostgreSQL side is careful about the race between an
enqueue and a record of the same contact (see `contacts_waiting`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, or_, select, text, update

from connector.store.tables import outbox

_t = outbox


def pending(row: Any) -> Any:
    """`row` (an outbox alias) is pending, spelled as ix_outbox_pending_contact's
    predicate is: so that a per-contact probe can use that index and no other (on a
    table without statistics the planner otherwise may pick one whose predicate says
    pending too, and read every pending row of the destination per probe)."""
    return func.coalesce(row.c.delivered_at, row.c.dead_at).is_(None)


def contacts_waiting(
    conn: Connection, effects: Sequence[tuple[str, str, str, int | None, Any]]
) -> set[tuple[str, int]]:
    """The (destination, contact) pairs among `effects` that have a pending row already.

    On PostgreSQL the first pending row of each is locked FOR SHARE until the caller
    commits. That is what keeps a head from being lost: `record` (and anything else that
    ends a pending row) locks the row it ends without waiting (SKIP LOCKED) and, in a
    later statement of its transaction, marks the next pending row of the contact as
    the head. Either it ended the row before this statement (the lock waits for its
    commit, the row is no longer pending, and our row heads), or it waits for our commit
    and then sees our row as the next one. SQLite writers are serialised (BEGIN
    IMMEDIATE), so there a plain read is enough."""
    wanted: dict[str, set[int]] = {}
    for destination, _kind, _key, contact_id, _payload in effects:
        if contact_id is not None:
            wanted.setdefault(destination, set()).add(contact_id)
    waiting: set[tuple[str, int]] = set()
    for destination, contact_ids in wanted.items():
        ordered = sorted(contact_ids)  # the same lock order in every transaction
        if conn.dialect.name == "postgresql":
            found = conn.execute(_FIRST_PENDING_LOCKED, {"d": destination, "cs": ordered})
        else:
            found = conn.execute(
                select(_t.c.contact_id)
                .distinct()
                .where(_t.c.destination == destination, _t.c.contact_id.in_(ordered), pending(_t))
            )
        waiting.update((destination, int(c)) for (c,) in found)
    return waiting


# One index probe per contact (ix_outbox_pending_contact), whatever its backlog.
_FIRST_PENDING_LOCKED = text(
    """
    SELECT v.c FROM unnest(CAST(:cs AS integer[])) AS v(c)
    CROSS JOIN LATERAL (
        SELECT o.id FROM outbox o
        WHERE o.destination = :d AND o.contact_id = v.c
          AND coalesce(o.delivered_at, o.dead_at) IS NULL
        ORDER BY o.id LIMIT 1
        FOR SHARE OF o
    ) AS first
    """
)


def heads_of_the_skipped(conn: Connection, values: list[dict[str, Any]]) -> None:
    """Some rows were not written (their key is pending already). If one of them was to
    head its contact, a later row of that contact written in this call would wait behind
    nothing of its own: so, the plain way, the first pending row of each contact of the
    call is a head. Rare (an effect enqueued again while it waits), hence not batched."""
    pairs = {(v["destination"], v["contact_id"]) for v in values if v["contact_id"] is not None}
    for destination, contact_id in sorted(pairs):
        first = (
            select(func.min(_t.c.id))
            .where(_t.c.destination == destination, _t.c.contact_id == contact_id, pending(_t))
            .scalar_subquery()
        )
        conn.execute(
            update(_t).where(_t.c.id == first, _t.c.head == False).values(head=True)  # noqa: E712
        )


def first_pending_of_its_contact(row: Any) -> Any:
    """`row` (an outbox alias) is the lowest pending row of its (destination, contact):
    nothing earlier of that contact waits, backs off or is leased. A correlated min()
    over `pending` is one probe of ix_outbox_pending_contact per candidate, the only
    index that can serve it, whatever the planner knows about the table (a NOT EXISTS
    may become an anti join over every pending row of the destination)."""
    return or_(row.c.contact_id.is_(None), row.c.id == _first_pending_id(row, "earlier"))


def _first_pending_id(row: Any, name: str) -> Any:
    """The lowest pending id of `row`'s (destination, contact), correlated to `row`: one
    probe of ix_outbox_pending_contact (see `pending`)."""
    other = outbox.alias(name)
    return (
        select(func.min(other.c.id))
        .where(
            other.c.destination == row.c.destination,
            other.c.contact_id == row.c.contact_id,
            pending(other),
        )
        .scalar_subquery()
    )


def advance_heads(conn: Connection, ended: Sequence[int]) -> None:
    """Rows `ended` stopped being pending in this transaction (delivered, dead,
    dismissed): the next pending row of each one's contact heads it now. Must run in a
    statement after the one that ended them (see `contacts_waiting` for why)."""
    if not ended:
        return
    done = outbox.alias("done")
    nxt = _first_pending_id(done, "following")
    successors = select(nxt).where(done.c.id.in_(list(ended)), done.c.contact_id.is_not(None))
    conn.execute(
        update(_t)
        .where(_t.c.id.in_(successors), _t.c.head == False)  # noqa: E712
        .values(head=True)
    )


def lock(conn: Connection, ids: Sequence[int], wait: bool = False) -> set[int]:
    """Of rows `ids`, those this transaction now holds, locked FOR NO KEY UPDATE (on
    SQLite: all of them, the transaction holds the database). Without `wait`, a row
    another transaction holds is left out instead of waited for: an enqueue holding its
    contact's first row FOR SHARE may be waiting for one of ours, and so, in another
    order, may we."""
    query = select(_t.c.id).where(_t.c.id.in_(list(ids)))
    query = query.with_for_update(skip_locked=not wait, key_share=True)
    return set(conn.execute(query).scalars())
