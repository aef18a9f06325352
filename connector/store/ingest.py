"""The write path of ingest: read what a batch needs, write its plan, in one transaction.

A batch costs a fixed number of statements whatever its size (three lookups, a handful
of executemany writes), which is what makes the store keep up with the normalisers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from connector.identity import ContactState, Plan, content_hash
from connector.model import STANDARD_FIELDS, Resolved
from connector.store.bulk import among, insert_rows, insert_values, reserve_ids
from connector.store.tables import (
    contacts,
    cursors,
    identities,
    interactions,
    leads,
    quarantine,
    status_history,
)


def lookup(
    conn: Connection, source: str, records: Sequence[Resolved]
) -> tuple[dict[str, int], dict[str, tuple[str, int]], list[ContactState]]:
    """What the store knows about a batch: its keys, its leads and their contacts."""
    keys: dict[str, int] = {}
    wanted_keys = list({k for r in records for k in r.keys})
    for cond in among(conn, identities.c.key, wanted_keys):
        rows = conn.execute(select(identities.c.key, identities.c.contact_id).where(cond))
        keys.update((k, c) for k, c in rows)
    known: dict[str, tuple[str, int]] = {}
    wanted_leads = list({r.source_id for r in records})
    for cond in among(conn, leads.c.source_id, wanted_leads):
        found = conn.execute(
            select(leads.c.source_id, leads.c.payload_hash, leads.c.contact_id).where(
                leads.c.source == source, cond
            )
        )
        known.update((s, (h, c)) for s, h, c in found)
    ids = list(set(keys.values()) | {c for _, c in known.values()})
    states: list[ContactState] = []
    for cond in among(conn, contacts.c.id, ids):
        for row in conn.execute(select(contacts).where(cond)):
            m = row._mapping
            states.append(
                ContactState(
                    id=m["id"],
                    status=m["status"],
                    attrs={f: m[f] for f in STANDARD_FIELDS if m[f] is not None},
                    custom=dict(m["custom"] or {}),
                    status_changed_at=m["status_changed_at"],
                )
            )
    return keys, known, states


def merge_rows(
    conn: Connection, absorbed: int, survivor: int, now: datetime, actor: str | None = None
) -> None:
    """Point everything that pointed at `absorbed` at `survivor`; leave a tombstone."""
    for table in (identities, leads, interactions, status_history):
        conn.execute(
            update(table).where(table.c.contact_id == absorbed).values(contact_id=survivor)
        )
    # Earlier tombstones follow, so merged_into is always one hop from a live contact.
    conn.execute(
        update(contacts).where(contacts.c.merged_into == absorbed).values(merged_into=survivor)
    )
    conn.execute(
        update(contacts)
        .where(contacts.c.id == absorbed)
        .values(merged_into=survivor, updated_at=now)
    )
    conn.execute(
        insert(interactions).values(
            contact_id=survivor,
            kind="merge",
            occurred_at=now,
            source=None,
            data={"absorbed": absorbed, "actor": actor} if actor else {"absorbed": absorbed},
        )
    )


# What a contact's write sets, inserted or updated (the insert adds id and created_at).
_CONTACT_FIELDS = (*STANDARD_FIELDS, "status", "status_changed_at", "custom", "updated_at")


def _contact_values(state: ContactState, now: datetime) -> tuple[Any, ...]:
    """A contact's values in the order of _CONTACT_FIELDS."""
    return (
        *map(state.attrs.get, STANDARD_FIELDS),
        state.status,
        state.status_changed_at,
        state.custom,
        now,
    )


def apply(conn: Connection, plan: Plan, now: datetime) -> None:
    """Write a resolver's plan. The caller owns the transaction."""
    for absorbed, survivor in plan.merges:
        merge_rows(conn, absorbed, survivor, now)

    new = [c for c in plan.contacts.values() if c.new]
    ids = reserve_ids(conn, contacts, len(new))
    real = {c.id: i for c, i in zip(new, ids, strict=True)}
    # Rows go as tuples in the order of the column lists: no dict per row.
    insert_values(
        conn,
        contacts,
        _CONTACT_COLUMNS,
        [(i, *_contact_values(c, now), now) for c, i in zip(new, ids, strict=True)],
    )

    def final(contact_id: int) -> int:
        contact_id = plan.find(contact_id)
        return real.get(contact_id, contact_id)

    dirty = [c for c in plan.contacts.values() if c.dirty and not c.new]
    if dirty:
        stmt = (
            update(contacts)
            .where(contacts.c.id == bindparam("_id"))
            .values({name: bindparam(name) for name in _CONTACT_FIELDS})
        )
        rows = [dict(zip(_CONTACT_FIELDS, _contact_values(c, now), strict=True)) for c in dirty]
        conn.execute(stmt, [{**row, "_id": c.id} for row, c in zip(rows, dirty, strict=True)])

    insert_values(
        conn,
        identities,
        ("key", "kind", "contact_id", "created_at"),
        [(k, k.split(":", 1)[0], final(c), now) for k, c in plan.identities],
    )
    fresh = [w for w in plan.leads.values() if not w.exists]
    insert_values(
        conn,
        leads,
        _LEAD_COLUMNS,
        [_lead_values(w.record, final(w.contact_id), now) for w in fresh],
    )
    changed = [w for w in plan.leads.values() if w.exists]
    if changed:
        conn.execute(
            update(leads)
            .where(leads.c.source == bindparam("_source"))
            .where(leads.c.source_id == bindparam("_source_id"))
            .values(
                contact_id=bindparam("contact_id"),
                payload_hash=bindparam("payload_hash"),
                ref=bindparam("ref"),
                raw=bindparam("raw"),
                context=bindparam("context"),
                occurred_at=bindparam("occurred_at"),
                received_at=bindparam("received_at"),
            ),
            [
                {
                    **_lead_row(w.record, final(w.contact_id), now),
                    "_source": w.record.source,
                    "_source_id": w.record.source_id,
                }
                for w in changed
            ],
        )

    insert_values(
        conn,
        status_history,
        ("contact_id", "from_status", "to_status", "origin", "actor", "at"),
        [
            (final(h.contact_id), h.from_status, h.to_status, h.origin, None, h.at)
            for h in plan.history
        ],
    )


_CONTACT_COLUMNS = ("id", *_CONTACT_FIELDS, "created_at")
_LEAD_COLUMNS = (
    "source",
    "source_id",
    "contact_id",
    "payload_hash",
    "ref",
    "raw",
    "context",
    "occurred_at",
    "received_at",
)


def _lead_values(record: Resolved, contact_id: int, now: datetime) -> tuple[Any, ...]:
    """A lead row in the order of _LEAD_COLUMNS."""
    return (
        record.source,
        record.source_id,
        contact_id,
        record.payload_hash,
        record.ref,
        record.raw,
        record.context,
        record.occurred_at,
        now,
    )


def _lead_row(record: Resolved, contact_id: int, now: datetime) -> dict[str, Any]:
    return dict(zip(_LEAD_COLUMNS, _lead_values(record, contact_id, now), strict=True))


def fingerprint(source: str, raw: Any) -> str:
    """Which quarantined record this is: the same raw content from the same source."""
    return content_hash(source, raw)


def quarantine_records(
    conn: Connection, records: Sequence[Resolved], context: dict[str, Any], now: datetime
) -> int:
    """File records with problems, one row per record naming its first problem field and
    all reasons. A record already filed (same source and raw content) is not filed again.
    Returns how many were newly filed."""
    if not records:
        return 0
    by_print = {fingerprint(r.source, r.raw): r for r in records}
    source = records[0].source
    existing: set[str] = set()
    for cond in among(conn, quarantine.c.fingerprint, list(by_print)):
        existing.update(
            conn.execute(
                select(quarantine.c.fingerprint).where(quarantine.c.source == source, cond)
            ).scalars()
        )
    rows = [
        {
            "source": r.source,
            "ref": r.ref,
            "field": r.problems[0].field,
            "reason": "; ".join(str(p) for p in r.problems),
            "raw": r.raw,
            "context": context,
            "fingerprint": fp,
            "attempts": 1,
            "created_at": now,
            "resolved_at": None,
            "resolution": None,
            "source_id": r.source_id,
        }
        for fp, r in by_print.items()
        if fp not in existing
    ]
    insert_rows(conn, quarantine, rows)
    return len(rows)


def save_cursor(conn: Connection, source: str, stream: str, value: Any, now: datetime) -> None:
    """Upsert a cursor; called in the transaction that wrote the rows it covers."""
    done = conn.execute(
        update(cursors)
        .where(cursors.c.source == source, cursors.c.stream == stream)
        .values(value=value, updated_at=now)
    )
    if done.rowcount == 0:
        conn.execute(
            insert(cursors).values(source=source, stream=stream, value=value, updated_at=now)
        )


def load_cursor(conn: Connection, source: str, stream: str) -> Any:
    return conn.execute(
        select(cursors.c.value).where(cursors.c.source == source, cursors.c.stream == stream)
    ).scalar_one_or_none()
