"""`status.observe` for a batch: decide every observation in memory, then write.

The batch's links and contacts are read (and locked) once; each observation is decided
against the state the earlier ones left; then the decisions are written in a fixed
number of statements (history rows with reserved ids, the contacts' new statuses, the
links' last seen values) and handed to the change feed at once, so a webhook drain's
batch of 200 costs about as much as a handful of single changes. The rules are
sync/rules.py's; what each step means is in sync/status.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, update

from connector.identity import ContactState
from connector.ports import StatusObservation
from connector.statuses import Catalogue, Status, UnknownStatusError
from connector.store.bulk import insert_values, reserve_ids
from connector.store.ingest import lock_contacts
from connector.store.tables import contacts, status_history, system_links
from connector.sync import changes, fanout, links
from connector.sync.rules import Rules, judge
from connector.sync.status import (
    Decision,
    _by_identity,
    _by_lead,
    _file_unmapped,
    _locked,
    _rules,
    catalogue_of,
)
from connector.sync.vocabulary import Vocabulary


@dataclass(slots=True)
class _Write:
    """A decision about a different status, to be written (history row and, if
    accepted, the contact's move); `push_back`: write the store's status back."""

    contact_id: int
    from_status: int
    to_status: int
    accepted: bool
    origin: str
    actor: str | None
    rule: str
    losing: str
    value: str | None
    push_back: bool

    @property
    def tail(self) -> tuple[Any, ...]:
        """rule, accepted, losing, value: the history columns after `at`."""
        return (self.rule, self.accepted, self.losing, self.value)


@dataclass(slots=True)
class _Batch:
    catalogue: Catalogue
    rules: Rules
    vocabulary: Vocabulary
    now: datetime
    known: dict[tuple[str, str], links.Link]
    states: dict[int, ContactState]
    writes: list[_Write]
    seen: dict[int, links.Link]
    person: set[int]


def _is_echo(link: links.Link, value: str | None) -> bool:
    """`value` is what we last wrote to this record (a system may change its case)."""
    written = link.last_written_value
    return written is not None and value is not None and value.casefold() == written.casefold()


def _find(conn: Connection, obs: StatusObservation, batch: _Batch) -> int | None:
    link = batch.known.get((obs.system, obs.external_id))
    if link is not None:
        return link.contact_id
    found = _by_lead(conn, obs.system, obs.external_id)
    if found is None and obs.identity:
        found = _by_identity(conn, obs.identity)
    if found is not None:
        links.link(conn, obs.system, obs.external_id, found, batch.now)
        batch.known.update(
            ((obs.system, e), link)
            for e, link in links.many(conn, obs.system, [obs.external_id]).items()
        )
    return found


def _state(conn: Connection, batch: _Batch, contact_id: int) -> ContactState:
    state = batch.states.get(contact_id)
    if state is None:
        state = _locked(conn, contact_id)  # a tombstone, or found by lead or identity
        batch.states[contact_id] = batch.states[state.id] = state
    return state


def observe_batch(
    conn: Connection,
    observations: Sequence[StatusObservation],
    vocabulary: Vocabulary,
    now: datetime,
) -> list[Decision]:
    """See `connector.sync.status.observe`."""
    catalogue = catalogue_of(conn)
    known: dict[tuple[str, str], links.Link] = {}
    for system in sorted({o.system for o in observations}):
        wanted = [o.external_id for o in observations if o.system == system]
        found = links.many(conn, system, wanted)
        known.update(((system, e), link) for e, link in found.items())
    # Lock the linked contacts at once (id order, as every writer locks).
    states, _ = lock_contacts(conn, sorted({link.contact_id for link in known.values()}))
    batch = _Batch(
        catalogue,
        _rules(conn, catalogue),
        vocabulary,
        now,
        known,
        {s.id: s for s in states},
        [],
        {},
        set(),
    )
    order = sorted(range(len(observations)), key=lambda i: observations[i].changed_at)
    decided: list[tuple[Decision, int | None]] = [None] * len(observations)  # type: ignore[list-item]
    for i in order:
        decided[i] = _decide(conn, observations[i], batch)
    ids = _write(conn, batch)
    return [d if w is None else replace(d, history_id=ids[w]) for d, w in decided]


def _decide(conn: Connection, obs: StatusObservation, batch: _Batch) -> tuple[Decision, int | None]:
    """One observation's decision, and the index of its write (None: nothing to record)."""
    contact_id = _find(conn, obs, batch)

    def out(
        rule: str,
        accepted: bool = False,
        status: str | None = None,
        previous: str | None = None,
        write: int | None = None,
    ) -> tuple[Decision, int | None]:
        decision = Decision(
            obs.system, obs.external_id, contact_id, obs.value, status, previous, accepted, rule
        )
        return decision, write

    if contact_id is None:
        return out("unknown-contact")
    link = batch.known[(obs.system, obs.external_id)]
    state = _state(conn, batch, contact_id)
    contact_id = state.id
    previous = batch.catalogue.name(state.status)
    proposed = _proposed(batch, obs.value)

    def seen(clear_written: bool) -> None:
        # What the system shows now; a value that is not our write means the system no
        # longer shows what we wrote, so that write can no longer come back as an echo.
        now_link = replace(
            link,
            contact_id=contact_id,
            last_seen_value=obs.value,
            last_seen_at=obs.changed_at,
            last_written_value=None if clear_written else link.last_written_value,
        )
        batch.known[(obs.system, obs.external_id)] = batch.seen[link.id] = now_link

    if link.last_seen_at is not None and obs.changed_at <= link.last_seen_at:
        same = obs.changed_at == link.last_seen_at and obs.value == link.last_seen_value
        return out("duplicate" if same else "stale", previous=previous)
    if (
        link.last_written_at is not None
        and obs.changed_at <= link.last_written_at
        and obs.value != link.last_written_value
    ):
        # Shown before (or at the moment of) our later write there, which replaced it:
        # an earlier write of ours coming back, or an edit our write overwrote.
        return out("stale", previous=previous)
    if obs.value is None:
        seen(True)
        return out("cleared", previous=previous)
    if proposed is None:
        _file_unmapped(conn, obs, contact_id, batch.now)
        seen(True)
        return out("unmapped", previous=previous)
    label = f"{obs.value} ({proposed.name})"
    if _is_echo(link, obs.value):
        seen(False)
        if proposed.id == state.status:
            return out("echo", status=proposed.name, previous=previous)
        # Our own write, but the store has moved on since (a change the system itself
        # made meanwhile was accepted, and this older write landed after it): refused,
        # and the store's status written back so the system does not keep the old one.
        w = _add(batch, state, proposed.id, False, obs, "echo", label)
        return out("echo", False, proposed.name, previous, w)
    seen(True)
    accepted, rule = judge(
        batch.rules,
        state.status,
        state.status_changed_at,
        proposed.id,
        obs.system,
        obs.by_person,
        obs.changed_at,
    )
    if rule == "unchanged":
        return out(rule, True, proposed.name, previous)
    w = _add(batch, state, proposed.id, accepted, obs, rule, previous if accepted else label)
    return out(rule, accepted, proposed.name, previous, w)


def _proposed(batch: _Batch, value: str | None) -> Status | None:
    name = batch.vocabulary.to_status(value)
    if name is None:
        return None
    try:
        return batch.catalogue.resolve(name)
    except UnknownStatusError:
        return None  # the map names a status this deployment lacks: as unmapped


def _add(
    batch: _Batch,
    state: ContactState,
    proposed: int,
    accepted: bool,
    obs: StatusObservation,
    rule: str,
    losing: str,
) -> int:
    batch.writes.append(
        _Write(
            state.id,
            state.status,
            proposed,
            accepted,
            obs.system,
            obs.actor,
            rule,
            losing,
            obs.value,
            push_back=not accepted,
        )
    )
    if accepted:
        # The system's own time orders later changes (the recency rule); never later
        # than now, so a system whose clock runs ahead cannot lock a contact for long.
        state.status = proposed
        state.status_changed_at = min(obs.changed_at, batch.now)
        if obs.by_person:
            batch.person.add(state.id)
    return len(batch.writes) - 1


def _write(conn: Connection, batch: _Batch) -> list[int]:
    """Write the batch's decisions; the history ids, in the order of `batch.writes`."""
    now, writes = batch.now, batch.writes
    ids = reserve_ids(conn, status_history, len(writes))
    insert_values(
        conn,
        status_history,
        (
            "id",
            "contact_id",
            "from_status",
            "to_status",
            "origin",
            "actor",
            "at",
            "rule",
            "accepted",
            "losing",
            "value",
        ),
        [
            (i, w.contact_id, w.from_status, w.to_status, w.origin, w.actor, now, *w.tail)
            for i, w in zip(ids, writes, strict=True)
        ],
    )
    moved = sorted({w.contact_id for w in writes if w.accepted})
    if moved:
        conn.execute(
            update(contacts)
            .where(contacts.c.id == bindparam("_id"))
            .values(
                status=bindparam("status"),
                status_changed_at=bindparam("changed_at"),
                updated_at=now,
                person_changed_at=bindparam("person_at"),
            ),
            [_moved_row(batch, c) for c in moved],
        )
    if batch.seen:
        conn.execute(
            update(system_links)
            .where(system_links.c.id == bindparam("_id"))
            .values(
                last_seen_value=bindparam("seen_value"),
                last_seen_at=bindparam("seen_at"),
                last_written_value=bindparam("written"),
            ),
            [
                {
                    "_id": link.id,
                    "seen_value": link.last_seen_value,
                    "seen_at": link.last_seen_at,
                    "written": link.last_written_value,
                }
                for link in batch.seen.values()
            ],
        )
    _emit(conn, batch, ids)
    return ids


def _moved_row(batch: _Batch, contact_id: int) -> dict[str, Any]:
    state = batch.states[contact_id]
    person_at = batch.now if contact_id in batch.person else state.person_changed_at
    return {
        "_id": contact_id,
        "status": state.status,
        "changed_at": state.status_changed_at,
        "person_at": person_at,
    }


def _emit(conn: Connection, batch: _Batch, ids: Sequence[int]) -> None:
    """The accepted changes to the change feed, and the refused values' push-backs, in
    decision order (one fan-out per run of changes: contacts and links read once)."""
    if not changes.listening(conn):
        return
    pending: list[changes.Event] = []
    for history_id, w in zip(ids, batch.writes, strict=True):
        if w.accepted:
            pending.append(
                changes.StatusChanged(
                    w.contact_id,
                    history_id,
                    w.from_status,
                    w.to_status,
                    w.origin,
                    w.actor,
                    w.rule,
                    batch.now,
                )
            )
        if w.push_back:
            # The batch's earlier changes are enqueued first: the outbox keeps order.
            changes.emit(conn, pending, batch.now)
            pending = []
            fanout.push_back(conn, w.origin, w.contact_id, history_id, batch.now)
    changes.emit(conn, pending, batch.now)
