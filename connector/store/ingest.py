"""The write path of ingest: read what a batch needs, write its plan, in one transaction.

A batch costs a fixed number of statements whatever its size (three lookups, a handful
of executemany writes), which is what makes the store keep up with the normalisers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, insert, or_, select, update

from connector.identity import ContactState, Plan, content_hash
from connector.model import STANDARD_FIELDS, Resolved
from connector.store.bulk import (
    among,
    insert_rows,
    insert_values,
    probe,
    reserve_ids,
    update_values,
)
from connector.store.tables import (
    contacts,
    cursors,
    identities,
    interactions,
    leads,
    merge_log,
    possible_duplicates,
    quarantine,
    status_history,
    system_links,
)
from connector.sync import changes

# A batch whose contacts a concurrent merge turned into tombstones reads its keys
# again; each round follows merges that committed meanwhile, so a few always suffice.
_FOLLOW_ROUNDS = 20


class StaleRead(RuntimeError):
    """Contacts kept being merged away under a batch (the pipeline retries it)."""


def lookup(
    conn: Connection, source: str, records: Sequence[Resolved]
) -> tuple[dict[str, int], dict[str, tuple[str, int]], list[ContactState]]:
    """What the store knows about a batch: its keys, its leads and their contacts.

    The contacts are locked (PostgreSQL: SELECT … FOR UPDATE in id order, so writers
    never deadlock on each other's rows) and read after the lock is granted, so a
    concurrent writer's update is seen, not lost. A contact that a concurrent merge
    made a tombstone meanwhile is never written into: the keys are read again and
    now point at the survivor. (SQLite writers already take turns for the whole
    transaction: BEGIN IMMEDIATE.)"""
    wanted_keys = list({k for r in records for k in r.keys})
    wanted_leads = list({r.source_id for r in records})
    for _ in range(_FOLLOW_ROUNDS):
        keys: dict[str, int] = {}
        for cond in among(conn, identities.c.key, wanted_keys):
            rows = conn.execute(select(identities.c.key, identities.c.contact_id).where(cond))
            keys.update((k, c) for k, c in rows)
        known: dict[str, tuple[str, int]] = {}
        for cond in among(conn, leads.c.source_id, wanted_leads):
            found = conn.execute(
                select(leads.c.source_id, leads.c.payload_hash, leads.c.contact_id).where(
                    leads.c.source == source, cond
                )
            )
            known.update((s, (h, c)) for s, h, c in found)
        ids = list(set(keys.values()) | {c for _, c in known.values()})
        states, tombstones = lock_contacts(conn, ids)
        if not tombstones:
            return keys, known, states
    raise StaleRead(f"contacts were merged away {_FOLLOW_ROUNDS} times under one batch")


def lock_contacts(conn: Connection, ids: Sequence[int]) -> tuple[list[ContactState], list[int]]:
    """Lock and read contacts (PostgreSQL: FOR UPDATE, in id order): the live ones as
    states, and the ids of those that are tombstones."""
    states: list[ContactState] = []
    tombstones: list[int] = []
    for cond in among(conn, contacts.c.id, ids):
        query = select(*_STATE_COLUMNS).where(cond).order_by(contacts.c.id).with_for_update()
        for row in conn.execute(query):
            m = row._mapping
            if m["merged_into"] is not None:
                tombstones.append(m["id"])
                continue
            states.append(state_of(m))
    return states, tombstones


# What `state_of` reads of a contact row (and whether it is a tombstone): not the
# whole row. Its other timestamps (created_at, updated_at) cost a datetime conversion
# each per row read, a quarter of reading the contacts a batch locks.
_STATE_COLUMNS = (
    contacts.c.id,
    contacts.c.merged_into,
    contacts.c.status,
    contacts.c.status_changed_at,
    *(contacts.c[f] for f in STANDARD_FIELDS),
    contacts.c.custom,
    contacts.c.observed,
    contacts.c.person_changed_at,
)


def state_of(m: Any) -> ContactState:
    """A contact row as the resolver's ContactState."""
    return ContactState(
        id=m["id"],
        status=m["status"],
        attrs={f: m[f] for f in STANDARD_FIELDS if m[f] is not None},
        custom=dict(m["custom"] or {}),
        status_changed_at=m["status_changed_at"],
        observed=expand_observed(m["observed"], m, m["custom"]),
        person_changed_at=m["person_changed_at"],
    )


def _moved(conn: Connection, table: Table, absorbed: int, survivor: int) -> list[Any]:
    """Point `table`'s rows at `survivor`; returns the keys of the rows moved."""
    pk = table.c.key if table is identities else table.c.id
    rows = conn.execute(
        update(table)
        .where(table.c.contact_id == absorbed)
        .values(contact_id=survivor)
        .returning(pk)
    )
    return sorted(r[0] for r in rows)


def merge_rows(
    conn: Connection,
    absorbed: int,
    survivor: int,
    now: datetime,
    actor: str | None = None,
    rule: str = "person",
    taken: dict[str, list[Any]] | None = None,
) -> int:
    """Record a merge: point everything that pointed at `absorbed` at `survivor`, leave
    a tombstone, put a `merge` entry on the timeline and log what came from where.
    Every merge, automatic or by hand, goes through here. Returns the log entry's id.

    `taken`: the survivor's values the absorbed one supplied ([earlier value, earlier
    observed time] by attribute), which `contacts.unmerge` puts back. The survivor's
    own row is written by the caller."""
    detail: dict[str, Any] = {"taken": taken or {}}
    for name, table in (
        ("identities", identities),
        ("leads", leads),
        ("interactions", interactions),
        ("status_history", status_history),
        ("system_links", system_links),
    ):
        detail[name] = _moved(conn, table, absorbed, survivor)
    # Earlier tombstones follow, so merged_into is always one hop from a live contact.
    detail["tombstones"] = sorted(
        r[0]
        for r in conn.execute(
            update(contacts)
            .where(contacts.c.merged_into == absorbed)
            .values(merged_into=survivor)
            .returning(contacts.c.id)
        )
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
    # Duplicates flagged against the absorbed contact now concern the survivor; a pair
    # that this merge joined is settled.
    conn.execute(
        update(possible_duplicates)
        .where(
            or_(
                and_(
                    possible_duplicates.c.contact_id == absorbed,
                    possible_duplicates.c.other_id == survivor,
                ),
                and_(
                    possible_duplicates.c.contact_id == survivor,
                    possible_duplicates.c.other_id == absorbed,
                ),
            ),
            possible_duplicates.c.merged_at.is_(None),
        )
        .values(merged_at=now)
    )
    return int(
        conn.execute(
            insert(merge_log)
            .values(
                survivor_id=survivor,
                absorbed_id=absorbed,
                at=now,
                actor=actor,
                rule=rule,
                detail=detail,
            )
            .returning(merge_log.c.id)
        ).scalar_one()
    )


_HISTORY_COLUMNS = ("contact_id", "from_status", "to_status", "origin", "actor", "at")


def write_history(
    conn: Connection, entries: Sequence[tuple[Any, ...]], ids: Sequence[int] | None = None
) -> None:
    """Record status changes, as (contact_id, from_status, to_status, origin, actor, at)
    tuples, with `ids` reserved for them when the change feed needs to name them."""
    if ids is None:
        insert_values(conn, status_history, _HISTORY_COLUMNS, entries)
    else:
        rows = [(i, *e) for i, e in zip(ids, entries, strict=True)]
        insert_values(conn, status_history, ("id", *_HISTORY_COLUMNS), rows)


def flag_duplicates(conn: Connection, pairs: Sequence[tuple[int, int, str]], now: datetime) -> int:
    """File pairs of contacts kept apart (a shared key, names that clearly disagree) as
    possible duplicates; a pair already filed (dismissed or not) is not filed again.
    Returns how many were newly filed."""
    wanted: dict[tuple[int, int], str] = {}
    for a, b, key in pairs:
        if a != b:
            wanted.setdefault((min(a, b), max(a, b)), key)
    if not wanted:
        return 0
    ids = sorted({i for pair in wanted for i in pair})
    filed: set[tuple[int, int]] = set()
    for cond in among(conn, possible_duplicates.c.contact_id, ids):
        filed.update(
            (a, b)
            for a, b in conn.execute(
                select(possible_duplicates.c.contact_id, possible_duplicates.c.other_id).where(cond)
            )
        )
    rows = [
        {
            "contact_id": a,
            "other_id": b,
            "key": key,
            "reason": f"share {key.split(':', 1)[0]} but their names clearly disagree",
            "created_at": now,
        }
        for (a, b), key in sorted(wanted.items())
        if (a, b) not in filed
    ]
    if rows:
        conn.execute(insert(possible_duplicates), rows)
    return len(rows)


# `contacts.observed` as written: {"*": t} when every value was observed at t (a new
# contact, from one record: most rows), else the full map. A few dozen bytes instead of
# a few hundred per contact; `expand_observed` gives the full map back.
_ALL = "*"


def compact_observed(state: ContactState) -> dict[str, str]:
    """The map to store (see _ALL): compact only when it times every value the contact
    holds, so a value without a time (an older row's) stays without one."""
    observed = state.observed
    if len(observed) < 2 or len(observed) != len(state.attrs) + len(state.custom):
        return observed
    times = set(observed.values())
    return _all_at(times.pop()) if len(times) == 1 else observed


@functools.lru_cache(maxsize=256)
def _all_at(at: str) -> dict[str, str]:
    """{"*": at}, one object per time, read-only: the contacts a batch creates share
    one time, so the bulk writer serialises it once (it converts each distinct object
    once) instead of once a contact."""
    return {_ALL: at}


def expand_observed(stored: Any, row: Any, custom: Any) -> dict[str, str]:
    """A stored `observed` map in full: {"*": t} stands for every value the row holds
    (values it lacks need no time: any observation fills a blank)."""
    if not stored:
        return {}
    if _ALL not in stored:
        return dict(stored)
    at = stored[_ALL]
    full = {f: at for f in STANDARD_FIELDS if row[f] is not None}
    full.update((f"custom.{name}", at) for name in custom or {})
    return full


# What a contact's write sets, inserted or updated (the insert adds id and created_at).
_CONTACT_FIELDS = (
    *STANDARD_FIELDS,
    "status",
    "status_changed_at",
    "custom",
    "observed",
    "updated_at",
)


def _id(state: ContactState) -> int:
    return state.id


def _contact_values(state: ContactState, now: datetime) -> tuple[Any, ...]:
    """A contact's values in the order of _CONTACT_FIELDS."""
    return (
        *map(state.attrs.get, STANDARD_FIELDS),
        state.status,
        state.status_changed_at,
        state.custom,
        compact_observed(state),
        now,
    )


def apply(conn: Connection, plan: Plan, now: datetime) -> None:
    """Write a resolver's plan, and hand its changes to the change feed (only when
    someone listens: otherwise no event is built). The caller owns the transaction."""
    merge_ids = [
        merge_rows(conn, step.absorbed, step.survivor, now, None, step.rule, step.taken)
        for step in plan.merges
    ]

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

    # Stored contacts the batch changed (or whose values it saw again: their observed
    # times moved), in id order, the order their locks were taken in.
    dirty = sorted((c for c in plan.contacts.values() if c.dirty and not c.new), key=_id)
    update_values(
        conn, contacts, _CONTACT_FIELDS, [(c.id, *_contact_values(c, now)) for c in dirty]
    )
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

    history = [
        (final(h.contact_id), h.from_status, h.to_status, h.origin, None, h.at)
        for h in plan.history
    ]
    feed = changes.listening(conn)
    # The feed names history rows (outbox keys): their ids are reserved up front.
    history_ids = reserve_ids(conn, status_history, len(history)) if feed else None
    write_history(conn, history, history_ids)
    if plan.duplicates:
        flag_duplicates(conn, [(final(a), final(b), key) for a, b, key in plan.duplicates], now)
    if feed:
        from connector.sync.events import from_plan

        changes.emit(conn, from_plan(plan, final, history, history_ids or [], merge_ids), now)


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
    wanted = (quarantine.c.fingerprint, quarantine.c.source)
    existing = {
        fp for fp, s in probe(conn, wanted, quarantine.c.fingerprint, list(by_print)) if s == source
    }
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
