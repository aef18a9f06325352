"""Identity: which person a lead is, and what happens to the store when it arrives.

`prepare` turns a `Lead` into a `Resolved` record (normalised values, identity keys,
content hash). It is pure and CPU-bound, so the pipeline runs it in worker processes.

`Resolver` decides, for one batch, which contact each record lands on. It works in
memory over what the store already knows about the batch's keys and produces a `Plan`
that store.ingest writes in one transaction. Rules (DOMAIN.md):
- email, E.164 phone and external ids identify a person; (source, source id)
  identifies an observation, so a changed lead lands on the contact it landed on before;
- which keys identify is configurable (`IdentityRules`, the YAML's `identity:`);
- every value remembers when it was observed (the record's occurred_at, else when it
  was received): an older observation never overwrites a newer one, in any order;
- a record matching one contact updates it; matching several merges them: of two
  values the newer observation wins (the survivor's where equally old), the absorbed
  contacts leave tombstones, and each merge is logged with what came from where, so
  it can be undone;
- contacts a shared key would join but whose names clearly disagree (an office phone,
  an info@ address) are kept apart as possible duplicates, for a person to decide;
- the survivor is a customer (Won) before anything else, then the contact furthest
  along the funnel, then the one a person changed last, then the oldest.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from connector import normalize
from connector.model import IDENTITY_FIELDS, Lead, Problem, Resolved, identity_key
from connector.statuses import NEW, WON, Catalogue

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


# Identity keys by the field that gives them (the kinds of `model.identity_key`).
KEY_KINDS: dict[str, str] = {"email": "email", "phone": "phone", "external_id": "ext"}
# Survivor rules of an automatic merge, in their default order (DOMAIN.md).
SURVIVOR_RULES: tuple[str, ...] = ("customer", "rank", "person_changed", "oldest")


@dataclass(frozen=True, slots=True)
class IdentityRules:
    """Which keys identify a person in this deployment, and who survives a merge.

    `keys` are fields (email, phone, external_id), in priority order: when a record's
    keys point at contacts that cannot all be one person, the one found by the first
    key gets the record. `phone_requires_name`: a shared phone joins a record to a
    contact only when both have a name and the names agree. `survivor`: the order of
    rules choosing the survivor of an automatic merge (the oldest decides last)."""

    keys: tuple[str, ...] = ("email", "phone", "external_id")
    phone_requires_name: bool = False
    survivor: tuple[str, ...] = SURVIVOR_RULES

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(KEY_KINDS[k] for k in self.keys)


def stamp(when: datetime) -> str:
    """An observation time as stored in `contacts.observed`: fixed-width UTC text, so
    comparing the strings compares the times."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Letters NFKD does not decompose into a base letter and a mark.
_FOLD = str.maketrans(
    {"ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "ø": "o", "Ø": "o", "ß": "ss", "ı": "i"}
)
_TOKEN = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class PersonName:
    """The words of a person's name, folded (no case, no accents), and which parts of
    a name they come from (first, last; a full name is both)."""

    words: frozenset[str]
    parts: frozenset[str]


_NO_NAME = PersonName(frozenset(), frozenset())
_BOTH = frozenset(("first", "last"))


# Names repeat (a record and the contact it lands on carry the same one; a batch has
# many people with one first name), so each distinct text is folded once. The result
# is immutable, so sharing it is safe; the bound keeps memory flat.
@functools.lru_cache(maxsize=16384)
def _fold_words(text: str) -> frozenset[str]:
    if text.isascii():  # nothing to translate or decompose: the same words, faster
        return frozenset(_TOKEN.findall(text.casefold()))
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return frozenset(_TOKEN.findall(plain))


def person_name(attrs: dict[str, Any]) -> PersonName:
    """What two records' names are compared by."""
    first, last = attrs.get("first_name"), attrs.get("last_name")
    if first or last:
        parts = frozenset(p for p, v in (("first", first), ("last", last)) if v)
        return PersonName(_fold_words(" ".join(str(v) for v in (first, last) if v)), parts)
    full = attrs.get("full_name")
    return PersonName(_fold_words(str(full)), _BOTH) if full else _NO_NAME


def names_disagree(a: PersonName, b: PersonName) -> bool:
    """Clearly different people: both have a name, written in parts that can be
    compared (a first name alone says nothing against a last name alone), and neither
    holds the other's words ("Anna" and "Anna Nowak" agree, and so do "Tan Wei Ling"
    and "Wei Ling Tan"; "Anna Nowak" and "Jan Kowalski" do not)."""
    return (
        bool(a.words)
        and bool(b.words)
        and bool(a.parts & b.parts)
        and not a.words <= b.words
        and not b.words <= a.words
    )


@dataclass(slots=True)
class ContactState:
    """A contact as the resolver sees it; ids below zero are not yet in the store.

    `observed` holds when each value was observed (`stamp` text, by attribute name,
    `custom.<name>` for custom attributes); a value without a time is older than any."""

    id: int
    status: int
    attrs: dict[str, Any]
    custom: dict[str, Any]
    status_changed_at: datetime | None = None
    dirty: bool = False
    observed: dict[str, str] = field(default_factory=dict)
    person_changed_at: datetime | None = None

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


@dataclass(slots=True)
class MergeStep:
    """A stored contact folded into another: the rule that did it, and the survivor's
    values the absorbed one replaced (`taken`: attribute -> [earlier value, earlier
    observed time]), which an unmerge puts back."""

    absorbed: int
    survivor: int
    rule: str
    taken: dict[str, list[Any]]


@dataclass
class Plan:
    """Everything one batch changes, with temporary ids for contacts not yet stored.

    The counts give each record exactly one outcome: it created a contact, merged
    contacts, updated a stored contact, folded into a contact an earlier record of the
    batch created or changed, or changed nothing (unchanged)."""

    contacts: dict[int, ContactState] = field(default_factory=dict)
    merges: list[MergeStep] = field(default_factory=list)
    identities: list[tuple[str, int]] = field(default_factory=list)
    leads: dict[str, LeadWrite] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    # (contact, other, shared key): kept apart because their names clearly disagree.
    duplicates: list[tuple[int, int, str]] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    merged: int = 0
    unchanged: int = 0
    folded: int = 0
    alias: dict[int, int] = field(default_factory=dict)

    def find(self, contact_id: int) -> int:
        """The contact `contact_id` ended up as, following merges made in this batch."""
        root = contact_id
        while root in self.alias:
            root = self.alias[root]
        while contact_id != root:  # path compression: later lookups are one hop
            self.alias[contact_id], contact_id = root, self.alias[contact_id]
        return root


def _order(value: Any) -> Any:
    """A fixed order over values, which breaks ties between observations of one time."""
    return value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


# What observing a value did: nothing, moved only its observed time, changed the value.
_SAME, _SEEN, _CHANGED = 0, 1, 2


def observe(
    values: dict[str, Any], observed: dict[str, str], name: str, okey: str, value: Any, at: str
) -> int:
    """Apply one observation of attribute `name`, made at `at`, to a contact's values.

    The newer observation wins, never the older, so the result does not depend on the
    order observations arrive in; at the same time the larger value wins (a fixed
    order). A spelling that differs only by case or accents keeps the richer one
    whatever its time (it is the same value, not news)."""
    current = values.get(name)
    seen = observed.get(okey, "")
    if current == value:
        if at > seen:
            observed[okey] = at
            return _SEEN
        return _SAME
    if current is None or current == "":
        values[name], observed[okey] = value, at
        return _CHANGED
    if isinstance(value, str) and isinstance(current, str):
        # `Nguyen Van Hung` after `Nguyễn Văn Hùng`, `JOHN SMITH` after `John Smith`:
        # the same value written with less care is not news, whatever its time.
        better = normalize.better_spelling(current, value)
        if better is not None:
            newest = max(seen, at)
            moved = newest != seen
            observed[okey] = newest
            if better != current:
                values[name] = better
                return _CHANGED
            return _SEEN if moved else _SAME
    if at > seen or (at == seen and _order(value) > _order(current)):
        values[name], observed[okey] = value, at
        return _CHANGED
    return _SAME


def absorb(
    into: ContactState, absorbed: ContactState, newer_wins: bool = True
) -> dict[str, list[Any]]:
    """Fold `absorbed`'s values into `into`: a value `into` lacks is taken, with the
    time it was observed. Where both have one, `newer_wins` (automatic merges) takes
    the one observed later, so what a merge leaves does not depend on which records
    happened to arrive first and make the survivor (an older observation never
    overwrites a newer one); equally old, the survivor's wins. A merge by hand passes
    False: the survivor a person chose keeps its values (DOMAIN.md). Returns what was
    taken: attribute (`custom.<name>` for custom ones) -> [into's earlier value, its
    earlier observed time], which an unmerge puts back."""
    taken: dict[str, list[Any]] = {}
    for values, theirs, prefix in (
        (into.attrs, absorbed.attrs, ""),
        (into.custom, absorbed.custom, "custom."),
    ):
        for name, value in theirs.items():
            if value is None or value == "":
                continue
            okey = prefix + name
            before = values.get(name)
            seen = into.observed.get(okey)
            at = absorbed.observed.get(okey)
            kept = before == value or not newer_wins or (at or "") <= (seen or "")
            if before is not None and before != "" and kept:
                continue
            taken[okey] = [before, seen]
            values[name] = value
            if at:
                into.observed[okey] = at
    if taken:
        into.dirty = True
    return taken


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
        rules: IdentityRules | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.now = now
        self.received = stamp(now)
        self.origin = origin
        self.keys = keys
        self.leads = leads
        self.stored_leads = set(leads)
        self.rules = rules or IdentityRules()
        kinds = self.rules.kinds
        # `normalise` lists keys in IDENTITY_FIELDS order: with every kind in that
        # order (the default) a record's keys are used as they are, no per-record work.
        self._as_given = kinds == tuple(KEY_KINDS[f] for f in IDENTITY_FIELDS)
        self._priority = {kind: i for i, kind in enumerate(kinds)}
        self.plan = Plan(contacts={c.id: c for c in contacts})
        self._next_temp = -1
        # Contacts an earlier record of this batch created, changed or merged into: a
        # later record landing there is counted as folded.
        self._batch: set[int] = set()

    def _keys(self, record: Resolved) -> list[str]:
        """The record's identity keys this deployment uses, by priority."""
        keys = record.keys
        if self._as_given:
            return keys
        keys = [k for k in keys if k.split(":", 1)[0] in self._priority]
        if len(keys) > 1:
            keys = sorted(keys, key=lambda k: self._priority[k.split(":", 1)[0]])
        return keys

    def add(self, record: Resolved) -> None:
        seen = self.leads.get(record.source_id)
        plan = self.plan
        if seen is not None and seen[0] == record.payload_hash:
            plan.unchanged += 1
            return
        at = stamp(record.occurred_at) if record.occurred_at is not None else self.received
        keys = self._keys(record)
        found: dict[int, str] = {}
        for key in keys:
            owner = self.keys.get(key)
            if owner is not None:
                found.setdefault(plan.find(owner), key)
        anchor = plan.find(seen[1]) if seen is not None else None
        join, apart = self._split(record, found, anchor) if found else ([], [])
        if anchor is not None and not join:
            join = [plan.contacts[anchor]]
        if not join:
            target = self._create(record, at)
            plan.created += 1
        else:
            # One contact needs no survivor rule (most records: the same person again).
            target = join[0] if len(join) == 1 else min(join, key=self._survivor_order)
            for other in join:
                if other is not target:
                    self._merge(
                        other, into=target, rule=f"automatic: shared {found_kind(found, other.id)}"
                    )
            changed = self._update(target, record, at)
            if len(join) > 1:
                plan.merged += 1
            elif target.id in self._batch:
                plan.folded += 1
            elif changed:
                plan.updated += 1
            else:
                plan.unchanged += 1
        self._batch.add(target.id)
        for other, key in apart:
            plan.duplicates.append((target.id, other.id, key))
        for key in keys:
            if key not in self.keys:
                self.keys[key] = target.id
                plan.identities.append((key, target.id))
        self.leads[record.source_id] = (record.payload_hash, target.id)
        plan.leads[record.source_id] = LeadWrite(
            record, target.id, record.source_id in self.stored_leads
        )

    def _split(
        self, record: Resolved, found: dict[int, str], anchor: int | None
    ) -> tuple[list[ContactState], list[tuple[ContactState, str]]]:
        """The contacts a record's keys found that it may join (one person), and those
        kept apart as possible duplicates, with the key they share: a name that clearly
        disagrees with the record's, or with a contact already joined, keeps a contact
        apart. Contacts are taken in the priority of the key that found them."""
        plan = self.plan
        names = person_name(record.attrs)
        join: list[ContactState] = []
        joined_names: list[PersonName] = []
        if anchor is not None:  # the record's own earlier observation: always joined
            join.append(plan.contacts[anchor])
            joined_names.append(person_name(join[0].attrs))
        apart: list[tuple[ContactState, str]] = []
        for cid, key in found.items():
            if cid == anchor:
                continue
            contact = plan.contacts[cid]
            theirs = person_name(contact.attrs)
            if names_disagree(names, theirs) or any(
                names_disagree(theirs, other) for other in joined_names
            ):
                apart.append((contact, key))
                continue
            if (
                key.startswith("phone:")
                and self.rules.phone_requires_name
                and not names.words & theirs.words
            ):
                continue  # here a phone identifies only beside a matching name
            join.append(contact)
            joined_names.append(theirs)
        return join, apart

    def _survivor_order(self, c: ContactState) -> tuple[Any, ...]:
        order: list[Any] = [c.new]  # a stored contact survives one made in this batch
        for rule in self.rules.survivor:
            if rule == "customer":  # Won outranks Lost: a customer stays a customer
                order.append(c.status != WON)
            elif rule == "rank":
                status = self.catalogue.get(c.status) if c.status in self.catalogue else None
                order.append(-(status.rank if status else 0))
            elif rule == "person_changed":
                when = c.person_changed_at
                order.append(-when.timestamp() if when is not None else float("inf"))
            elif rule == "oldest":
                order.append(abs(c.id))
        order.append(abs(c.id))
        return tuple(order)

    def _create(self, record: Resolved, at: str) -> ContactState:
        status = record.status if record.status is not None else NEW
        observed = dict.fromkeys(record.attrs, at)
        if record.custom:
            observed.update((f"custom.{name}", at) for name in record.custom)
        state = ContactState(
            self._next_temp,
            status,
            dict(record.attrs),
            dict(record.custom),
            self.now,
            True,
            observed,
        )
        self._next_temp -= 1
        self.plan.contacts[state.id] = state
        self.plan.history.append(HistoryEntry(state.id, None, status, self.origin, self.now))
        return state

    def _merge(self, absorbed: ContactState, into: ContactState, rule: str) -> None:
        taken = absorb(into, absorbed)
        plan = self.plan
        plan.alias[absorbed.id] = into.id
        del plan.contacts[absorbed.id]
        into.dirty = True
        if absorbed.new:
            # Never stored: it simply becomes the survivor. The record that made it
            # turns out to be this person again: folded, not created.
            plan.created -= 1
            plan.folded += 1
            plan.history = [h for h in plan.history if h.contact_id != absorbed.id]
        else:
            plan.merges.append(MergeStep(absorbed.id, into.id, rule, taken))

    def _update(self, target: ContactState, record: Resolved, at: str) -> bool:
        """Fold a record's values into `target`; True if a value or the status changed."""
        changed = seen = False
        observed = target.observed
        for name, value in record.attrs.items():
            done = observe(target.attrs, observed, name, name, value, at)
            changed |= done == _CHANGED
            seen |= done == _SEEN
        for name, value in record.custom.items():
            done = observe(target.custom, observed, name, f"custom.{name}", value, at)
            changed |= done == _CHANGED
            seen |= done == _SEEN
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
        if changed or seen:
            target.dirty = True
        return changed

    def finish(self) -> Plan:
        """The plan, with its counts final."""
        return self.plan


def found_kind(found: dict[int, str], contact_id: int) -> str:
    """The kind of key that found `contact_id` (for the merge log's rule)."""
    key = found.get(contact_id)
    return key.split(":", 1)[0] if key else "source id"
