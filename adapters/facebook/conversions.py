"""Conversion Leads, writing: every CRM stage of a contact that came from a Meta lead
form becomes an outbox row, in the transaction of the change (a change-feed subscriber).

What is written (destination "meta-conversions", kind "event", one row per lead and
stage occurrence, ordered per contact by the outbox):
- a contact created from a Meta lead: the initial lead stage, at the lead's creation
  time (key "capi:lead:<lead id>"); if it was created in a status that is mapped to
  another stage, that stage after it;
- a further Meta lead joining a contact (a known person filling in another form): that
  lead's initial stage the same way (its later stages come with the contact's later
  status changes, as for every Meta lead of the contact; the stage the contact is in
  already is not sent for it, as it changed before the lead existed);
- every accepted status change of a contact holding Meta leads, to a status in the
  `stages` map: that stage for each of its Meta leads, at the change's time (key
  "capi:<history id>:<lead id>": a history row is one occurrence, so re-entering a
  stage really is a new event, while a replayed transaction is the same row).

A Meta lead is a lead whose source is the section's `source`; its `source_id` is the
Meta lead id. Test leads (custom `is_test`) send nothing. Email and phone leave only as
SHA-256 of the stored normalised values (the phone without its "+", as Meta wants).
The delivery side is adapters/facebook/conversions_delivery.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from adapters.facebook.config import FacebookConfig
from adapters.facebook.conversions_config import DESTINATION, ConversionsConfig
from connector.sdk import catalogue_of, changes, normalize, outbox, reads

SUBSCRIBER = "facebook-conversions"
KIND = "event"


def subscribers(config: Any) -> list[tuple[str, changes.Subscriber]]:
    """The change-feed subscriber this configuration needs (none without a
    `facebook.conversions` section)."""
    fb = getattr(config, "facebook", None)
    if not isinstance(fb, FacebookConfig) or fb.conversions is None:
        return []
    source, conversions = fb.source, fb.conversions

    def write(conn: Connection, events: Sequence[changes.Event], now: datetime) -> None:
        write_events(conn, source, conversions, events, now)

    return [(SUBSCRIBER, write)]


def _unix(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def _hashed(contact: Any) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    if contact.email:
        found["em"] = [normalize.sha256(contact.email)]
    if contact.phone:
        found["ph"] = [normalize.sha256(contact.phone.lstrip("+"))]
    return found


def write_events(
    conn: Connection,
    source: str,
    config: ConversionsConfig,
    events: Sequence[changes.Event],
    now: datetime,
) -> int:
    """Enqueue the Conversion Leads events of one batch of changes; returns how many
    were offered (an undelivered row with the same key stays the one row)."""
    # A contact created from a Meta lead, and a further Meta lead of a contact (a known
    # person filling in another form): each such lead's initial stage.
    created = [
        e
        for e in events
        if isinstance(e, changes.ContactCreated | changes.LeadAdded)
        and e.lead.get("source") == source
    ]
    moved = [e for e in events if isinstance(e, changes.StatusChanged)]
    if not created and not moved:
        return 0
    names = catalogue_of(conn)
    stage_of: dict[int, str | None] = {}

    def stage(status: int) -> str | None:
        if status not in stage_of:
            stage_of[status] = config.stage_of(names.name(status))
        return stage_of[status]

    moved = [e for e in moved if stage(e.to_status) is not None]
    wanted = sorted({e.contact_id for e in created} | {e.contact_id for e in moved})
    if not wanted:
        return 0
    people = reads.match_fields(conn, wanted)
    held = reads.leads_of(conn, source, wanted)

    initial: list[tuple[str, int, dict[str, Any]]] = []
    later: list[tuple[str, int, dict[str, Any]]] = []

    def put(into: list[Any], contact_id: int, lead: Any, name: str, at: int, key: str) -> None:
        payload = {
            "lead_id": str(lead.source_id),
            "event_name": name,
            "event_time": at,
            "lead_created": _unix(lead.occurred_at or lead.received_at),
            **_hashed(people[contact_id]),
        }
        into.append((key, contact_id, payload))

    def sends(contact_id: int) -> bool:
        contact = people.get(contact_id)
        return contact is not None and (contact.custom or {}).get("is_test") is not True

    # Creations first: the initial stage is enqueued (so ordered) before later stages.
    for e in created:
        if not sends(e.contact_id):
            continue
        for lead in held.get(e.contact_id, []):
            if str(lead.source_id) == str(e.lead.get("source_id")):
                when = _unix(lead.occurred_at or lead.received_at) or _unix(now) or 0
                key = f"capi:lead:{lead.source_id}"
                put(initial, e.contact_id, lead, config.initial_stage, when, key)
    for m in moved:
        name = stage(m.to_status)
        if name is None or not sends(m.contact_id):
            continue
        if m.from_status is None and name == config.initial_stage:
            continue  # created in the status the initial stage already stands for
        at = _unix(m.at) or 0
        for lead in held.get(m.contact_id, []):
            put(later, m.contact_id, lead, name, at, f"capi:{m.history_id}:{lead.source_id}")
    # Two statements: every initial stage gets a lower id than any later stage, so the
    # outbox's per-contact order sends it first.
    outbox.enqueue_many(conn, [(DESTINATION, KIND, k, c, p) for k, c, p in initial], now)
    outbox.enqueue_many(conn, [(DESTINATION, KIND, k, c, p) for k, c, p in later], now)
    return len(initial) + len(later)
