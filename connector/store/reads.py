"""Reads adapters need inside a transaction they are given (a change-feed subscriber,
a webhook drain), without touching the tables themselves: published through
connector.sdk."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, func, select

from connector.store.bulk import among
from connector.store.tables import contacts, leads


def match_fields(conn: Connection, contact_ids: Sequence[int]) -> dict[int, Any]:
    """Each contact's id, email, phone and custom attributes (for match keys and the
    test-lead mark), by id."""
    found: dict[int, Any] = {}
    wanted = sorted(set(contact_ids))
    for cond in among(conn, contacts.c.id, wanted):
        query = select(contacts.c.id, contacts.c.email, contacts.c.phone, contacts.c.custom)
        found.update((r.id, r) for r in conn.execute(query.where(cond)))
    return found


def leads_of(conn: Connection, source: str, contact_ids: Sequence[int]) -> dict[int, list[Any]]:
    """The leads of `source` each contact holds (contact_id, source_id, occurred_at,
    received_at), oldest first."""
    held: dict[int, list[Any]] = {}
    for cond in among(conn, leads.c.contact_id, sorted(set(contact_ids))):
        query = (
            select(leads.c.contact_id, leads.c.source_id, leads.c.occurred_at, leads.c.received_at)
            .where(cond, leads.c.source == source)
            .order_by(leads.c.id)
        )
        for r in conn.execute(query):
            held.setdefault(r.contact_id, []).append(r)
    return held


def stored_source_ids(conn: Connection, source: str, source_ids: Iterable[str]) -> set[str]:
    """Which of `source_ids` the store holds as leads of `source`."""
    found: set[str] = set()
    for cond in among(conn, leads.c.source_id, sorted({str(i) for i in source_ids})):
        rows = conn.execute(select(leads.c.source_id).where(leads.c.source == source, cond))
        found.update(str(r[0]) for r in rows)
    return found


def contacts_by_source_id(conn: Connection, source: str) -> dict[str, Any]:
    """For every lead of `source`: its source id -> the live contact it belongs to now
    (id, score, owner), following merges. For a source that shows contacts' values back
    to the people who keep the records (a sheet's score and owner columns)."""
    live = contacts.alias("live")
    query = (
        select(leads.c.source_id, live.c.id, live.c.score, live.c.owner)
        .join(contacts, contacts.c.id == leads.c.contact_id)
        .join(live, live.c.id == func.coalesce(contacts.c.merged_into, contacts.c.id))
        .where(leads.c.source == source)
    )
    return {str(r.source_id): r for r in conn.execute(query)}
