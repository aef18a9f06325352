"""What was last sent to each custom audience (the other side of a diff sync).

An audience's desired members come from its segment; what Meta holds is not readable
back, so the store keeps, per (audience, contact), the hashed row last sent and a hash
of it. A push sends only the difference and records each batch here in one transaction
after Meta accepted it: a crash between the call and the record re-sends that batch on
the next push, which Meta takes twice without counting anyone twice (adding a member
already in, or removing one already out, changes nothing).

Each audience's cursor (`ids`) also keeps the watermark of its last complete push, the
basis it holds for (the segment as read, the keys) and the removals deferred because
Meta said the audience was too small: adapters/facebook/audience_diff.py reads them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    case,
    delete,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    text,
)

from connector.segments.fields import field_for, resolve
from connector.segments.grammar import parse
from connector.segments.tree import And, Condition, Expr, Not, Or
from connector.statuses import Catalogue
from connector.store.bulk import among
from connector.store.engine import Store
from connector.store.ingest import load_cursor, save_cursor
from connector.store.tables import audience_members, audience_pushes, contacts

STATE = "facebook-audiences"  # cursors source holding each audience's Graph ids
LAG = timedelta(minutes=10)
"""How far behind a push's start its watermark is set. A writer stamps updated_at with
its own clock when its transaction begins and the change is visible only once it
commits: a push reading in between must not move past it. Ten minutes is far longer
than any of the store's write transactions (an ingest batch, a status move); on
PostgreSQL the oldest open transaction pulls the watermark further back (`watermark`).
Re-reading contacts changed within the lag costs a little and changes nothing: each is
compared with what was sent."""
# Fields whose truth is not on the contact's own row (leads, interactions, field issues):
# a change there does not touch contacts.updated_at, so such a segment is scanned whole.
_ELSEWHERE = {"lead", "last_activity", "has_issues"}


def sent(
    conn: Connection, audience: str, batch: int = 5000
) -> Iterator[tuple[int, str, list[str]]]:
    """(contact id, key hash, hashed row) of every member last sent, by contact id."""
    rows = conn.execution_options(yield_per=batch).execute(
        select(audience_members.c.contact_id, audience_members.c.key_hash, audience_members.c.row)
        .where(audience_members.c.audience == audience)
        .order_by(audience_members.c.contact_id)
    )
    for contact_id, key_hash, row in rows:
        yield int(contact_id), str(key_hash), list(row)


def record(
    conn: Connection,
    audience: str,
    added: Sequence[tuple[int, str, list[str]]],
    removed: Sequence[int],
    now: datetime,
) -> None:
    """Members Meta accepted: `added` (contact, key hash, row) now in, `removed` out."""
    gone = sorted(set(removed) | {a[0] for a in added})
    for cond in among(conn, audience_members.c.contact_id, gone):
        conn.execute(delete(audience_members).where(audience_members.c.audience == audience, cond))
    if added:
        conn.execute(
            insert(audience_members),
            [
                {"audience": audience, "contact_id": c, "key_hash": k, "row": r, "sent_at": now}
                for c, k, r in added
            ],
        )


def replace(conn: Connection, audience: str, now: datetime) -> None:
    """A full rebuild (usersreplace) starts: what was sent before no longer counts."""
    conn.execute(delete(audience_members).where(audience_members.c.audience == audience))


def log(
    conn: Connection,
    audience: str,
    op: str,
    rows: int,
    answer: dict[str, Any],
    now: datetime,
) -> None:
    """One batch and what the ad platform said of it (received, invalid, samples)."""
    conn.execute(
        insert(audience_pushes).values(
            audience=audience,
            at=now,
            op=op,
            rows=rows,
            received=answer.get("num_received"),
            invalid=answer.get("num_invalid_entries"),
            samples=answer.get("invalid_entry_samples") or {},
        )
    )


def members(conn: Connection, audience: str) -> int:
    query = select(func.count()).where(audience_members.c.audience == audience)
    return int(conn.execute(query).scalar_one())


def last_pushes(conn: Connection, audience: str, limit: int = 5) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(audience_pushes)
        .where(audience_pushes.c.audience == audience)
        .order_by(audience_pushes.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]


def members_of(store: Store, where: Any, fields: Sequence[str], batch: int = 5000) -> Iterator[Any]:
    """Rows (id and `fields`) of the live contacts matching `where` (a compiled segment
    clause), by id: an audience's desired members."""
    columns = [contacts.c.id, *(contacts.c[f] for f in fields)]
    with store.reader.connect() as conn:
        rows = conn.execution_options(yield_per=batch).execute(
            select(*columns).where(where).order_by(contacts.c.id)
        )
        yield from rows


def delta(
    store: Store, audience: str, where: Any, fields: Sequence[str], batch: int = 5000
) -> Iterator[tuple[str, Any]]:
    """What may have to change in `audience`, found by three indexed joins on the contact
    id over the whole segment (a push's diff for segments that move with time or read
    other tables, and for the first push; `touched` is the incremental one):
    ("new", row): a contact of the segment never sent;
    ("gone", row): a member sent that is no longer in the segment (contact_id, key_hash, row);
    ("changed", row): a member whose contact changed after it was sent (its fields, and
    the key_hash and row sent), to hash again."""
    m = audience_members
    mine = m.c.audience == audience
    columns = [contacts.c.id, *(contacts.c[f] for f in fields)]
    sent_for = exists().where(mine, m.c.contact_id == contacts.c.id)
    still_wanted = exists(select(contacts.c.id).where(contacts.c.id == m.c.contact_id, where))
    with store.reader.connect() as conn:
        run = conn.execution_options(yield_per=batch)
        for row in run.execute(select(*columns).where(where, ~sent_for).order_by(contacts.c.id)):
            yield "new", row
        gone = select(m.c.contact_id, m.c.key_hash, m.c.row).where(mine, ~still_wanted)
        for row in run.execute(gone.order_by(m.c.contact_id)):
            yield "gone", row
        changed = (
            select(*columns, m.c.key_hash, m.c.row)
            .join(m, and_(mine, m.c.contact_id == contacts.c.id))
            .where(where, contacts.c.updated_at > m.c.sent_at)
            .order_by(contacts.c.id)
        )
        for row in run.execute(changed):
            yield "changed", row


def row_bound(text: str | None) -> bool:
    """Whether membership of segment `text` moves only when the contact's own row
    changes (what bumps updated_at: status, attributes, custom values, test flag, merge).
    Not for a duration (`created > 30d` is a different set tomorrow with no write), nor
    for lead fields, last_activity or has_issues (other tables)."""
    if text is None or not text.strip():
        return True

    def ok(expr: Expr) -> bool:
        if isinstance(expr, And | Or):
            return all(ok(e) for e in expr.items)
        if isinstance(expr, Not):
            return ok(expr.item)
        assert isinstance(expr, Condition)
        found = field_for(expr.name, expr.column)
        if found.kind in _ELSEWHERE or found.target in _ELSEWHERE:
            return False
        return all(v.kind != "duration" for v in expr.values)

    return ok(parse(text))


def basis(text: str | None, keys: Sequence[str], catalogue: Catalogue) -> str:
    """A fingerprint of what decides an audience's rows: its segment as the catalogue
    reads it (status names to ids, ranks) and its match keys. A watermark holds only for
    the basis it was taken under; another one needs a full walk."""
    epoch = datetime(2000, 1, 1, tzinfo=UTC)  # durations do not move the fingerprint
    meaning = repr(resolve(parse(text), catalogue, epoch)) if text and text.strip() else ""
    return hashlib.sha256(f"{meaning}\x1f{','.join(keys)}".encode()).hexdigest()[:32]


def watermark(store: Store, started: datetime) -> datetime:
    """The watermark a push that began reading at `started` may leave: `LAG` before it,
    and on PostgreSQL before the oldest transaction still open in the database (its
    writes are not visible yet and may carry an earlier updated_at)."""
    mark = started - LAG
    if store.dialect == "postgresql":
        with store.reader.connect() as conn:
            oldest = conn.execute(
                text(
                    "SELECT min(xact_start) FROM pg_stat_activity WHERE datname = "
                    "current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar()
        if oldest is not None:
            mark = min(mark, oldest.astimezone(UTC) - LAG)
    return mark


def touched(
    store: Store,
    audience: str,
    where: Any,
    fields: Sequence[str],
    since: datetime,
    also: Sequence[int] = (),
    batch: int = 5000,
) -> Iterator[Any]:
    """The incremental delta's candidates: every contact changed after `since` (and the
    contacts `also`: removals deferred by an earlier push), live or not, by id, with its
    `fields`, `wanted` (whether the segment `where` holds it now) and the key_hash and
    row last sent for it (None when none was). Only these can differ from what was sent
    when nothing else changed since the watermark."""
    m = audience_members
    columns = [contacts.c.id, *(contacts.c[f] for f in fields)]
    wanted = case((where, True), else_=False).label("wanted")
    changed = contacts.c.updated_at > since
    if also:
        changed = or_(changed, *(among_ids(also)))
    query = (
        select(*columns, wanted, m.c.key_hash, m.c.row)
        .select_from(
            contacts.outerjoin(m, and_(m.c.audience == audience, m.c.contact_id == contacts.c.id))
        )
        .where(changed)
        .order_by(contacts.c.id)
    )
    with store.reader.connect() as conn:
        yield from conn.execution_options(yield_per=batch).execute(query)


def among_ids(ids: Sequence[int], chunk: int = 500) -> list[Any]:
    """`contacts.id IN (...)` in chunks small enough for every driver."""
    ordered = sorted(set(ids))
    found = [contacts.c.id.in_(ordered[i : i + chunk]) for i in range(0, len(ordered), chunk)]
    return found or [false()]


def ids(store: Store, name: str) -> dict[str, Any]:
    """The Graph ids kept for audience `name` (its id, its lookalike's)."""
    with store.reader.connect() as conn:
        found = load_cursor(conn, STATE, name)
    return dict(found) if isinstance(found, dict) else {}


def save_ids(store: Store, name: str, values: dict[str, Any]) -> None:
    with store.engine.begin() as conn:
        save_cursor(conn, STATE, name, values, datetime.now(UTC))


def write(store: Store) -> Any:
    """A write transaction on the store (for `record`, `log`, `replace`)."""
    return store.engine.begin()


def read(store: Store) -> Any:
    """A read connection on the store (for `sent`, `members`, `last_pushes`)."""
    return store.reader.connect()
