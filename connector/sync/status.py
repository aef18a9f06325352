"""The two-way status engine: values seen in connected systems, and a person's
set-status, decided by one set of rules (sync/rules.py) and recorded with their reason.

`observe(conn, observations, vocabulary, now)` runs in the caller's transaction (an
adapter's pull job or webhook drain, which commits it with its cursor). Per observation:
1. find the contact: system_links, else a lead (source=system, source_id=external id),
   else the identity keys (email, phone); none: rejected, "unknown-contact" (the adapter
   ingests the person as a lead first, then observes);
2. map the value (unmapped: a field issue naming it, "unmapped"; cleared: "cleared");
3. drop what is not news: the value we last wrote there ("echo"), a redelivery
   ("duplicate"), a value older than one already seen or than our own later write
   there ("stale"), the status the contact already has ("unchanged"). An echo of a
   write the store has since moved past is refused and answered with the store's
   status (a stale write that landed after the system's own newer change);
4. judge the change (rules.judge) and record it in status_history, accepted or not,
   with origin (the system), actor, rule, the losing value and the system's own word;
   an accepted change moves the contact and fans out through the change feed; a rejected
   one writes the store's status back to that system so it does not keep showing a
   status the store refused.
Only decisions about a different status reach the history (the rest write none), so
the history holds every change and every refusal, not every poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from connector import normalize
from connector.identity import ContactState
from connector.model import identity_key
from connector.ports import StatusObservation
from connector.statuses import Catalogue, Status
from connector.store.contacts import live_id
from connector.store.engine import Store
from connector.store.ingest import StaleRead, lock_contacts
from connector.store.tables import (
    contacts,
    identities,
    leads,
    quarantine,
    status_history,
    statuses,
)
from connector.sync import changes, fanout
from connector.sync.rules import PERSON, Rules, judge
from connector.sync.vocabulary import Vocabulary


@dataclass(frozen=True, slots=True)
class Decision:
    """What the engine made of one observation (or one set-status)."""

    origin: str
    """The system the value came from, or "person" (leadsync's CLI)."""
    external_id: str | None
    contact_id: int | None
    value: str | None
    """The system's own word as observed (the status name for a person)."""
    status: str | None
    """The leadsync status it means; None when unmapped or cleared."""
    previous: str | None
    """The contact's status before the decision."""
    accepted: bool
    rule: str
    history_id: int | None = None
    """The status_history row recording it (None: not news, nothing recorded)."""

    @property
    def changed(self) -> bool:
        """The contact's status changed."""
        return self.accepted and self.history_id is not None


def catalogue_of(conn: Connection) -> Catalogue:
    """The catalogue recorded in the store (open_store applies the deployment's)."""
    found = [Status(r.id, r.name, r.rank, r.terminal) for r in conn.execute(select(statuses))]
    return Catalogue(found) if found else Catalogue.default()


def _rules(conn: Connection, catalogue: Catalogue) -> Rules:
    return Rules.of(catalogue, fanout.installed(conn).sync)


def _by_identity(conn: Connection, identity: Any) -> int | None:
    keys: list[str] = []
    for kind, read in (("email", normalize.email), ("phone", normalize.phone)):
        value = identity.get(kind)
        if value:
            try:
                keys.append(identity_key(kind, read(str(value))))
            except normalize.NormalizationError:
                continue
    for key in keys:
        row = conn.execute(
            select(contacts.c.id, contacts.c.merged_into)
            .join(identities, identities.c.contact_id == contacts.c.id)
            .where(identities.c.key == key)
        ).first()
        if row is not None:
            return int(row.merged_into or row.id)
    return None


def _by_lead(conn: Connection, system: str, external_id: str) -> int | None:
    row = conn.execute(
        select(contacts.c.id, contacts.c.merged_into)
        .join(leads, leads.c.contact_id == contacts.c.id)
        .where(leads.c.source == system, leads.c.source_id == external_id)
    ).first()
    return int(row.merged_into or row.id) if row is not None else None


def _locked(conn: Connection, contact_id: int) -> ContactState:
    """The live contact, locked (PostgreSQL: FOR UPDATE) and read after the lock, so a
    merge that committed meanwhile is followed, never written past."""
    for _ in range(20):
        states, _tombstones = lock_contacts(conn, [contact_id])
        if states:
            return states[0]
        contact_id = int(
            conn.execute(
                select(contacts.c.merged_into).where(contacts.c.id == contact_id)
            ).scalar_one()
        )
    raise StaleRead(f"contact {contact_id} kept being merged away; try again")


def _file_unmapped(
    conn: Connection, obs: StatusObservation, contact_id: int | None, now: datetime
) -> None:
    """An external value the vocabulary does not map: a field issue naming it (once)."""
    from connector.store.issues import fingerprint

    fp = fingerprint(obs.system, obs.external_id, "status", obs.value)
    exists = conn.execute(
        select(quarantine.c.id).where(
            quarantine.c.source == obs.system, quarantine.c.fingerprint == fp
        )
    ).first()
    if exists is not None:
        return
    conn.execute(
        insert(quarantine).values(
            source=obs.system,
            ref=f"{obs.system} record {obs.external_id}",
            field="status",
            reason=f"status value {obs.value!r} is not mapped: add it under "
            f"{obs.system}.statuses in the config",
            raw={"field": "status", "value": obs.value},
            context={"source_id": obs.external_id},
            fingerprint=fp,
            attempts=1,
            created_at=now,
            kind="field",
            contact_id=contact_id,
            source_id=obs.external_id,
        )
    )


def record(
    conn: Connection,
    state: ContactState,
    proposed: int,
    accepted: bool,
    origin: str,
    actor: str | None,
    rule: str,
    losing: str | None,
    value: str | None,
    changed_at: datetime,
    now: datetime,
    by_person: bool,
    pending: list[changes.Event] | None = None,
) -> int:
    """Write one decision about a different status: a history row and, if accepted,
    the contact's move and its change-feed event. Returns the history id."""
    history_id = int(
        conn.execute(
            insert(status_history)
            .values(
                contact_id=state.id,
                from_status=state.status,
                to_status=proposed,
                origin=origin,
                actor=actor,
                at=now,
                rule=rule,
                accepted=accepted,
                losing=losing,
                value=value,
            )
            .returning(status_history.c.id)
        ).scalar_one()
    )
    if not accepted:
        return history_id
    # The system's own time orders later changes (the recency rule); never later than
    # now, so a system whose clock runs ahead cannot lock a contact for the difference.
    values: dict[str, Any] = {
        "status": proposed,
        "status_changed_at": min(changed_at, now),
        "updated_at": now,
    }
    if by_person:
        values["person_changed_at"] = now
    conn.execute(update(contacts).where(contacts.c.id == state.id).values(**values))
    if changes.listening(conn):
        event = changes.StatusChanged(
            state.id, history_id, state.status, proposed, origin, actor, rule, now
        )
        if pending is None:
            changes.emit(conn, [event], now)
        else:
            pending.append(event)  # the caller emits a batch's events at once
    state.status = proposed
    state.status_changed_at = values["status_changed_at"]
    return history_id


def observe(
    conn: Connection,
    observations: Sequence[StatusObservation],
    vocabulary: Vocabulary,
    now: datetime,
) -> list[Decision]:
    """Decide what each observed value means for its contact, in the caller's
    transaction (see the module's docstring); one Decision per observation, in order.

    Observations are taken oldest first (by the system's timestamp) whatever order they
    came in, so a batch of reordered webhooks decides as if they had come in order. A
    batch costs a few statements beside one per decision (sync/observing.py)."""
    from connector.sync.observing import observe_batch

    return observe_batch(conn, observations, vocabulary, now)


def set_by_person(
    store: Store,
    contact_id: int,
    status: str | int,
    actor: str | None,
    now: datetime | None = None,
) -> Decision:
    """A person moves a contact through leadsync (the CLI's set-status): the same rules
    (a person may leave a terminal status; an authoritative system's statuses stay its
    own) and the same fan-out to every connected system."""
    target = store.catalogue.resolve(status)
    now = now or datetime.now(UTC)
    with store.engine.begin() as conn:
        state = _locked(conn, live_id(conn, contact_id))
        rules = _rules(conn, store.catalogue)
        previous = store.catalogue.name(state.status)
        accepted, rule = judge(
            rules, state.status, state.status_changed_at, target.id, PERSON, True, now
        )
        history_id = None
        if rule != "unchanged":
            losing = previous if accepted else target.name
            history_id = record(
                conn,
                state,
                target.id,
                accepted,
                PERSON,
                actor,
                rule,
                losing,
                target.name,
                now,
                now,
                True,
            )
        return Decision(
            PERSON,
            None,
            state.id,
            target.name,
            target.name,
            previous,
            accepted,
            rule,
            history_id,
        )
