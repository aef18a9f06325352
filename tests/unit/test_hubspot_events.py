"""HubSpot webhook bodies read as property changes: shapes checked, duplicates and
reordering settled by occurredAt."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.hubspot.events import encode, latest, parse


def event(object_id: int, value: str, at: int, **extra: Any) -> dict[str, Any]:
    return {
        "eventId": 1,  # not unique at HubSpot: nothing may rely on it
        "subscriptionId": 7,
        "portalId": 62515,
        "appId": 4242,
        "occurredAt": at,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
        "objectId": object_id,
        "propertyName": "hs_lead_status",
        "propertyValue": value,
        "changeSource": "CRM_UI",
        "sourceId": "userId:99",
        **extra,
    }


def test_a_delivery_becomes_property_changes_with_who_and_when() -> None:
    [change] = parse(encode([event(1001, "CONNECTED", 1_764_000_000_123)]).decode())
    assert change.contact_id == "1001" and change.value == "CONNECTED"
    assert change.occurred_at.isoformat() == "2025-11-24T16:00:00.123000+00:00"
    assert change.by_person and change.actor == "userId:99"
    [auto] = parse(json.dumps([event(1, "NEW", 5, changeSource="INTEGRATION")]))
    assert not auto.by_person
    [cleared] = parse(json.dumps([event(1, "", 5)]))
    assert cleared.value is None


def test_other_subscriptions_and_objects_are_skipped() -> None:
    other = event(1, "x", 5, subscriptionType="deal.propertyChange")
    company = event(2, "x", 5, subscriptionType="object.propertyChange", objectTypeId="0-2")
    contact = event(3, "x", 5, subscriptionType="object.propertyChange", objectTypeId="0-1")
    assert [c.contact_id for c in parse(json.dumps([other, company, contact]))] == ["3"]


@pytest.mark.parametrize(
    "body",
    [
        "{}",
        "[1]",
        json.dumps([event(1, "x", 5, objectId="../1")]),
        json.dumps([event(1, "x", 5, occurredAt="yesterday")]),
        json.dumps([event(1, "x", 5, occurredAt=True)]),
        json.dumps([{**event(1, "x", 5), "propertyName": None}]),
        "[" * 100_000,
    ],
)
def test_malformed_deliveries_are_value_errors(body: str) -> None:
    with pytest.raises(ValueError):
        parse(body)


def test_newest_by_occurred_at_wins_whatever_the_order() -> None:
    events = [
        event(1, "CONNECTED", 300),
        event(1, "OPEN", 100),
        event(2, "NEW", 200),
        event(1, "IN_PROGRESS", 200),
        event(1, "CONNECTED", 300),  # a duplicate
        event(2, "NEW", 200, propertyName="firstname"),  # another property
    ]
    changes = parse(json.dumps(events[::-1]))
    settled = latest(changes, "hs_lead_status")
    assert [(c.contact_id, c.value, c.occurred_ms) for c in settled] == [
        ("2", "NEW", 200),
        ("1", "CONNECTED", 300),
    ]
