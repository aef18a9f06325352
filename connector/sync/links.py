"""system_links: which record of a two-way system is which contact.

One row per (system, external id), pointing at a contact, with the last value seen in
the system (and the system's timestamp for it) and the last value we wrote there. The
status engine reads it to find an observation's contact and to drop our own echoes;
adapters write it after a push (`link` for a record they created, `record_written` for
a value they wrote), in a short transaction of their own.

Merges move an absorbed contact's links to the survivor and unmerges move them back,
with the contact's other rows (store/ingest.py `merge_rows`, store/contacts.py
`unmerge`), so a link always names a live contact or the tombstone `find` follows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from connector.store.bulk import among
from connector.store.tables import contacts, system_links

_t = system_links


@dataclass(frozen=True, slots=True)
class Link:
    """One system_links row; `contact_id` is the live contact (merges followed)."""

    id: int
    system: str
    external_id: str
    contact_id: int
    last_seen_value: str | None
    last_seen_at: datetime | None
    last_written_value: str | None
    last_written_at: datetime | None


def _insert(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(_t)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(_t)


def link(
    conn: Connection,
    system: str,
    external_id: str,
    contact_id: int,
    now: datetime | None = None,
) -> None:
    """Say that `external_id` in `system` is `contact_id`. Idempotent; an external id
    already linked keeps its contact (a second claim on it is a mistake to look at, not
    a reason to move it silently)."""
    stmt = (
        _insert(conn)
        .values(
            system=system,
            external_id=str(external_id),
            contact_id=contact_id,
            created_at=now or datetime.now(UTC),
        )
        .on_conflict_do_nothing(index_elements=["system", "external_id"])
    )
    conn.execute(stmt)


def _live() -> Any:
    return func.coalesce(contacts.c.merged_into, contacts.c.id)


def _select() -> Any:
    return select(
        _t.c.id,
        _t.c.system,
        _t.c.external_id,
        _live().label("live"),
        _t.c.last_seen_value,
        _t.c.last_seen_at,
        _t.c.last_written_value,
        _t.c.last_written_at,
    ).join(contacts, contacts.c.id == _t.c.contact_id)


def _link(r: Any) -> Link:
    return Link(
        r.id,
        r.system,
        r.external_id,
        int(r.live),
        r.last_seen_value,
        r.last_seen_at,
        r.last_written_value,
        r.last_written_at,
    )


def find(conn: Connection, system: str, external_id: str) -> int | None:
    """The live contact `external_id` in `system` is (merges followed), if linked."""
    row = conn.execute(
        _select().where(_t.c.system == system, _t.c.external_id == str(external_id))
    ).first()
    return int(row.live) if row is not None else None


def many(conn: Connection, system: str, external_ids: Iterable[str]) -> dict[str, Link]:
    """The links of `external_ids` in `system`, by external id (one query)."""
    wanted = sorted({str(e) for e in external_ids})
    found: dict[str, Link] = {}
    for cond in among(conn, _t.c.external_id, wanted):
        for r in conn.execute(_select().where(_t.c.system == system, cond)):
            found[r.external_id] = _link(r)
    return found


def external_ids(conn: Connection, system: str, contact_id: int) -> list[str]:
    """The records of `system` linked to `contact_id`, oldest link first."""
    rows = conn.execute(
        select(_t.c.external_id)
        .where(_t.c.system == system, _t.c.contact_id == contact_id)
        .order_by(_t.c.id)
    )
    return [r[0] for r in rows]


def of_contacts(conn: Connection, contact_ids: Sequence[int]) -> dict[int, dict[str, list[str]]]:
    """Every link of `contact_ids`: contact -> system -> external ids (one query)."""
    found: dict[int, dict[str, list[str]]] = {}
    for cond in among(conn, _t.c.contact_id, sorted(set(contact_ids))):
        rows = conn.execute(
            select(_t.c.contact_id, _t.c.system, _t.c.external_id).where(cond).order_by(_t.c.id)
        )
        for contact_id, system, external_id in rows:
            found.setdefault(contact_id, {}).setdefault(system, []).append(external_id)
    return found


def record_written(
    conn: Connection,
    system: str,
    contact_id: int,
    external_id: str,
    value: str | None,
    at: datetime,
) -> None:
    """An adapter wrote `value` (the system's word) to `external_id` at `at`: linked if
    it was not, and remembered, so the engine drops the value when it comes back."""
    link(conn, system, external_id, contact_id, at)
    conn.execute(
        update(_t)
        .where(_t.c.system == system, _t.c.external_id == str(external_id))
        .values(last_written_value=value, last_written_at=at)
    )


def record_seen(conn: Connection, link_id: int, value: str | None, at: datetime) -> None:
    """The engine saw `value` with the system's timestamp `at` on this link."""
    conn.execute(
        update(_t).where(_t.c.id == link_id).values(last_seen_value=value, last_seen_at=at)
    )
