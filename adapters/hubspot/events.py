"""HubSpot webhook deliveries read as status changes (§G).

A delivery is a JSON array of at most 100 events `{eventId, occurredAt (ms), objectId,
subscriptionType, propertyName, propertyValue, changeSource, sourceId, ...}`. HubSpot
retries, duplicates and reorders deliveries and does not promise unique `eventId`s, so
nothing here trusts arrival order or ids: of several events for one contact, the one
with the newest `occurredAt` is the contact's value; older ones (in this batch or, via
the engine's newest-wins rule and `last_seen_at`, in an earlier one) lose.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SUBSCRIPTIONS = frozenset({"contact.propertyChange", "object.propertyChange"})
# changeSource values that mean a person changed it in HubSpot's own UI or apps
# [GUESS: HubSpot's list is longer and undocumented; anything else counts as
# automation, which the engine never lets lower a status's rank].
BY_PERSON = frozenset({"CRM_UI", "CRM_UI_BULK_ACTION", "MOBILE_IOS", "MOBILE_ANDROID", "SALES"})


@dataclass(frozen=True, slots=True)
class PropertyChange:
    """One `contact.propertyChange` event."""

    contact_id: str
    name: str
    value: str | None
    """None: the property was cleared (HubSpot sends an empty string)."""
    occurred_ms: int
    source: str
    actor: str | None
    """Who, as HubSpot names them (`userId:123`, an app id); never PII."""

    @property
    def occurred_at(self) -> datetime:
        return datetime.fromtimestamp(self.occurred_ms / 1000, tz=UTC)

    @property
    def by_person(self) -> bool:
        return self.source in BY_PERSON


def parse(body: str) -> list[PropertyChange]:
    """The property changes of a delivery; ValueError when it is not one (a signed body
    can still be anything: every shape is checked, nothing is assumed)."""
    try:
        payload = json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(payload, list):
        raise ValueError("a HubSpot delivery is a JSON array of events")
    found: list[PropertyChange] = []
    for event in payload:
        if not isinstance(event, dict):
            raise ValueError("an event is not an object")
        if event.get("subscriptionType") not in SUBSCRIPTIONS:
            continue  # another subscription of the same app: not ours to read
        if event.get("subscriptionType") == "object.propertyChange" and (
            event.get("objectTypeId") != "0-1"
        ):
            continue  # a company or deal: only contacts (0-1) are synced
        object_id, occurred = event.get("objectId"), event.get("occurredAt")
        if isinstance(object_id, bool) or not str(object_id).isdigit():
            raise ValueError("objectId is not a HubSpot id")
        if isinstance(occurred, bool) or not isinstance(occurred, int):
            raise ValueError("occurredAt is not a timestamp in ms")
        name = event.get("propertyName")
        if not isinstance(name, str):
            raise ValueError("propertyName is missing")
        value = event.get("propertyValue")
        if value is not None and not isinstance(value, str):
            value = str(value)
        source = str(event.get("changeSource") or "UNKNOWN")
        actor = event.get("sourceId")
        found.append(
            PropertyChange(
                contact_id=str(object_id),
                name=name,
                value=value or None,
                occurred_ms=occurred,
                source=source,
                actor=str(actor) if actor not in (None, "") else None,
            )
        )
    return found


def latest(changes: Iterable[PropertyChange], name: str) -> list[PropertyChange]:
    """Per contact, the newest change of property `name` (by `occurredAt`; a tie keeps
    the one seen last, HubSpot's order for one timestamp being all there is), in the
    order of their times: duplicates collapse and a reordered batch settles."""
    newest: dict[str, PropertyChange] = {}
    for change in changes:
        if change.name != name:
            continue
        held = newest.get(change.contact_id)
        if held is None or change.occurred_ms >= held.occurred_ms:
            newest[change.contact_id] = change
    return sorted(newest.values(), key=lambda c: (c.occurred_ms, c.contact_id))


def encode(events: list[dict[str, Any]]) -> bytes:
    """A delivery body as HubSpot sends it (for tests and benchmarks)."""
    return json.dumps(events, separators=(",", ":")).encode()
