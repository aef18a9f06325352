"""Quarantine that closes: entries resolve when their record is ingested later, the
admin dismisses what will never be fixed, and the list is paged and filtered.

An entry is open while `resolved_at` is NULL; `resolution` says how it closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    func,
    literal_column,
    select,
    true,
    update,
)

from connector.model import Resolved
from connector.store.bulk import among, probe
from connector.store.engine import Store
from connector.store.ingest import fingerprint
from connector.store.tables import quarantine

Resolution = Literal["reingested", "retried", "dismissed"]
_OPEN = quarantine.c.resolved_at.is_(None)
# The predicate of the partial index ix_quarantine_open_records, written out (not as a
# bound parameter) so that a prepared statement's generic plan can use the index.
_OPEN_RECORD = and_(quarantine.c.kind == literal_column("'record'"), _OPEN)


# Up to this many open record entries per record of the batch, the source's open
# entries are read and matched here; past it (a backlog nobody dismissed), the batch's
# source ids and fingerprints are looked up in the index instead. Reading a row and
# probing a value cost about the same, and a batch probes two values a record.
_READ_PER_RECORD = 2


def resolve_reingested(
    conn: Connection, source: str, records: Sequence[Resolved], now: datetime
) -> int:
    """Close the open entries of `source` whose record was just ingested fine: the same
    source id, else the same raw content (the mapping was fixed and the file imported
    again). One query on a partial index when the source has few open record entries
    (none: nothing else runs), index probes when it has many, and an update only of
    the entries that match. Returns how many closed."""
    if not records:
        return 0
    at_most = _READ_PER_RECORD * len(records)
    entries = conn.execute(
        select(quarantine.c.id, quarantine.c.source_id, quarantine.c.fingerprint)
        .where(quarantine.c.source == source, _OPEN_RECORD)
        .limit(at_most + 1)
    ).all()
    if not entries:
        return 0
    few = len(entries) <= at_most
    matched = _match(records, entries) if few else _probe(conn, source, records)
    closed = 0
    for cond in among(conn, quarantine.c.id, sorted(matched)):
        closed += conn.execute(
            update(quarantine).where(_OPEN, cond).values(resolved_at=now, resolution="reingested")
        ).rowcount
    return closed


def _match(records: Sequence[Resolved], entries: Sequence[Any]) -> set[int]:
    """The entries (id, source id, fingerprint) that `records` match. A record's raw
    content is hashed only while an entry is left that its source id did not match."""
    ids = {r.source_id for r in records}
    matched = {i for i, source_id, _ in entries if source_id in ids}
    if len(matched) < len(entries):
        prints = {fingerprint(r.source, r.raw) for r in records}
        matched.update(i for i, _, fp in entries if fp in prints)
    return matched


def _probe(conn: Connection, source: str, records: Sequence[Resolved]) -> set[int]:
    """The open record entries of `source` that `records` match, found by index
    probes of their source ids and fingerprints (store/bulk.py `probe`)."""
    wanted = (quarantine.c.id, quarantine.c.source, quarantine.c.kind, quarantine.c.resolved_at)
    ids = list({r.source_id for r in records})
    prints = list({fingerprint(r.source, r.raw) for r in records})
    return {
        i
        for column, values in ((quarantine.c.source_id, ids), (quarantine.c.fingerprint, prints))
        for i, s, kind, resolved_at in probe(conn, wanted, column, values)
        if s == source and kind == "record" and resolved_at is None
    }


def dismiss(
    store: Store,
    ids: Sequence[int] = (),
    *,
    source: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> int:
    """Close open entries the admin will not fix: by id, or every one of a source or
    whose reason contains `reason` (case-insensitive). Returns how many closed."""
    conditions: list[ColumnElement[bool]] = []
    if ids:
        conditions.append(quarantine.c.id.in_(list(ids)))
    if source:
        conditions.append(quarantine.c.source == source)
    if reason:
        conditions.append(func.lower(quarantine.c.reason).contains(reason.lower()))
    if not conditions:
        raise ValueError("say which entries to dismiss: ids, --source or --reason")
    with store.engine.begin() as conn:
        return int(
            conn.execute(
                update(quarantine)
                .where(_OPEN, and_(*conditions))
                .values(resolved_at=now or datetime.now(UTC), resolution="dismissed")
            ).rowcount
        )


def entries(
    store: Store,
    *,
    limit: int | None = 50,
    offset: int = 0,
    source: str | None = None,
    include_resolved: bool = False,
    kind: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """One page of entries (oldest first) and how many match in all. `kind`: 'record'
    (whole records nobody could identify or read), 'field' (one value left out of an
    ingested contact), or both when None."""
    where: list[ColumnElement[bool]] = []
    if not include_resolved:
        where.append(_OPEN)
    if kind is not None:
        where.append(quarantine.c.kind == kind)
    if source:
        where.append(quarantine.c.source == source)
    condition = and_(true(), *where)
    query = select(quarantine).where(condition).order_by(quarantine.c.id).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    with store.reader.connect() as conn:
        total = conn.execute(select(func.count()).select_from(quarantine).where(condition))
        count = int(total.scalar_one())
        rows = [_entry(q._mapping) for q in conn.execute(query)]
    return rows, count


# Reasons a mapping change fixes; every other reason is in the data itself.
_MAPPING_REASONS = ("mapping", "not a standard field", "map it", "default_region")


def hint(reason: str) -> str:
    """What the admin does about an entry: fix the mapping, or fix the data."""
    lowered = reason.lower()
    if any(marker in lowered for marker in _MAPPING_REASONS):
        return "fix the mapping, then `leadsync quarantine retry`"
    return "fix the data at the source and import it again (the entry closes by itself)"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def record_name(ref: str, context: Any) -> str:
    """The entry's record as a person finds it: `leads.csv row 5`, `lead 123`."""
    stream = context.get("stream") if isinstance(context, dict) else None
    if isinstance(stream, str) and context.get("kind") == "csv":
        name = stream.replace("\\", "/").rsplit("/", 1)[-1]
        if not ref.startswith(name):
            return f"{name} {ref}"
    return ref


def _entry(q: Any) -> dict[str, Any]:
    return {
        "id": q["id"],
        "source": q["source"],
        "ref": q["ref"],
        "record": record_name(q["ref"], q["context"]),
        "field": q["field"],
        "reason": q["reason"],
        "attempts": q["attempts"],
        "created_at": _iso(q["created_at"]),
        "resolved_at": _iso(q["resolved_at"]),
        "resolution": q["resolution"],
        "kind": q["kind"],
        "contact_id": q["contact_id"],
        "raw": q["raw"],
    }


__all__ = ["Resolution", "dismiss", "entries", "hint", "resolve_reingested"]
