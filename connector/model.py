"""The only schema the core knows: leads in, contacts and their history out.

A `Lead` is one observation of a person by one source (a CSV row, a lead-form
submission, a WhatsApp conversation). The pipeline normalises it into a `Resolved`
record, matches it to a `Contact` by identity keys and folds it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

# Standard contact attributes, in display order. Anything else is a custom attribute.
STANDARD_FIELDS: tuple[str, ...] = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "company",
    "city",
    "state",
    "zip",
    "country",
    "date_of_birth",
    "gender",
    "owner",
    "external_id",
)

# Fields whose normalised value identifies a person across sources.
IDENTITY_FIELDS: tuple[str, ...] = ("email", "phone", "external_id")


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a record or one of its values cannot be taken as it is.

    `reason` is a category a person can act on (`not a number`), never the value itself:
    reasons reach summaries and logs, the value (`value`) only the quarantine row.
    `kind` says what is lost: `record` (nothing identifies the person, or the record
    cannot be read: the whole record is quarantined) or `field` (only this value is left
    out; the person is still ingested and the value is kept as a field issue).
    """

    field: str
    reason: str
    value: str | None = None
    kind: Literal["record", "field"] = "record"

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


@dataclass(slots=True)
class Lead:
    """One observation of a person by a source, before normalisation.

    `fields` holds standard attributes as the source gave them (strings); `custom`
    holds custom attributes already typed by the mapping. `ref` is what a person uses
    to find the record again ("row 12", "lead 1234…"). `problems` are what the
    mapping already found wrong (e.g. a status word it has no translation for).
    """

    source: str
    ref: str
    fields: dict[str, str]
    custom: dict[str, Any] = field(default_factory=dict)
    source_id: str | None = None
    status: int | None = None
    region: str | None = None
    occurred_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


@dataclass(slots=True)
class Resolved:
    """A lead after normalisation: canonical values, identity keys, content hash."""

    source: str
    source_id: str
    ref: str
    attrs: dict[str, str]
    custom: dict[str, Any]
    status: int | None
    keys: list[str]
    payload_hash: str
    raw: dict[str, Any]
    context: dict[str, Any]
    occurred_at: datetime | None
    problems: list[Problem]


@dataclass(slots=True)
class Contact:
    """A person in the canonical store."""

    id: int
    status: int
    attrs: dict[str, str | None]
    custom: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    status_changed_at: datetime | None = None
    merged_into: int | None = None


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A contact entering a status, with who or what moved it."""

    contact_id: int
    to_status: int
    from_status: int | None
    origin: str
    at: datetime
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class Interaction:
    """One entry on a contact's activity timeline."""

    contact_id: int
    kind: str
    occurred_at: datetime
    source: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def identity_key(kind: str, value: str) -> str:
    """The store's key for an identity: one string, so lookups are a single IN list."""
    return f"{kind}:{value}"
