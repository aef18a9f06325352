"""Web visitors and their page views: what the web tag's collector stores.

A visitor is a browser by its first-party id on one site. Its page views are kept in
`web_page_views`, unique by (site, event id), so a batch the snippet sends again is
stored once. A page view of a visitor linked to a contact is also an interaction of
that contact (kind `page_view`); when an anonymous visitor identifies, `link_visitor`
links it and turns its earlier page views into interactions of the contact, in the
transaction that stored the identifying lead. Visitors who never identify are deleted
by `purge_anonymous` after the configured retention.

The collector writes page views through `store.visit_writer` (group commit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from connector.store.engine import Store
from connector.store.tables import contacts, interactions, leads, web_page_views, web_visitors

PAGE_VIEW = "page_view"
"""The interaction kind of a page view on a contact's timeline."""


@dataclass(frozen=True, slots=True)
class PageView:
    """One page view as the collector validated it. `utm` holds only the UTM parameters
    the URL carried (None: none); `fbc`/`fbp` are Meta's ids as formed for this view."""

    site: str
    event_id: str
    visitor: str
    occurred_at: datetime
    url: str
    referrer: str | None = None
    title: str | None = None
    utm: dict[str, str] | None = None
    fbc: str | None = None
    fbp: str | None = None
    source: str = "webtag"
    """The source name the contact's `page_view` interactions carry."""


def _upsert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


_STATEMENTS: dict[tuple[str, str], Any] = {}
"""Statements built once per dialect (building the upsert, `.excluded` included, was
~5% of the writer thread's time when done every batch)."""


def _visitor_upsert(conn: Connection) -> Any:
    key = ("visitor_upsert", conn.dialect.name)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        t = web_visitors
        stmt = _upsert(conn)(t)
        stmt = _STATEMENTS[key] = stmt.on_conflict_do_update(
            index_elements=[t.c.site, t.c.visitor],
            set_={
                "last_seen": stmt.excluded.last_seen,
                # The latest ids and UTM seen win; a view without them keeps the stored ones.
                "fbc": func.coalesce(stmt.excluded.fbc, t.c.fbc),
                "fbp": func.coalesce(stmt.excluded.fbp, t.c.fbp),
                "utm": func.coalesce(stmt.excluded.utm, t.c.utm),
            },
        ).returning(t.c.site, t.c.visitor, t.c.id, t.c.contact_id)
    return stmt


def _view_insert(conn: Connection) -> Any:
    key = ("view_insert", conn.dialect.name)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        t = web_page_views
        stmt = _STATEMENTS[key] = (
            _upsert(conn)(t)
            .on_conflict_do_nothing(index_elements=[t.c.site, t.c.event_id])
            .returning(t.c.event_id, t.c.site)
        )
    return stmt


def _visitor_rows(
    conn: Connection, seen: dict[tuple[str, str], dict[str, Any]]
) -> dict[tuple[str, str], tuple[int, int | None]]:
    """Insert or touch visitors; (site, visitor) -> (row id, contact id or None).

    The upsert takes the visitor's row lock, as `link_visitor` does: page views and a
    link of the same visitor are serialised, so none is left anonymous by a race."""
    if not seen:
        return {}
    # Rows as executemany parameters, not .values(rows): one statement shape, compiled
    # once and cached; SQLAlchemy sends them as multi-row INSERTs ("insertmanyvalues").
    # A 1,000-row .values() cost ~350 ms to compile, every batch.
    rows = conn.execute(_visitor_upsert(conn), list(seen.values()))
    return {(r.site, r.visitor): (r.id, r.contact_id) for r in rows}


def _live(conn: Connection, ids: set[int]) -> dict[int, int]:
    """Each contact id -> the live contact it is now (merges leave tombstones one hop
    from their survivor)."""
    if not ids:
        return {}
    rows = conn.execute(
        select(contacts.c.id, contacts.c.merged_into).where(contacts.c.id.in_(sorted(ids)))
    )
    return {r.id: r.merged_into or r.id for r in rows}


def _interaction(view: dict[str, Any], contact_id: int, source: str) -> dict[str, Any]:
    data = {"url": view["url"], "event_id": view["event_id"], "site": view["site"]}
    for name in ("referrer", "title", "utm", "fbc"):
        if view.get(name):
            data[name] = view[name]
    return {
        "contact_id": contact_id,
        "kind": PAGE_VIEW,
        "occurred_at": view["occurred_at"],
        "source": source,
        "data": data,
    }


def record_page_views(conn: Connection, views: Sequence[PageView], now: datetime) -> int:
    """Store page views in the caller's transaction; returns how many were new (a view
    whose (site, event id) is already stored is a retry and changes nothing)."""
    return len(record_new(conn, views, now))


def record_new(conn: Connection, views: Sequence[PageView], now: datetime) -> set[tuple[str, str]]:
    """`record_page_views`, returning the (site, event id) of the views that were new."""
    if not views:
        return set()
    if conn.dialect.name == "postgresql":
        return _record_new_pg(conn, views, now)
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for v in sorted(views, key=lambda v: v.occurred_at):
        row = seen.setdefault(
            (v.site, v.visitor),
            {
                "site": v.site,
                "visitor": v.visitor,
                "first_seen": now,
                "last_seen": now,
                "fbc": None,
                "fbp": None,
                "utm": None,
            },
        )
        # Later views overwrite earlier ones: the visitor keeps the latest ids and UTM.
        row["fbc"] = v.fbc or row["fbc"]
        row["fbp"] = v.fbp or row["fbp"]
        row["utm"] = v.utm or row["utm"]
    # Rows in a fixed order: two writers touching the same visitors lock them alike.
    ordered = dict(sorted(seen.items()))
    found = _visitor_rows(conn, ordered)
    rows = []
    for v in views:
        visitor_id, contact_id = found[(v.site, v.visitor)]
        rows.append(
            {
                "site": v.site,
                "event_id": v.event_id,
                "visitor_id": visitor_id,
                "contact_id": contact_id,
                "occurred_at": v.occurred_at,
                "received_at": now,
                "url": v.url,
                "referrer": v.referrer,
                "title": v.title,
                "utm": v.utm,
                "fbc": v.fbc,
            }
        )
    found_new = conn.execute(_view_insert(conn), _unique_events(rows))
    inserted = {(r.site, r.event_id) for r in found_new}
    known = [
        r
        for r in _unique_events(rows)
        if r["contact_id"] is not None and (r["site"], r["event_id"]) in inserted
    ]
    if known:
        live = _live(conn, {r["contact_id"] for r in known})
        source = {(v.site, v.event_id): v.source for v in views}
        conn.execute(
            insert(interactions),
            [
                _interaction(r, live[r["contact_id"]], source[(r["site"], r["event_id"])])
                for r in known
            ],
        )
    return inserted


# What `record_new` does in Python and three to five statements, as ONE statement on
# PostgreSQL: a round trip a batch where the writer threads spent ~80% of their time
# waiting on the server (and, being one statement, it can run as its own transaction:
# no BEGIN, no COMMIT). The rows go in as two JSON arrays; json_to_recordset parses each
# value as its column's type (timestamps from RFC 3339 text, JSON from nested JSON).
# The CTEs do what the Python path does, in its order: upsert the visitors (sorted, so
# two writers lock them alike; the latest ids and UTM win, a view without them keeps
# the stored ones), insert the page views of the upserted visitors (a stored event id
# is a retry and is skipped), and make the new views of a visitor linked to a contact
# interactions of the live contact (a merge's tombstone is one hop from its survivor),
# with the data `_interaction` builds (empty values left out).
_RECORD_NEW_PG = """
WITH visitor_in AS (
    SELECT * FROM json_to_recordset(%(visitors)s::json) AS r(
        site text, visitor text, first_seen timestamptz, last_seen timestamptz,
        fbc text, fbp text, utm jsonb)
), visitor AS (
    INSERT INTO web_visitors AS t (site, visitor, first_seen, last_seen, fbc, fbp, utm)
    SELECT site, visitor, first_seen, last_seen, fbc, fbp, utm
    FROM visitor_in ORDER BY site, visitor
    ON CONFLICT (site, visitor) DO UPDATE SET
        last_seen = excluded.last_seen,
        fbc = coalesce(excluded.fbc, t.fbc),
        fbp = coalesce(excluded.fbp, t.fbp),
        utm = coalesce(excluded.utm, t.utm)
    RETURNING t.id, t.site, t.visitor, t.contact_id
), view_in AS MATERIALIZED (
    SELECT * FROM json_to_recordset(%(views)s::json) AS r(
        site text, event_id text, visitor text, occurred_at timestamptz,
        received_at timestamptz, url text, referrer text, title text, utm jsonb,
        fbc text, source text)
), page_view AS (
    INSERT INTO web_page_views (site, event_id, visitor_id, contact_id, occurred_at,
                                received_at, url, referrer, title, utm, fbc)
    SELECT v.site, v.event_id, visitor.id, visitor.contact_id, v.occurred_at,
           v.received_at, v.url, v.referrer, v.title, v.utm, v.fbc
    FROM view_in AS v
    JOIN visitor ON visitor.site = v.site AND visitor.visitor = v.visitor
    ON CONFLICT (site, event_id) DO NOTHING
    RETURNING site, event_id, contact_id, occurred_at, url, referrer, title, utm, fbc
), interaction AS (
    INSERT INTO interactions (contact_id, kind, occurred_at, source, data)
    SELECT coalesce(c.merged_into, c.id), %(kind)s, p.occurred_at, v.source,
           jsonb_strip_nulls(jsonb_build_object(
               'url', p.url, 'event_id', p.event_id, 'site', p.site,
               'referrer', nullif(p.referrer, ''), 'title', nullif(p.title, ''),
               'utm', CASE WHEN p.utm = '{}'::jsonb THEN NULL ELSE p.utm END,
               'fbc', nullif(p.fbc, '')))
    FROM page_view AS p
    JOIN contacts AS c ON c.id = p.contact_id
    JOIN view_in AS v ON v.site = p.site AND v.event_id = p.event_id
)
SELECT site, event_id FROM page_view
"""


def _aware(at: datetime) -> datetime:
    # As UTCDateTime does on the Core path: a naive time would be read in the session's
    # time zone, silently shifted.
    if at.tzinfo is None:
        raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
    return at


def _record_new_pg(
    conn: Connection, views: Sequence[PageView], now: datetime
) -> set[tuple[str, str]]:
    _aware(now)
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for v in sorted(views, key=lambda v: v.occurred_at):
        row = seen.setdefault(
            (v.site, v.visitor),
            {"site": v.site, "visitor": v.visitor, "first_seen": now, "last_seen": now},
        )
        # Later views overwrite earlier ones: the visitor keeps the latest ids and UTM.
        row["fbc"] = v.fbc or row.get("fbc")
        row["fbp"] = v.fbp or row.get("fbp")
        row["utm"] = v.utm or row.get("utm")
    # The same event twice in one batch (a retry merged with the original): one row,
    # the last, as `_unique_events` keeps.
    unique = {
        (v.site, v.event_id): {
            "site": v.site,
            "event_id": v.event_id,
            "visitor": v.visitor,
            "occurred_at": _aware(v.occurred_at),
            "received_at": now,
            "url": v.url,
            "referrer": v.referrer,
            "title": v.title,
            "utm": v.utm,
            "fbc": v.fbc,
            "source": v.source,
        }
        for v in views
    }
    rows = conn.exec_driver_sql(
        _RECORD_NEW_PG,
        {
            "visitors": orjson.dumps(list(seen.values())).decode(),
            "views": orjson.dumps(list(unique.values())).decode(),
            "kind": PAGE_VIEW,
        },
    )
    return {(site, event_id) for site, event_id in rows}


def _unique_events(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The same event twice in one batch (a retry merged with the original): one row.
    return list({(r["site"], r["event_id"]): r for r in rows}.values())


def link_visitor(
    conn: Connection,
    site: str,
    visitor: str,
    contact_id: int,
    now: datetime,
    source: str = "webtag",
) -> int:
    """Link a visitor to a contact (in the caller's transaction: the one that stored
    the identifying lead) and make its anonymous page views interactions of the contact.
    Returns how many page views were re-attributed (as interactions of `source`).

    A visitor already linked to another contact (a shared computer) is linked to the
    new one from now on; the views already attributed stay with the earlier contact."""
    t = web_visitors
    stmt = _upsert(conn)(t).values(
        site=site,
        visitor=visitor,
        contact_id=contact_id,
        first_seen=now,
        last_seen=now,
        identified_at=now,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.site, t.c.visitor],
        set_={"contact_id": contact_id, "identified_at": now},
    ).returning(t.c.id)
    visitor_id = int(conn.execute(stmt).scalar_one())
    pv = web_page_views
    anonymous = [
        dict(r._mapping)
        for r in conn.execute(
            select(pv)
            .where(pv.c.visitor_id == visitor_id, pv.c.contact_id.is_(None))
            .order_by(pv.c.occurred_at, pv.c.id)
        )
    ]
    if not anonymous:
        return 0
    conn.execute(insert(interactions), [_interaction(r, contact_id, source) for r in anonymous])
    conn.execute(
        update(pv).where(pv.c.id.in_([r["id"] for r in anonymous])).values(contact_id=contact_id)
    )
    return len(anonymous)


def contact_of_lead(conn: Connection, source: str, source_id: str) -> int | None:
    """The live contact a stored lead belongs to (None: no such lead)."""
    found = conn.execute(
        select(func.coalesce(contacts.c.merged_into, contacts.c.id))
        .select_from(leads.join(contacts, contacts.c.id == leads.c.contact_id))
        .where(leads.c.source == source, leads.c.source_id == source_id)
    ).scalar_one_or_none()
    return int(found) if found is not None else None


def purge_anonymous(store: Store, before: datetime, limit: int = 5000) -> int:
    """Delete up to `limit` visitors never identified and not seen since `before`, with
    their page views; returns how many visitors went. Small batches: the job runs
    beside the collector and must not hold the write lock for long."""
    t, pv = web_visitors, web_page_views
    with store.engine.begin() as conn:
        ids = [
            r[0]
            for r in conn.execute(
                select(t.c.id)
                .where(t.c.contact_id.is_(None), t.c.last_seen < before)
                .order_by(t.c.id)
                .limit(limit)
            )
        ]
        if not ids:
            return 0
        # Re-checked in the delete: a visitor that identified meanwhile is kept.
        gone = and_(t.c.id.in_(ids), t.c.contact_id.is_(None), t.c.last_seen < before)
        conn.execute(delete(pv).where(pv.c.visitor_id.in_(select(t.c.id).where(gone))))
        return int(conn.execute(delete(t).where(gone)).rowcount)


def visitor(store: Store, site: str, visitor_id: str) -> dict[str, Any] | None:
    """A visitor with its page views (oldest first), or None."""
    t, pv = web_visitors, web_page_views
    with store.reader.connect() as conn:
        row = conn.execute(select(t).where(t.c.site == site, t.c.visitor == visitor_id)).first()
        if row is None:
            return None
        out = dict(row._mapping)
        out["page_views"] = [
            dict(r._mapping)
            for r in conn.execute(
                select(pv).where(pv.c.visitor_id == row.id).order_by(pv.c.occurred_at, pv.c.id)
            )
        ]
        return out


def counts(store: Store) -> dict[str, int]:
    """Visitors (all, identified) and page views stored, for summaries."""
    t = web_visitors
    with store.reader.connect() as conn:
        return {
            "visitors": int(conn.execute(select(func.count()).select_from(t)).scalar_one()),
            "identified": int(
                conn.execute(
                    select(func.count()).select_from(t).where(t.c.contact_id.is_not(None))
                ).scalar_one()
            ),
            "page_views": int(
                conn.execute(select(func.count()).select_from(web_page_views)).scalar_one()
            ),
        }
