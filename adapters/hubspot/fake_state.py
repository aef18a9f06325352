"""The HubSpot emulator's data: one portal's contacts, their properties, and search.

Written from shared/reference/external-apis.md §G, not from our client. Where the
reference is silent the comment says GUESS.
"""

from __future__ import annotations

import functools
import operator
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Property types decide how filters compare values.
STRING, NUMBER, DATETIME, ENUM = "string", "number", "datetime", "enumeration"
LEAD_STATUSES = (
    "NEW",
    "OPEN",
    "IN_PROGRESS",
    "OPEN_DEAL",
    "UNQUALIFIED",
    "ATTEMPTED_TO_CONTACT",
    "CONNECTED",
    "BAD_TIMING",
)
LIFECYCLE_STAGES = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)
DEFAULT_PROPERTIES = (  # returned by search when `properties` is absent (§G)
    "createdate",
    "email",
    "firstname",
    "hs_object_id",
    "lastmodifieddate",
    "lastname",
)
READ_ONLY = frozenset({"createdate", "lastmodifieddate", "hs_object_id"})
OPERATORS = frozenset(
    {
        "EQ",
        "NEQ",
        "LT",
        "LTE",
        "GT",
        "GTE",
        "BETWEEN",
        "IN",
        "NOT_IN",
        "HAS_PROPERTY",
        "NOT_HAS_PROPERTY",
        "CONTAINS_TOKEN",
        "NOT_CONTAINS_TOKEN",
    }
)


class HubSpotError(Exception):
    """An error response in HubSpot's shape: {status, message, correlationId, category}."""

    def __init__(self, status: int, category: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.category, self.message, self.extra = status, category, message, extra


def validation(message: str, **extra: Any) -> HubSpotError:
    return HubSpotError(400, "VALIDATION_ERROR", message, **extra)


def iso(ms: int) -> str:
    """HubSpot's datetime property text: ISO-8601 UTC with milliseconds."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def to_ms(value: Any) -> int:
    """A filter's datetime value: ms since the epoch or ISO-8601 (§G)."""
    return _to_ms(str(value).strip())


@functools.lru_cache(maxsize=1 << 16)
def _to_ms(text: str) -> int:
    # Cached: a search of 10,000 contacts parses the same few timestamps many times.
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise validation(f"{text!r} is not a valid datetime (ms epoch or ISO-8601)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass
class Contact:
    id: int
    properties: dict[str, str]
    created: int
    updated: int

    def json(self, wanted: Iterable[str]) -> dict[str, Any]:
        # Absent properties come back as null when asked for (GUESS: HubSpot returns
        # requested-but-empty properties as null in v3 search).
        return {
            "id": str(self.id),
            "properties": {name: self.properties.get(name) for name in wanted},
            "createdAt": iso(self.created),
            "updatedAt": iso(self.updated),
            "archived": False,
        }


@dataclass
class Portal:
    """The contacts of one HubSpot account; every method holds the lock."""

    clock_ms: Callable[[], int]
    portal_id: int = 62515
    types: dict[str, str] = field(
        default_factory=lambda: {
            "email": STRING,
            "firstname": STRING,
            "lastname": STRING,
            "phone": STRING,
            "company": STRING,
            "city": STRING,
            "country": STRING,
            "hs_lead_status": ENUM,
            "lifecyclestage": ENUM,
            "createdate": DATETIME,
            "lastmodifieddate": DATETIME,
            "hs_object_id": NUMBER,
        }
    )
    options: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {
            "hs_lead_status": LEAD_STATUSES,
            "lifecyclestage": LIFECYCLE_STAGES,
        }
    )
    contacts: dict[int, Contact] = field(default_factory=dict)
    by_email: dict[str, int] = field(default_factory=dict)
    next_id: int = 1001
    lock: threading.RLock = field(default_factory=threading.RLock)

    def define(self, name: str, kind: str = STRING, options: Iterable[str] = ()) -> None:
        """A custom property (leadsync's lead context properties, for instance)."""
        with self.lock:
            self.types[name] = kind
            if kind == ENUM:
                self.options[name] = tuple(options)

    # ------------------------------------------------------------------ writes
    def check(self, properties: Mapping[str, Any]) -> dict[str, str]:
        """Property values as HubSpot stores them (text); unknown properties and bad
        options are a 400 listing every invalid one, as HubSpot's batch errors do."""
        bad: list[dict[str, Any]] = []
        out: dict[str, str] = {}
        for name, value in properties.items():
            kind = self.types.get(name)
            if kind is None:
                bad.append(
                    {
                        "isValid": False,
                        "message": f'Property "{name}" does not exist',
                        "error": "PROPERTY_DOESNT_EXIST",
                        "name": name,
                    }
                )
                continue
            if name in READ_ONLY:
                bad.append(
                    {
                        "isValid": False,
                        "message": f'"{name}" is a read only property; its value cannot be set.',
                        "error": "READ_ONLY_VALUE",
                        "name": name,
                    }
                )
                continue
            text = "" if value is None else str(value)
            if kind == ENUM and text and text not in self.options.get(name, ()):
                bad.append(
                    {
                        "isValid": False,
                        "message": f"{text} was not one of the allowed options",
                        "error": "INVALID_OPTION",
                        "name": name,
                    }
                )
                continue
            out[name] = text
        if bad:
            raise validation(f"Property values were not valid: {bad}", errors=bad)
        return out

    def create(self, properties: Mapping[str, str], at: int | None = None) -> Contact:
        with self.lock:
            now = self.clock_ms() if at is None else at
            email = properties.get("email", "").lower()
            assert not email or email not in self.by_email, f"fake bug: {email} exists"
            contact = Contact(self.next_id, {}, now, now)
            self.next_id += 1
            contact.properties.update(properties)
            if email:
                contact.properties["email"] = email
                self.by_email[email] = contact.id
            self._stamp(contact, now, created=True)
            self.contacts[contact.id] = contact
            return contact

    def update(
        self, contact: Contact, properties: Mapping[str, str], at: int | None = None
    ) -> bool:
        """Apply changed values; True if any changed (lastmodifieddate moves only then)."""
        with self.lock:
            changed = {k: v for k, v in properties.items() if contact.properties.get(k) != v}
            if not changed:
                return False
            email = changed.get("email")
            if email is not None:
                email = email.lower()
                owner = self.by_email.get(email)
                if owner is not None and owner != contact.id:
                    raise HubSpotError(
                        409, "CONFLICT", f"A contact with the email '{email}' already exists."
                    )
                self.by_email.pop(contact.properties.get("email", ""), None)
                self.by_email[email] = contact.id
                changed["email"] = email
            contact.properties.update(changed)
            self._stamp(contact, self.clock_ms() if at is None else at)
            return True

    def _stamp(self, contact: Contact, at: int, created: bool = False) -> None:
        # The clock never runs backwards for one contact: a modification is newer.
        contact.updated = max(at, contact.updated)
        props = contact.properties
        props["hs_object_id"] = str(contact.id)
        props["lastmodifieddate"] = iso(contact.updated)
        if created:
            props["createdate"] = iso(contact.created)

    def find(self, key: str, id_property: str | None) -> Contact | None:
        with self.lock:
            if id_property in (None, "hs_object_id"):
                return self.contacts.get(int(key)) if key.isdigit() else None
            if id_property == "email":
                found = self.by_email.get(key.lower())
                return self.contacts.get(found) if found is not None else None
            raise validation(f"{id_property} is not a unique property")

    # ------------------------------------------------------------------ search
    def search(
        self, groups: list[list[dict[str, Any]]], sort: tuple[str, bool] | None
    ) -> list[Contact]:
        """Contacts matching any group (filters in a group all match), sorted."""
        compiled = [[self._compile(f) for f in group] for group in groups]
        with self.lock:
            found = [
                c
                for c in self.contacts.values()
                if not compiled or any(all(test(c) for test in g) for g in compiled)
            ]
        if sort is None:
            # GUESS: without sorts, results come in object id order.
            found.sort(key=lambda c: c.id)
            return found
        name, descending = sort
        kind = self.types.get(name)
        if kind is None:
            raise validation(f"unknown property {name!r} in sorts")
        present = [(v, c.id, c) for c in found if (v := self._value(c, name, kind)) is not None]
        # Ties keep object id order (GUESS: HubSpot does not document tie order); empty
        # values sort last either way (GUESS).
        present.sort(key=lambda item: (item[0], item[1]))
        ordered = [c for _, _, c in present]
        if descending:
            ordered.reverse()
        have = {c.id for c in ordered}
        return ordered + [c for c in found if c.id not in have]

    @staticmethod
    def _typed(kind: str, value: Any) -> Any:
        if kind == DATETIME:
            return to_ms(value)
        if kind == NUMBER:
            try:
                return float(value)
            except (TypeError, ValueError):
                raise validation(f"{value!r} is not a number") from None
        return str(value)

    def _value(self, contact: Contact, name: str, kind: str) -> Any:
        """A property's typed value, None when empty; the two dates come from the
        record itself (cheap enough to search 10,000+ contacts per request)."""
        if name == "lastmodifieddate":
            return contact.updated
        if name == "createdate":
            return contact.created
        raw = contact.properties.get(name)
        return None if raw in (None, "") else self._typed(kind, raw)

    def _compile(self, f: Mapping[str, Any]) -> Callable[[Contact], bool]:
        """One filter as a test of a contact; its value is parsed once, here."""
        name, op = f["propertyName"], f["operator"]
        kind = self.types.get(name)
        if kind is None:
            raise validation(f"There was a problem with the request: unknown property {name!r}")

        def get(c: Contact) -> Any:
            return self._value(c, name, kind)

        if op == "HAS_PROPERTY":
            return lambda c: get(c) is not None
        if op == "NOT_HAS_PROPERTY":
            return lambda c: get(c) is None
        if op in ("IN", "NOT_IN"):
            values = {self._typed(kind, v) for v in f["values"]}
            if op == "IN":
                return lambda c: get(c) in values
            return lambda c: get(c) not in values
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            token = str(f["value"]).lower().strip("*")

            def contains(c: Contact) -> bool:
                return token in str(c.properties.get(name) or "").lower()

            return contains if op == "CONTAINS_TOKEN" else (lambda c: not contains(c))
        other = self._typed(kind, f["value"])
        if op == "NEQ":
            return lambda c: get(c) != other
        if op == "BETWEEN":
            high = self._typed(kind, f["highValue"])
            return lambda c: (v := get(c)) is not None and bool(other <= v <= high)
        assert op in COMPARE, f"fake bug: operator {op} passed validation but has no rule"
        test = COMPARE[op]
        return lambda c: (v := get(c)) is not None and test(v, other)


COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "EQ": operator.eq,
    "LT": operator.lt,
    "LTE": operator.le,
    "GT": operator.gt,
    "GTE": operator.ge,
}
