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
from connector.statuses import Catalogue, Status, UnknownStatusError
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
    system_links,
)
from connector.sync import changes, fanout, links
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
        changes.emit(conn, [event], now)
    state.status = proposed
    state.status_changed_at = values["status_changed_at"]
    return history_id


def _is_echo(link: links.Link | None, value: str | None, vocabulary: Vocabulary) -> bool:
    if link is None or link.last_written_value is None or value is None:
        return False
    return value == link.last_written_value or (
        vocabulary.to_status(value) is not None
        and vocabulary.to_status(value) == vocabulary.to_status(link.last_written_value)
        and value.casefold() == link.last_written_value.casefold()
    )


def _find(
    conn: Connection, obs: StatusObservation, link: links.Link | None, now: datetime
) -> int | None:
    if link is not None:
        return link.contact_id
    found = _by_lead(conn, obs.system, obs.external_id)
    if found is None and obs.identity:
        found = _by_identity(conn, obs.identity)
    if found is not None:
        links.link(conn, obs.system, obs.external_id, found, now)
    return found


def observe(
    conn: Connection,
    observations: Sequence[StatusObservation],
    vocabulary: Vocabulary,
    now: datetime,
) -> list[Decision]:
    """Decide what each observed value means for its contact, in the caller's
    transaction (see the module's docstring); one Decision per observation, in order.

    Observations are taken oldest first (by the system's timestamp) whatever order they
    came in, so a batch of reordered webhooks decides as if they had come in order."""
    catalogue = catalogue_of(conn)
    rules = _rules(conn, catalogue)
    decisions: list[Decision | None] = [None] * len(observations)
    order = sorted(range(len(observations)), key=lambda i: observations[i].changed_at)
    by_system: dict[str, dict[str, links.Link]] = {}
    for system in {o.system for o in observations}:
        by_system[system] = links.many(
            conn, system, [o.external_id for o in observations if o.system == system]
        )
    for i in order:
        obs = observations[i]
        known = by_system[obs.system]
        decisions[i] = _observe_one(conn, obs, known, vocabulary, catalogue, rules, now)
    return [d for d in decisions if d is not None]


def _observe_one(
    conn: Connection,
    obs: StatusObservation,
    known: dict[str, links.Link],
    vocabulary: Vocabulary,
    catalogue: Catalogue,
    rules: Rules,
    now: datetime,
) -> Decision:
    link = known.get(obs.external_id)
    contact_id = _find(conn, obs, link, now)

    def decided(
        rule: str,
        accepted: bool = False,
        status: str | None = None,
        previous: str | None = None,
        history_id: int | None = None,
    ) -> Decision:
        return Decision(
            obs.system,
            obs.external_id,
            contact_id,
            obs.value,
            status,
            previous,
            accepted,
            rule,
            history_id,
        )

    if contact_id is None:
        return decided("unknown-contact")
    if link is None:
        link = links.many(conn, obs.system, [obs.external_id])[obs.external_id]
    state = _locked(conn, contact_id)
    contact_id = state.id
    previous = catalogue.name(state.status)
    name = vocabulary.to_status(obs.value)
    proposed = None
    if name is not None:
        try:
            proposed = catalogue.resolve(name)
        except UnknownStatusError:
            proposed = None

    def seen(clear_written: bool) -> None:
        # What the system shows now; a value that is not our write means the system no
        # longer shows what we wrote, so that write can no longer come back as an echo.
        values: dict[str, Any] = {"last_seen_value": obs.value, "last_seen_at": obs.changed_at}
        if clear_written:
            values["last_written_value"] = None
        conn.execute(update(system_links).where(system_links.c.id == link.id).values(**values))
        known[obs.external_id] = links.Link(
            link.id,
            link.system,
            link.external_id,
            contact_id,
            obs.value,
            obs.changed_at,
            None if clear_written else link.last_written_value,
            link.last_written_at,
        )

    if link.last_seen_at is not None and obs.changed_at <= link.last_seen_at:
        same = obs.changed_at == link.last_seen_at and obs.value == link.last_seen_value
        return decided("duplicate" if same else "stale", previous=previous)
    if (
        link.last_written_at is not None
        and obs.changed_at <= link.last_written_at
        and obs.value != link.last_written_value
    ):
        # Shown before (or at the moment of) our later write there, which replaced it:
        # an earlier write of ours coming back, or an edit our write overwrote.
        return decided("stale", previous=previous)
    if obs.value is None:
        seen(True)
        return decided("cleared", previous=previous)
    if proposed is None:
        _file_unmapped(conn, obs, contact_id, now)
        seen(True)
        return decided("unmapped", previous=previous)
    if _is_echo(link, obs.value, vocabulary):
        seen(False)
        if proposed.id == state.status:
            return decided("echo", status=proposed.name, previous=previous)
        # Our own write, but the store has moved on since (a change the system itself
        # made meanwhile was accepted, and this older write landed after it): refused,
        # and the store's status written back so the system does not keep the old one.
        losing = f"{obs.value} ({proposed.name})"
        history_id = record(
            conn, state, proposed.id, False, obs.system, obs.actor, "echo", losing, obs.value,
            obs.changed_at, now, obs.by_person,
        )  # fmt: skip
        fanout.push_back(conn, obs.system, contact_id, history_id, now)
        return decided("echo", False, proposed.name, previous, history_id)
    seen(True)
    accepted, rule = judge(
        rules,
        state.status,
        state.status_changed_at,
        proposed.id,
        obs.system,
        obs.by_person,
        obs.changed_at,
    )
    if rule == "unchanged":
        return decided(rule, True, proposed.name, previous)
    losing = previous if accepted else f"{obs.value} ({proposed.name})"
    history_id = record(
        conn,
        state,
        proposed.id,
        accepted,
        obs.system,
        obs.actor,
        rule,
        losing,
        obs.value,
        obs.changed_at,
        now,
        obs.by_person,
    )
    if not accepted:
        fanout.push_back(conn, obs.system, contact_id, history_id, now)
    return decided(rule, accepted, proposed.name, previous, history_id)


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
