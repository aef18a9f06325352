"""Field issues: one value of an ingested person that could not be taken.

A bad email, phone, country or typed custom answer is left out of the contact and kept
here, in the quarantine table with `kind` 'field' and the contact it belongs to, so the
person is never lost for one bad value and the value is never lost either. Reasons are
categories; the value as given lives only in the row's `raw`. A later record from the
same source that gives the contact a good value for that field resolves the issue.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select, update

from connector.identity import content_hash
from connector.model import Resolved
from connector.store.bulk import among, insert_rows, probe
from connector.store.tables import contacts, leads, quarantine

FIELD = "field"
RECORD = "record"


def settle(
    conn: Connection,
    source: str,
    records: Sequence[Resolved],
    context: dict[str, Any],
    now: datetime,
    landed: MappingABC[str, int],
    merged: MappingABC[int, int],
) -> tuple[int, int]:
    """File the field issues of `records` (already written) and resolve the open issues
    their good values fix. `landed` maps the source ids of records that landed on a
    contact already stored to that contact (only those can have open issues), `merged`
    the contacts this batch absorbed to their survivors. Returns (newly filed,
    resolved). Runs in the batch's transaction; a clean batch that touched no stored
    contact costs nothing."""
    flawed = [r for r in records if r.problems]
    filed = 0
    if flawed:
        contact_of = _contacts_of(conn, source, [r.source_id for r in flawed])
        filed = _file(conn, source, flawed, contact_of, context, now)
    resolved = _resolve(conn, source, records, landed, merged, now) if landed else 0
    return filed, resolved


def _contacts_of(conn: Connection, source: str, source_ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for cond in among(conn, leads.c.source_id, list(set(source_ids))):
        rows = conn.execute(
            select(leads.c.source_id, leads.c.contact_id).where(leads.c.source == source, cond)
        )
        found.update((s, c) for s, c in rows)
    return found


def fingerprint(source: str, source_id: str, field: str, value: str | None) -> str:
    """Which field issue this is: the same value of the same record's field."""
    return content_hash(FIELD, source, source_id, field, value)


def _file(
    conn: Connection,
    source: str,
    records: Sequence[Resolved],
    contact_of: dict[str, int],
    context: dict[str, Any],
    now: datetime,
) -> int:
    candidates: dict[str, dict[str, Any]] = {}
    for record in records:
        for problem in record.problems:
            fp = fingerprint(source, record.source_id, problem.field, problem.value)
            candidates[fp] = {
                "source": source,
                "ref": record.ref,
                "field": problem.field,
                "reason": problem.reason,
                "raw": {"field": problem.field, "value": problem.value},
                "context": {**context, "source_id": record.source_id},
                "fingerprint": fp,
                "attempts": 1,
                "created_at": now,
                "resolved_at": None,
                "kind": FIELD,
                "contact_id": contact_of.get(record.source_id),
                "source_id": record.source_id,
            }
    if not candidates:
        return 0
    wanted = (
        quarantine.c.id,
        quarantine.c.fingerprint,
        quarantine.c.source,
        quarantine.c.resolved_at,
    )
    seen: set[str] = set()
    reopened: list[int] = []
    for i, fp, s, at in probe(conn, wanted, quarantine.c.fingerprint, list(candidates)):
        if s == source:
            seen.add(fp)
            if at is not None:
                reopened.append(i)
    # The same bad value given again after it was fixed opens its issue again.
    for cond in among(conn, quarantine.c.id, reopened):
        conn.execute(
            update(quarantine)
            .where(cond)
            .values(resolved_at=None, resolution=None, attempts=quarantine.c.attempts + 1)
        )
    rows = [row for fp, row in candidates.items() if fp not in seen]
    insert_rows(conn, quarantine, rows)
    return len(rows)


def _resolve(
    conn: Connection,
    source: str,
    records: Sequence[Resolved],
    landed: MappingABC[str, int],
    merged: MappingABC[int, int],
    now: datetime,
) -> int:
    fixed: set[tuple[int, str]] = set()
    for record in records:
        contact = landed.get(record.source_id)
        if contact is None:
            continue
        good = set(record.attrs) | set(record.custom)
        if record.status is not None:
            good.add("status")
        good -= {p.field for p in record.problems}
        fixed.update((contact, name) for name in good)
    if not fixed:
        return 0
    ids = sorted({c for c, _ in fixed} | {a for a, s in merged.items() if s in landed.values()})
    q = quarantine.c
    wanted = (q.id, q.contact_id, q.field, q.source, q.kind, q.resolved_at)
    open_rows = [
        i
        for i, c, f, s, kind, at in probe(conn, wanted, q.contact_id, ids)
        if s == source and kind == FIELD and at is None and (merged.get(c, c), f) in fixed
    ]
    for cond in among(conn, quarantine.c.id, open_rows):
        conn.execute(
            update(quarantine).where(cond).values(resolved_at=now, resolution="reingested")
        )
    return len(open_rows)


def open_for_contact(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    """The contact's open field issues, oldest first (for `contacts show`), with those
    filed on contacts merged into it."""
    absorbed = select(contacts.c.id).where(contacts.c.merged_into == contact_id)
    rows = conn.execute(
        select(quarantine)
        .where(
            or_(quarantine.c.contact_id == contact_id, quarantine.c.contact_id.in_(absorbed)),
            quarantine.c.kind == FIELD,
            quarantine.c.resolved_at.is_(None),
        )
        .order_by(quarantine.c.id)
    )
    return [
        {
            "id": q.id,
            "source": q.source,
            "ref": q.ref,
            "field": q.field,
            "reason": q.reason,
            "value": (q.raw or {}).get("value") if isinstance(q.raw, dict) else None,
        }
        for q in rows
    ]


def open_by_record(store_conn: Connection, source: str) -> dict[str, list[str]]:
    """Open entries of `source` (whole records and single values) by the record's source
    id, as `field: reason` lines: what a source that can show it back (a sheet's error
    column) tells the person who keeps the record."""
    rows = store_conn.execute(
        select(quarantine.c.source_id, quarantine.c.field, quarantine.c.reason)
        .where(
            quarantine.c.source == source,
            quarantine.c.resolved_at.is_(None),
            quarantine.c.source_id.is_not(None),
        )
        .order_by(quarantine.c.id)
    )
    found: dict[str, list[str]] = {}
    for source_id, field, reason in rows:
        line = reason if reason.startswith(f"{field}:") else f"{field}: {reason}"
        if line not in found.setdefault(source_id, []):
            found[source_id].append(line)
    return found
