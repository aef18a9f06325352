"""An ingest batch's plan as change-feed events (built only when someone listens)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from connector.identity import Plan
from connector.sync.changes import (
    AttributesChanged,
    ContactCreated,
    Event,
    LeadAdded,
    Merged,
    StatusChanged,
)


def lead_summary(source: str, source_id: str, context: dict[str, Any]) -> dict[str, Any]:
    """What a connected system is told about the lead behind a contact: its source and
    the scalar names and ids of its context (form, campaign, ad); nothing nested."""
    out: dict[str, Any] = {"source": source, "source_id": source_id}
    out.update(
        (k, v) for k, v in context.items() if isinstance(v, str | int | float | bool) and k != "ref"
    )
    return out


def from_plan(
    plan: Plan,
    final: Callable[[int], int],
    history: Sequence[tuple[Any, ...]],
    history_ids: Sequence[int],
    merge_ids: Sequence[int],
) -> list[Event]:
    """The events of one written plan: `final` maps the plan's ids to stored ones,
    `history` are the rows written (contact_id, from, to, origin, actor, at) with their
    `history_ids`, `merge_ids` the merge log ids of `plan.merges` in order."""
    events: list[Event] = []
    leads_of: dict[int, Any] = {}
    for write in plan.leads.values():
        leads_of.setdefault(final(write.contact_id), write.record)
    origin_of = {c: f"source:{r.source}" for c, r in leads_of.items()}
    for step, merge_id in zip(plan.merges, merge_ids, strict=True):
        survivor = final(step.survivor)
        origin = origin_of.get(survivor, "ingest")
        events.append(Merged(survivor, step.absorbed, merge_id, origin))
    for state in plan.contacts.values():
        contact_id = final(state.id)
        record = leads_of.get(contact_id)
        origin = origin_of.get(contact_id, "ingest")
        if state.new:
            lead = lead_summary(record.source, record.source_id, record.context) if record else {}
            events.append(ContactCreated(contact_id, origin, lead))
        elif state.dirty:
            events.append(AttributesChanged(contact_id, origin))
    # Every other new lead of the batch: one that joined a stored contact, or a second
    # one of a contact the batch created (ContactCreated names only the first).
    created = {final(s.id) for s in plan.contacts.values() if s.new}
    for write in plan.leads.values():
        contact_id = final(write.contact_id)
        record = write.record
        if write.exists or (contact_id in created and leads_of.get(contact_id) is record):
            continue
        summary = lead_summary(record.source, record.source_id, record.context)
        events.append(LeadAdded(contact_id, f"source:{record.source}", summary))
    for history_id, (contact_id, from_status, to_status, origin, actor, at) in zip(
        history_ids, history, strict=True
    ):
        events.append(
            StatusChanged(contact_id, history_id, from_status, to_status, origin, actor, None, at)
        )
    return events
