"""Reading and editing contacts by hand: lists, details, status moves, merges,
unmerges and possible duplicates."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import ColumnElement, Connection, delete, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from connector.identity import ContactState, absorb
from connector.model import STANDARD_FIELDS
from connector.statuses import UNKNOWN
from connector.store import issues
from connector.store.bulk import among, reserve_ids
from connector.store.engine import Store
from connector.store.ingest import (
    StaleRead,
    compact_observed,
    lock_contacts,
    merge_rows,
    state_of,
)
from connector.store.races import lost_race
from connector.store.tables import (
    contacts,
    identities,
    interactions,
    leads,
    merge_log,
    possible_duplicates,
    quarantine,
    status_history,
    statuses,
    system_links,
)
from connector.sync import changes

# Advisory lock key for recording the catalogue ("leadsync" in ASCII, as an int64).
CATALOGUE_LOCK = 0x6C65616473796E63


class NotFoundError(LookupError):
    """No such contact (or record); the message names it."""

    def __str__(self) -> str:
        return str(self.args[0])


def apply_catalogue(store: Store) -> None:
    """Record the catalogue in the store and move contacts of deleted statuses to Unknown.

    Only statuses the config lists as deleted are emptied: a command run without the
    deployment's config must not mistake custom statuses for deleted ones.
    """
    now = datetime.now(UTC)
    wanted = {(s.id, s.name, s.rank, s.terminal) for s in store.catalogue}
    with store.reader.connect() as conn:
        # Read first: most commands (contacts list, status) find the catalogue as they
        # left it, and must not take SQLite's write lock, which a running daemon holds
        # for a batch at a time, just to write the same rows again.
        recorded = {tuple(r) for r in conn.execute(select(statuses))}
        emptied = (
            bool(store.catalogue.deleted)
            and conn.execute(
                select(func.count())
                .select_from(contacts)
                .where(
                    contacts.c.status.in_(sorted(store.catalogue.deleted)),
                    contacts.c.merged_into.is_(None),
                )
            ).scalar_one()
        )
    if recorded == wanted and not emptied:
        return
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Replicas starting together would each delete and re-insert the catalogue
            # and collide on its key; one at a time, each sees the other's rows. (SQLite
            # transactions already take the write lock at BEGIN.)
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CATALOGUE_LOCK})
        for status_id in sorted(store.catalogue.deleted):
            moved = (
                conn.execute(
                    select(contacts.c.id).where(
                        contacts.c.status == status_id, contacts.c.merged_into.is_(None)
                    )
                )
                .scalars()
                .all()
            )
            if moved:
                _move(
                    conn,
                    moved,
                    status_id,
                    UNKNOWN,
                    "catalogue: status deleted",
                    None,
                    now,
                    rule="status-deleted",
                )
                if changes.listening(conn):
                    changes.emit(conn, [changes.StatusDeleted(status_id, tuple(moved))], now)
        conn.execute(delete(statuses))
        conn.execute(
            insert(statuses),
            [
                {"id": s.id, "name": s.name, "rank": s.rank, "terminal": s.terminal}
                for s in store.catalogue
            ],
        )


def _move(
    conn: Connection,
    ids: Sequence[int],
    from_status: int | None,
    to_status: int,
    origin: str,
    actor: str | None,
    now: datetime,
    rule: str | None = None,
) -> None:
    """Move contacts to `to_status`, in the history and the change feed."""
    conn.execute(
        update(contacts)
        .where(contacts.c.id.in_(ids))
        .values(status=to_status, status_changed_at=now, updated_at=now)
    )
    rows: list[dict[str, Any]] = [
        {
            "contact_id": i,
            "from_status": from_status,
            "to_status": to_status,
            "origin": origin,
            "actor": actor,
            "at": now,
            "rule": rule,
        }
        for i in ids
    ]
    feed = changes.listening(conn)
    if feed:
        # The feed names history rows (outbox keys): ids reserved up front.
        for row, history_id in zip(rows, reserve_ids(conn, status_history, len(rows)), strict=True):
            row["id"] = history_id
    conn.execute(insert(status_history), rows)
    if feed:
        changes.emit(
            conn,
            [
                changes.StatusChanged(
                    r["contact_id"], r["id"], from_status, to_status, origin, actor, rule, now
                )
                for r in rows
            ],
            now,
        )


def live_id(conn: Connection, contact_id: int) -> int:
    """The id of the live contact `contact_id` is or was merged into."""
    row = conn.execute(
        select(contacts.c.id, contacts.c.merged_into).where(contacts.c.id == contact_id)
    ).first()
    if row is None:
        raise NotFoundError(f"no contact with id {contact_id}")
    return int(row.merged_into or row.id)


def list_contacts(
    store: Store, status: int | None = None, limit: int = 50, offset: int = 0
) -> tuple[int, list[dict[str, Any]]]:
    """Live contacts, newest first, and how many match in all."""
    where: list[ColumnElement[bool]] = [contacts.c.merged_into.is_(None)]
    if status is not None:
        where.append(contacts.c.status == status)
    with store.reader.connect() as conn:
        total = conn.execute(select(func.count()).select_from(contacts).where(*where)).scalar_one()
        rows = conn.execute(
            select(contacts)
            .where(*where)
            .order_by(contacts.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return total, [_contact_dict(store, r._mapping) for r in rows]


def _contact_dict(store: Store, m: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": m["id"]}
    out.update({f: m[f] for f in STANDARD_FIELDS})
    out.update(
        status=m["status"],
        status_name=store.catalogue.name(m["status"]),
        status_changed_at=_iso(m["status_changed_at"]),
        score=m["score"],
        custom=m["custom"],
        created_at=_iso(m["created_at"]),
        updated_at=_iso(m["updated_at"]),
    )
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def show_contact(store: Store, contact_id: int) -> dict[str, Any]:
    """One contact with its identities, status history, leads, merges and timeline.

    An absorbed id shows the survivor, with `merged_from` saying so."""
    with store.reader.connect() as conn:
        live = live_id(conn, contact_id)
        row = conn.execute(select(contacts).where(contacts.c.id == live)).one()
        out = _contact_dict(store, row._mapping)
        if live != contact_id:
            out["merged_from"] = contact_id
        out["identities"] = [
            {"kind": k, "key": key}
            for key, k in conn.execute(
                select(identities.c.key, identities.c.kind)
                .where(identities.c.contact_id == live)
                .order_by(identities.c.key)
            )
        ]
        out["status_history"] = [
            {
                "from": store.catalogue.name(h.from_status) if h.from_status is not None else None,
                "to": store.catalogue.name(h.to_status),
                "origin": h.origin,
                "actor": h.actor,
                "at": _iso(h.at),
                "rule": h.rule,
                "accepted": h.accepted,
                "losing": h.losing,
                "value": h.value,
            }
            for h in conn.execute(
                select(status_history)
                .where(status_history.c.contact_id == live)
                .order_by(status_history.c.at, status_history.c.id)
            )
        ]
        out["leads"] = [
            {
                "source": lead.source,
                "source_id": lead.source_id,
                "ref": lead.ref,
                "occurred_at": _iso(lead.occurred_at),
                "received_at": _iso(lead.received_at),
                "context": lead.context,
            }
            for lead in conn.execute(
                select(leads).where(leads.c.contact_id == live).order_by(leads.c.id)
            )
        ]
        out["field_issues"] = issues.open_for_contact(conn, live)
        # The log as `merges` reads it, without the moved ids (`detail`), which only an
        # unmerge needs.
        out["merges"] = [
            {k: v for k, v in m.items() if k != "detail"} for m in _merge_entries(conn, live)
        ]
        out["interactions"] = [
            {"kind": i.kind, "at": _iso(i.occurred_at), "source": i.source, "data": i.data}
            for i in conn.execute(
                select(interactions)
                .where(interactions.c.contact_id == live)
                .order_by(interactions.c.occurred_at)
            )
        ]
        return out


P = ParamSpec("P")
R = TypeVar("R")
_ATTEMPTS = 5


def _retried(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a person's edit again when it lost a race with another writer (PostgreSQL
    broke a deadlock, or contacts kept being merged away while it waited): the next
    attempt locks and reads afresh. Anything else is the person's to see."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return fn(*args, **kwargs)
            except (DBAPIError, StaleRead) as exc:
                lost = isinstance(exc, StaleRead) or lost_race(exc)
                if not lost or attempt == _ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    return run


@_retried
def set_status(store: Store, contact_id: int, status: str | int, actor: str | None) -> int:
    """A person moves a contact to `status` (any status: people are trusted)."""
    target = store.catalogue.resolve(status)
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        [state] = _locked_live(conn, [contact_id]).values()
        if state.status != target.id:
            _move(conn, [state.id], state.status, target.id, "person", actor, now, "person")
            conn.execute(
                update(contacts).where(contacts.c.id == state.id).values(person_changed_at=now)
            )
        return state.id


# Rounds of following merges that commit while a person's edit waits for its locks.
_FOLLOW_ROUNDS = 20


def _locked_live(conn: Connection, ids: Sequence[int]) -> dict[int, ContactState]:
    """The live contacts `ids` are or were merged into, locked (PostgreSQL: FOR UPDATE
    in id order, as ingest locks them) and read after the lock, keyed by the id asked
    for. A merge that commits while we wait for the lock is followed, never written
    past."""
    for _ in range(_FOLLOW_ROUNDS):
        live = {i: live_id(conn, i) for i in ids}
        states, tombstones = lock_contacts(conn, sorted(set(live.values())))
        if not tombstones:
            by_id = {s.id: s for s in states}
            return {i: by_id[j] for i, j in live.items()}
    raise StaleRead(f"contacts {list(ids)} kept being merged away; try again")


def _write_state(conn: Connection, state: ContactState, now: datetime, **extra: Any) -> None:
    conn.execute(
        update(contacts)
        .where(contacts.c.id == state.id)
        .values(
            **{f: state.attrs.get(f) for f in STANDARD_FIELDS},
            custom=state.custom,
            observed=compact_observed(state),
            updated_at=now,
            **extra,
        )
    )


@_retried
def merge_contacts(store: Store, survivor: int, absorbed: int, actor: str | None) -> int:
    """Fold `absorbed` into `survivor` (DOMAIN.md): the person's choice of survivor is
    kept and its values win, blanks are filled from the absorbed, and everything that
    pointed at it moves over. Logged like every merge, so `unmerge` can undo it."""
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        locked = _locked_live(conn, [survivor, absorbed])
        keep, gone = locked[survivor], locked[absorbed]
        if keep.id == gone.id:
            raise ValueError(
                f"contacts {survivor} and {absorbed} are already one contact ({keep.id})"
            )
        taken = absorb(keep, gone, newer_wins=False)
        _write_state(conn, keep, now, person_changed_at=now)
        merge_id = merge_rows(conn, gone.id, keep.id, now, actor=actor, rule="person", taken=taken)
        if changes.listening(conn):
            changes.emit(conn, [changes.Merged(keep.id, gone.id, merge_id, "person")], now)
        return keep.id


@_retried
def unmerge(store: Store, contact_id: int, actor: str | None) -> tuple[int, int]:
    """Undo the last merge that absorbed `contact_id`: it comes back with its own
    identities, leads, interactions, status history and values, and the survivor
    gives back the blanks it had filled from it (unless they changed since).
    Returns (restored contact, the contact it had been merged into)."""
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        entry = conn.execute(
            select(merge_log)
            .where(merge_log.c.absorbed_id == contact_id, merge_log.c.undone_at.is_(None))
            .order_by(merge_log.c.id.desc())
            .limit(1)
        ).first()
        if entry is None:
            raise NotFoundError(f"contact {contact_id} has no merge to undo")
        [survivor] = _locked_live(conn, [entry.survivor_id]).values()
        # The tombstone, locked like any contact row a writer changes.
        conn.execute(
            select(contacts.c.id).where(contacts.c.id == contact_id).with_for_update()
        ).all()
        detail = entry.detail
        for table, pk, name in (
            (identities, identities.c.key, "identities"),
            (leads, leads.c.id, "leads"),
            (interactions, interactions.c.id, "interactions"),
            (status_history, status_history.c.id, "status_history"),
            (system_links, system_links.c.id, "system_links"),
        ):
            moved = detail.get(name) or []
            for cond in among(conn, pk, moved):
                conn.execute(update(table).where(cond).values(contact_id=contact_id))
        for cond in among(conn, contacts.c.id, detail.get("tombstones") or []):
            conn.execute(update(contacts).where(cond).values(merged_into=contact_id))
        conn.execute(
            update(contacts)
            .where(contacts.c.id == contact_id)
            .values(merged_into=None, updated_at=now)
        )
        restored = conn.execute(select(contacts).where(contacts.c.id == contact_id)).one()
        mine = state_of(restored._mapping)
        for okey, (before, seen) in (detail.get("taken") or {}).items():
            custom = okey.startswith("custom.")
            name = okey.removeprefix("custom.")
            values, theirs = (
                (survivor.custom, mine.custom) if custom else (survivor.attrs, mine.attrs)
            )
            if values.get(name) != theirs.get(name):
                continue  # changed since the merge: the newer value stays
            if before is None:
                values.pop(name, None)
            else:
                values[name] = before
            if seen is None:
                survivor.observed.pop(okey, None)
            else:
                survivor.observed[okey] = seen
        _write_state(conn, survivor, now, person_changed_at=now)
        for who, other in ((survivor.id, contact_id), (contact_id, survivor.id)):
            data: dict[str, Any] = {"other": other, "merge": entry.id}
            if actor:
                data["actor"] = actor
            conn.execute(
                insert(interactions).values(
                    contact_id=who, kind="unmerge", occurred_at=now, source=None, data=data
                )
            )
        conn.execute(
            update(merge_log)
            .where(merge_log.c.id == entry.id)
            .values(undone_at=now, undone_by=actor)
        )
        if changes.listening(conn):
            changes.emit(conn, [changes.Unmerged(contact_id, survivor.id, entry.id)], now)
        return contact_id, survivor.id


def merges(store: Store, contact_id: int) -> list[dict[str, Any]]:
    """The merge log entries that concern a contact (as survivor or absorbed)."""
    with store.reader.connect() as conn:
        return _merge_entries(conn, contact_id)


def _merge_entries(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(merge_log)
        .where((merge_log.c.survivor_id == contact_id) | (merge_log.c.absorbed_id == contact_id))
        .order_by(merge_log.c.id)
    )
    return [
        {
            "id": m.id,
            "survivor": m.survivor_id,
            "absorbed": m.absorbed_id,
            "at": _iso(m.at),
            "actor": m.actor,
            "rule": m.rule,
            "detail": m.detail,
            "undone_at": _iso(m.undone_at),
            "undone_by": m.undone_by,
        }
        for m in rows
    ]


def duplicates(store: Store, include_settled: bool = False) -> list[dict[str, Any]]:
    """Possible duplicates: pairs of contacts a shared key joined whose names clearly
    disagree, for a person to merge or dismiss. Settled pairs (dismissed, merged, or
    since become one contact) only with `include_settled`."""
    with store.reader.connect() as conn:
        rows = conn.execute(select(possible_duplicates).order_by(possible_duplicates.c.id)).all()
        ids = sorted({i for r in rows for i in (r.contact_id, r.other_id)})
        people: dict[int, Any] = {}
        for cond in among(conn, contacts.c.id, ids):
            people.update((c.id, c) for c in conn.execute(select(contacts).where(cond)))
    out = []
    for r in rows:
        a, b = people[r.contact_id], people[r.other_id]
        live_a, live_b = a.merged_into or a.id, b.merged_into or b.id
        settled = bool(r.dismissed_at or r.merged_at) or live_a == live_b
        if settled and not include_settled:
            continue
        out.append(
            {
                "id": r.id,
                "key": r.key,
                "reason": r.reason,
                "created_at": _iso(r.created_at),
                "dismissed_at": _iso(r.dismissed_at),
                "dismissed_by": r.dismissed_by,
                "merged_at": _iso(r.merged_at),
                "contacts": [_brief(store, c) for c in (a, b)],
            }
        )
    return out


def _brief(store: Store, c: Any) -> dict[str, Any]:
    return {
        "id": c.merged_into or c.id,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "email": c.email,
        "phone": c.phone,
        "status": store.catalogue.name(c.status),
    }


def dismiss_duplicate(store: Store, pair_id: int, actor: str | None) -> None:
    """A person says the pair are different people: it is no longer offered."""
    with store.engine.begin() as conn:
        done = conn.execute(
            update(possible_duplicates)
            .where(possible_duplicates.c.id == pair_id)
            .values(dismissed_at=datetime.now(UTC), dismissed_by=actor)
        )
        if done.rowcount == 0:
            raise NotFoundError(f"no possible duplicate with id {pair_id}")


def by_status(conn: Connection) -> dict[int, int]:
    """Live contacts per status id."""
    rows = conn.execute(
        select(contacts.c.status, func.count())
        .where(contacts.c.merged_into.is_(None))
        .group_by(contacts.c.status)
    ).all()
    return {int(k): int(v) for k, v in rows}


def counts(store: Store) -> dict[str, int]:
    """Live contacts by status name, plus open quarantine."""
    with store.reader.connect() as conn:
        held = by_status(conn)
        open_q = conn.execute(
            select(func.count()).select_from(quarantine).where(quarantine.c.resolved_at.is_(None))
        ).scalar_one()
    out = {store.catalogue.name(k): v for k, v in sorted(held.items())}
    out["quarantine"] = int(open_q)
    return out


def unlisted_statuses(store: Store) -> dict[int, int]:
    """Live contacts per status id that this deployment's catalogue neither defines nor
    deletes (a custom status dropped from the YAML instead of listed under `delete`):
    they keep the id until the admin says what it is."""
    known = {s.id for s in store.catalogue} | set(store.catalogue.deleted)
    with store.reader.connect() as conn:
        return {i: n for i, n in by_status(conn).items() if i not in known}


def unlisted_advice(found: dict[int, int]) -> str:
    held = ", ".join(f"{n} hold {i}" for i, n in sorted(found.items()))
    return (
        f"contacts hold statuses this config neither defines nor deletes ({held}): list "
        "each under statuses.custom, or under statuses.delete to move its contacts to Unknown"
    )
