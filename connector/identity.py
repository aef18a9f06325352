"""Identity: which person a lead is, and what happens to the store when it arrives.

`prepare` turns a `Lead` into a `Resolved` record (normalised values, identity keys,
content hash). It is pure and CPU-bound, so the pipeline runs it in worker processes.

`Resolver` decides, for one batch, which contact each record lands on. It works in
memory over what the store already knows about the batch's keys and produces a `Plan`
that store.ingest writes in one transaction. Rules (DOMAIN.md):
- email, E.164 phone and external ids identify a person; (source, source id)
  identifies an observation, so a changed lead lands on the contact it landed on before;
- a record matching one contact updates it; matching several merges them: the
  survivor's values win, the absorbed contacts fill its blanks and leave tombstones;
- the survivor is the contact furthest along the funnel (highest status rank), then
  the oldest, so a merge never throws away sales progress and the result is stable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from connector import normalize
from connector.model import IDENTITY_FIELDS, Lead, Problem, Resolved, identity_key
from connector.statuses import NEW, Catalogue

# field -> normaliser(value, region); each raises normalize.NormalizationError.
_NORMALISERS: dict[str, Callable[[str, str | None], str | None]] = {
    "email": lambda v, _r: normalize.email(v),
    "phone": normalize.phone,
    "first_name": lambda v, _r: normalize.name(v),
    "last_name": lambda v, _r: normalize.name(v),
    "company": lambda v, _r: normalize.name(v),
    "city": lambda v, _r: normalize.name(v),
    "state": lambda v, _r: normalize.name(v),
    "zip": lambda v, _r: normalize.name(v).upper(),
    "owner": lambda v, _r: normalize.name(v),
    "date_of_birth": normalize.date_of_birth,
    "gender": lambda v, _r: normalize.gender(v),
    "external_id": lambda v, _r: v.strip(),
}


# What normalising adds to a lead: attributes, identity keys, content hash, problems.
Normalised = tuple[dict[str, str], list[str], str, list[Problem]]


def prepare(lead: Lead, default_region: str | None = None) -> Resolved:
    """Normalise a lead and compute its identity keys and content hash.

    Every field that cannot be normalised becomes a `Problem` naming the field; the
    pipeline quarantines records with problems instead of half-ingesting them.
    """
    return assemble(lead, normalise(lead, default_region))


def assemble(lead: Lead, done: Normalised) -> Resolved:
    """A `Resolved` from a lead and what `normalise` made of it (possibly elsewhere)."""
    attrs, keys, digest, problems = done
    return Resolved(
        source=lead.source,
        source_id=lead.source_id or digest,
        ref=lead.ref,
        attrs=attrs,
        custom=lead.custom,
        status=lead.status,
        keys=keys,
        payload_hash=digest,
        raw=lead.raw,
        context=lead.context,
        occurred_at=lead.occurred_at,
        problems=problems,
    )


def normalise(lead: Lead, default_region: str | None = None) -> Normalised:
    """The CPU-bound part of `prepare`. It reads only `fields`, `custom`, `status`,
    `region`, `context`, `source` and `problems`, so worker processes can be sent
    those and not the raw payload."""
    problems = list(lead.problems)
    attrs: dict[str, str] = {}
    country = lead.fields.get("country")
    if country and country.strip():
        try:
            attrs["country"] = normalize.country(country)
        except normalize.NormalizationError as exc:
            problems.append(Problem("country", exc.reason, country, "field"))
    # Phones, states and dates are read in the record's own country first.
    region = attrs.get("country") or lead.region or default_region
    for name, value in lead.fields.items():
        if name == "country" or value is None or not str(value).strip():
            continue
        normaliser = _NORMALISERS.get(name)
        if normaliser is None:
            problems.append(Problem(name, "not a standard field (map it as a custom attribute)"))
            continue
        try:
            out = normaliser(str(value), region)
        except normalize.NormalizationError as exc:
            problems.append(Problem(name, exc.reason, str(value), "field"))
            continue
        if out:
            attrs[name] = out
    namespace = str(lead.context.get("id_namespace", lead.source))
    keys = [
        identity_key(kind, attrs[f] if kind != "ext" else f"{namespace}:{attrs[f]}")
        for f, kind in zip(IDENTITY_FIELDS, ("email", "phone", "ext"), strict=True)
        if f in attrs
    ]
    if not keys and not problems:
        problems.append(
            Problem("email", "no email, phone or external id: nothing identifies this person")
        )
    digest = content_hash(attrs, lead.custom, lead.status, lead.context)
    return attrs, keys, digest, problems


def normalise_many(slim: list[tuple[Any, ...]], default_region: str | None) -> list[Normalised]:
    """`normalise` for a batch sent to a worker process as `slim_leads(...)` tuples."""
    return [
        normalise(
            Lead(source, "", fields, custom, None, status, region, None, {}, context, problems),
            default_region,
        )
        for source, fields, custom, status, region, context, problems in slim
    ]


def slim_leads(leads: Iterable[Lead]) -> list[tuple[Any, ...]]:
    """What `normalise` needs of each lead: a fraction of the pickling a Lead costs."""
    return [
        (x.source, x.fields, x.custom, x.status, x.region, x.context, x.problems) for x in leads
    ]


def content_hash(*parts: Any) -> str:
    """A stable hash of normalised content: the same person in the same words, however
    it was formatted, hashes the same, so a re-imported file is recognised."""
    blob = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return hashlib.sha256(blob).hexdigest()


@dataclass(slots=True)
class ContactState:
    """A contact as the resolver sees it; ids below zero are not yet in the store."""

    id: int
    status: int
    attrs: dict[str, Any]
    custom: dict[str, Any]
    status_changed_at: datetime | None = None
    dirty: bool = False

    @property
    def new(self) -> bool:
        return self.id < 0


@dataclass(slots=True)
class LeadWrite:
    record: Resolved
    contact_id: int
    exists: bool


@dataclass(slots=True)
class HistoryEntry:
    contact_id: int
    from_status: int | None
    to_status: int
    origin: str
    at: datetime


@dataclass
class Plan:
    """Everything one batch changes, with temporary ids for contacts not yet stored."""

    contacts: dict[int, ContactState] = field(default_factory=dict)
    merges: list[tuple[int, int]] = field(default_factory=list)  # (absorbed, survivor)
    identities: list[tuple[str, int]] = field(default_factory=list)
    leads: dict[str, LeadWrite] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    merged: int = 0
    unchanged: int = 0
    alias: dict[int, int] = field(default_factory=dict)

    def find(self, contact_id: int) -> int:
        """The contact `contact_id` ended up as, following merges made in this batch."""
        root = contact_id
        while root in self.alias:
            root = self.alias[root]
        while contact_id != root:  # path compression: later lookups are one hop
            self.alias[contact_id], contact_id = root, self.alias[contact_id]
        return root


class Resolver:
    """Resolves one batch of records against what the store knows of their keys.

    `keys` maps identity keys to contact ids, `leads` maps source ids of this source
    to (payload hash, contact id), `contacts` holds the stored contacts they point at.
    """

    def __init__(
        self,
        catalogue: Catalogue,
        now: datetime,
        origin: str,
        keys: dict[str, int],
        leads: dict[str, tuple[str, int]],
        contacts: Iterable[ContactState],
    ) -> None:
        self.catalogue = catalogue
        self.now = now
        self.origin = origin
        self.keys = keys
        self.leads = leads
        self.stored_leads = set(leads)
        self.plan = Plan(contacts={c.id: c for c in contacts})
        self._next_temp = -1
        self._touched: set[int] = set()

    def add(self, record: Resolved) -> None:
        seen = self.leads.get(record.source_id)
        if seen is not None and seen[0] == record.payload_hash:
            self.plan.unchanged += 1
            return
        plan = self.plan
        found = {plan.find(self.keys[k]) for k in record.keys if k in self.keys}
        if seen is not None:
            found.add(plan.find(seen[1]))
        if not found:
            target = self._create(record)
        else:
            states = [plan.contacts[i] for i in found]
            target = min(states, key=self._survivor_order)
            for other in states:
                if other is not target:
                    self._merge(other, into=target)
            self._update(target, record)
        for key in record.keys:
            if key not in self.keys:
                self.keys[key] = target.id
                plan.identities.append((key, target.id))
        self.leads[record.source_id] = (record.payload_hash, target.id)
        plan.leads[record.source_id] = LeadWrite(
            record, target.id, record.source_id in self.stored_leads
        )

    def _survivor_order(self, c: ContactState) -> tuple[bool, int, int]:
        status = self.catalogue.get(c.status) if c.status in self.catalogue else None
        return (c.new, -(status.rank if status else 0), abs(c.id))

    def _create(self, record: Resolved) -> ContactState:
        status = record.status if record.status is not None else NEW
        state = ContactState(
            self._next_temp, status, dict(record.attrs), dict(record.custom), self.now, True
        )
        self._next_temp -= 1
        self.plan.contacts[state.id] = state
        self.plan.created += 1
        self.plan.history.append(HistoryEntry(state.id, None, status, self.origin, self.now))
        return state

    def _merge(self, absorbed: ContactState, into: ContactState) -> None:
        # DOMAIN.md: where both have a value the survivor's wins; the absorbed fills blanks.
        for name, value in absorbed.attrs.items():
            if value and not into.attrs.get(name):
                into.attrs[name] = value
                into.dirty = True
        for name, value in absorbed.custom.items():
            if name not in into.custom:
                into.custom[name] = value
                into.dirty = True
        plan = self.plan
        plan.alias[absorbed.id] = into.id
        del plan.contacts[absorbed.id]
        plan.merged += 1
        if absorbed.new:
            # Never stored: it simply becomes the survivor; its creation is not one.
            plan.created -= 1
            plan.history = [h for h in plan.history if h.contact_id != absorbed.id]
        else:
            plan.merges.append((absorbed.id, into.id))
            self._touched.discard(absorbed.id)

    def _update(self, target: ContactState, record: Resolved) -> None:
        changed = False
        for name, value in record.attrs.items():
            # The first email and phone stay primary; later ones are extra identities.
            if name in ("email", "phone") and target.attrs.get(name):
                continue
            current = target.attrs.get(name)
            if current != value and not _same_but_worse_case(value, current):
                target.attrs[name] = value
                changed = True
        for name, value in record.custom.items():
            if target.custom.get(name) != value:
                target.custom[name] = value
                changed = True
        status = record.status
        if (
            status is not None
            and status != target.status
            and self.catalogue.may_move(target.status, status)
        ):
            self.plan.history.append(
                HistoryEntry(target.id, target.status, status, self.origin, self.now)
            )
            target.status = status
            target.status_changed_at = self.now
            changed = True
        if changed or target.dirty:
            target.dirty = True
            if not target.new:
                self._touched.add(target.id)

    def finish(self) -> Plan:
        """The plan, with counts final: `updated` counts stored contacts that changed."""
        self.plan.updated = len(self._touched)
        return self.plan


def _same_but_worse_case(new: Any, current: Any) -> bool:
    """`JOHN SMITH` after `John Smith`, `Nguyen` after `Nguyễn` is the same name
    written with less care, not news: keep the richer one (normalize.richer_name)."""
    if not isinstance(new, str) or not isinstance(current, str):
        return False
    return normalize.richer_name(current, new) == current
