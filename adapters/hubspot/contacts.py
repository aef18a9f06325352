"""A HubSpot contact as a lead of source "hubspot" (source_id = the HubSpot id).

The person comes in through the normal pipeline like any source's lead (identity keys,
matching, merges, field issues), then the status property is observed by the two-way
engine, which decides with its conflict rules (adapters/hubspot/pull.py, drain.py).

A lead of a contact the store does not hold yet also carries the status HubSpot shows
(`status_of`; source.py and drain.py): a contact the store creates from HubSpot starts
in HubSpot's status, as a contact from any source starts in
the status its lead names. Without it the contact would start in the default status,
dated now, and the engine's recency rule would then refuse HubSpot's own value as
older than that default (see the report: the engine should not date a default status).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from adapters.hubspot.client import STANDARD_PROPERTIES, HubSpotContact, to_ms
from connector.sdk import Catalogue, Lead, UnknownStatusError, Vocabulary

# HubSpot property -> our standard attribute (the reverse of what upsert writes).
FROM_PROPERTIES = {prop: attr for attr, prop in STANDARD_PROPERTIES.items()}
READ_PROPERTIES = tuple(sorted({*FROM_PROPERTIES, "createdate"}))
"""What the pull and the drain ask HubSpot for, besides the status property."""


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def status_of(value: str | None, vocabulary: Vocabulary, catalogue: Catalogue) -> int | None:
    """The status id HubSpot's `value` means (None: unmapped or cleared: the engine's
    observation files the field issue)."""
    name = vocabulary.to_status(value)
    if name is None:
        return None
    try:
        return catalogue.resolve(name).id
    except UnknownStatusError:
        return None


def to_lead(contact: HubSpotContact, status: int | None = None, source: str = "hubspot") -> Lead:
    """The contact's standard properties as a lead; empty ones are left out (HubSpot
    returns asked-for empty properties as null)."""
    props = contact.properties
    fields = {
        attr: str(value)
        for prop, attr in FROM_PROPERTIES.items()
        if (value := props.get(prop)) not in (None, "")
    }
    created = props.get("createdate")
    lead = Lead(
        source=source,
        ref=f"HubSpot contact {contact.id}",
        fields=fields,
        source_id=contact.id,
        status=status,
        occurred_at=ms_to_datetime(to_ms(created)) if created else None,
        raw={k: v for k, v in props.items() if v is not None},
        context={"hubspot_id": contact.id},
    )
    return lead


def identity(props: Mapping[str, str | None]) -> dict[str, str]:
    """Email, phone and names, for the engine to find a contact with no link yet."""
    return {
        attr: str(value)
        for prop, attr in FROM_PROPERTIES.items()
        if attr in ("email", "phone", "first_name", "last_name")
        and (value := props.get(prop)) not in (None, "")
    }
